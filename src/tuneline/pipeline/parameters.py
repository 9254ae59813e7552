"""The pipeline's run parameters, declared once: name, the config key it overrides, type, default, description.

Everything else is generated from :data:`PARAMETERS`: the pipeline function's signature and its ``Args:``
docstring (which KFP compiles into each parameter's description, shown in the UI's run form), the
``resolve_config`` component's signature, docstring and body, and the knob → config key table the first
step applies. Adding a knob means adding one row here.
"""

from __future__ import annotations

import inspect
import linecache
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneline.config import TunelineConfig
from tuneline.gpu_pools import scheduling


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    description: str
    default: Callable[[TunelineConfig], Any]
    key: str | None = None  # the config key a non-empty value overrides (None: not a config knob)


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "source_uri",
        str,
        "Data to ingest: a path, glob, s3:// gs:// https:// URI or hf:NAME (empty: the "
        "sources compiled in from params.yaml).",
        lambda c: c.data.sources[0].uri if c.data.sources else "",
        "data.sources",
    ),
    Parameter(
        "base_model",
        str,
        "Base model to fine-tune: a hub id, an s3:// gs:// prefix, or builtin:tiny.",
        lambda c: c.model.base,
        "model.base",
    ),
    Parameter("method", str, "Training method: qlora, lora, dpo or kto.", lambda c: c.train.method, "train.method"),
    Parameter("epochs", float, "Passes over the training split.", lambda c: c.train.epochs, "train.epochs"),
    Parameter("learning_rate", float, "Peak learning rate.", lambda c: c.train.learning_rate, "train.learning_rate"),
    Parameter("lora_r", int, "LoRA rank of the adapter.", lambda c: c.lora.r, "lora.r"),
    Parameter(
        "num_gpus",
        int,
        "GPUs for the train step; above 1 it trains under torchrun (DDP).",
        lambda c: c.train.num_gpus,
        "train.num_gpus",
    ),
    Parameter(
        "gpu_node_selector",
        dict,
        "Node selector of the GPU pool the train step runs on (from kubeflow.train_gpu).",
        lambda c: scheduling(c, c.kubeflow.train_gpu).node_selector,
    ),
    Parameter(
        "judge_endpoint",
        str,
        "URL of a TGI, vLLM or OpenAI-compatible judge (empty: the local judge).",
        lambda c: c.eval.judge.endpoint or "",
        "eval.judge.endpoint",
    ),
    Parameter(
        "model_name", str, "Registered model name in MLflow.", lambda c: c.registry.model_name, "registry.model_name"
    ),
    Parameter(
        "config_overrides",
        str,
        'JSON object of any other config keys, e.g. {"train.max_steps": 50}; validated by the first step.',
        lambda c: "{}",
    ),
    Parameter(
        "config",
        str,
        "The whole config compiled from params.yaml (JSON); change keys through config_overrides instead.",
        lambda c: c.model_dump_json(),
    ),
)

#: Parameters that override one config key each (the knobs the first step applies).
KNOBS: dict[str, str] = {p.name: p.key for p in PARAMETERS if p.key}


def args_doc(params: tuple[Parameter, ...]) -> str:
    return "Args:\n" + "".join(f"    {p.name}: {p.description}\n" for p in params)


def pipeline_signature(config: TunelineConfig) -> inspect.Signature:
    """The pipeline function's signature: every parameter with its type and this config's default."""
    return inspect.Signature(
        [
            inspect.Parameter(
                p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default(config), annotation=p.type
            )
            for p in PARAMETERS
        ]
    )


def resolve_config_component() -> Callable[..., str]:
    """The first step's function, generated with one input per knob.

    KFP ships a component's *source* to the pod, so the function is real source text: it is compiled under
    a file name registered in :mod:`linecache`, where ``inspect.getsource`` (and so KFP) finds it.
    """
    knobs = [p for p in PARAMETERS if p.key]
    inputs = ", ".join(f"{p.name}: {p.type.__name__}" for p in knobs)
    doc = (
        "Validate params.yaml (compiled in) + the run's knobs + the JSON overrides once, before any work.\n\n"
        + args_doc(tuple(p for p in PARAMETERS if p.name in {"config", "config_overrides"} or p.key))
    )
    body = ", ".join(f'"{p.name}": {p.name}' for p in knobs)
    source = (
        f"def resolve_config(config: str, config_overrides: str, {inputs}, resolved: Output[Artifact]) -> str:\n"
        f'    """{doc}    """\n'
        "    from tuneline.pipeline.steps import resolve\n\n"
        f"    knobs = {{{body}}}\n"
        '    resolve(config, config_overrides, {k: v for k, v in knobs.items() if v not in ("", 0, 0.0)}, '
        "resolved.path)\n"
        "    with open(resolved.path) as fh:\n"
        "        return fh.read()\n"
    )
    filename = "<tuneline.pipeline.parameters: resolve_config>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    from kfp.dsl import Artifact, Output

    namespace: dict[str, Any] = {"Output": Output, "Artifact": Artifact, "__name__": "tuneline.pipeline.components"}
    # dont_inherit: this module's `from __future__ import annotations` would turn the annotations into strings
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - our own source, above
    return namespace["resolve_config"]
