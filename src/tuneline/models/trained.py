"""A trained model dir (the train stage's output) loaded back for generation.

The manifest ``tuneline_model.json`` says where the base is (bundled ``base/`` or a hub
id) and where the adapter is, so evaluation, registration and serving never guess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuneline.errors import TunelineError
from tuneline.models.resolve import REMOTE_SCHEMES, fetch_remote, pretrained_kwargs
from tuneline.results import MODEL_MANIFEST, ModelManifest


class ModelDirError(TunelineError, ValueError):
    """The directory is not a complete tuneline model dir."""


def read_manifest(model_dir: str | Path) -> ModelManifest:
    path = Path(model_dir) / MODEL_MANIFEST
    if not path.is_file():
        raise ModelDirError(
            f"{model_dir} is not a tuneline model dir (no {MODEL_MANIFEST}); train it with `tuneline train`"
        )
    try:
        return ModelManifest.read(path)
    except (ValidationError, ValueError) as exc:
        raise ModelDirError(f"{path} is not a valid model manifest: {exc}") from None


def base_location(model_dir: str | Path, manifest: ModelManifest | None = None) -> str:
    """Loadable base of a trained model dir: its bundled base/, the local copy of an object-store base, or a hub id."""
    manifest = manifest or read_manifest(model_dir)
    if manifest.base_dir:
        return str(Path(model_dir) / manifest.base_dir)
    base = manifest.base
    return str(fetch_remote(base)) if base.startswith(REMOTE_SCHEMES) else base


def load_trained(model_dir: str | Path, adapter: bool = True, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a model dir; ``adapter=False`` gives the untouched base (the baseline)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = read_manifest(model_dir)
    adapter_dir = Path(model_dir) / manifest.adapter_dir
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    kwargs = {"dtype": dtype or torch.float32, **pretrained_kwargs()}
    if manifest.full_finetune:
        source = str(adapter_dir) if adapter else base_location(model_dir, manifest)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_location(model_dir, manifest), **kwargs)
        if adapter:
            model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, tokenizer


def generate(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    tools: list[dict[str, Any]] | None = None,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """Answers to each conversation (its last turn is the user's), asked with ``tools`` where given (the chat
    template renders them; calls come back as the template's ``<tool_call>`` text). Greedy, or with a
    ``temperature`` sampled from torch's generator seeded with ``seed`` (the same seed, the same answers)."""
    import torch

    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(conversations), batch_size):
        batch = conversations[start : start + batch_size]
        enc = tokenizer.apply_chat_template(
            batch, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True, tools=tools
        )
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature else {"do_sample": False}
        if temperature:
            torch.manual_seed(seed + start)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                **sampling,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        prompt_len = enc["input_ids"].shape[1]
        answers += [tokenizer.decode(row[prompt_len:], skip_special_tokens=True).strip() for row in out]
    return answers
