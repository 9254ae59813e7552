"""Answers to the evaluation split from the candidate and from the baseline.

Either in-process (transformers, greedy, batched) or through an inference endpoint (the TGI
client). In-process runs also measure the reference answers' loss under each model.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneline.config import TunelineConfig
from tuneline.inference.client import Completion, Endpoint, EndpointError, run_all
from tuneline.io.jsonl import read_jsonl
from tuneline.models.trained import ModelDirError, generate, load_trained
from tuneline.redact import redact_url
from tuneline.registry import CHAMPION, RegistryError, download_version, version_by_alias
from tuneline.stages.evaluate.errors import EvaluateError
from tuneline.stages.evaluate.reference import answer_loss

log = logging.getLogger("tuneline")


@dataclass(frozen=True)
class Example:
    id: str
    category: str
    prompt: list[dict[str, str]]
    reference: str

    @property
    def conversation(self) -> list[dict[str, str]]:
        return [*self.prompt, {"role": "assistant", "content": self.reference}]


@dataclass
class Answers:
    label: str  # candidate | baseline
    source: str  # what produced them, for the report
    texts: list[str]
    loss: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def load_examples(split_dir: str | Path, split: str, max_examples: int | None) -> list[Example]:
    """SFT records of ``split`` whose last turn is the assistant's (the reference answer).

    Tool-calling records (a ``tools`` schema or tool calls) are left out, with a warning: their answers
    are calls, not texts a judge or the reference metrics can compare.
    """
    path = Path(split_dir) / "sft" / f"{split}.jsonl"
    if not path.is_file():
        raise EvaluateError(f"{path} not found: run `tuneline split` first (or set eval.split)")
    examples = []
    tool_use = 0
    for record in read_jsonl(path):
        messages = record.get("messages") or []
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            continue
        if record.get("tools") or any(m.get("tool_calls") for m in messages):
            tool_use += 1
            continue
        category = str((record.get("meta") or {}).get("category") or "uncategorized")
        examples.append(Example(str(record["id"]), category, messages[:-1], messages[-1]["content"]))
        if max_examples and len(examples) >= max_examples:
            break
    if tool_use:
        log.warning(
            "evaluate: %d tool-calling conversations in %s are not evaluated (answers are calls)", tool_use, path
        )
    if not examples:
        raise EvaluateError(f"{path} holds no conversation ending with an assistant text answer")
    return examples


Tick = Callable[[int], None]


def in_process(
    model_dir: str | Path,
    adapter: bool,
    examples: list[Example],
    config: TunelineConfig,
    label: str,
    source: str,
    tick: Tick,
) -> Answers:
    try:
        model, tokenizer = load_trained(model_dir, adapter=adapter)
    except ModelDirError as exc:
        raise EvaluateError(str(exc)) from None
    texts: list[str] = []
    size = config.eval.batch_size
    for start in range(0, len(examples), size):
        batch = examples[start : start + size]
        texts += generate(model, tokenizer, [e.prompt for e in batch], config.eval.max_new_tokens, batch_size=size)
        tick(len(batch))
    loss = answer_loss(model, tokenizer, [e.conversation for e in examples])
    del model
    gc.collect()
    return Answers(label, source, texts, loss)


def via_endpoint(
    url: str,
    examples: list[Example],
    config: TunelineConfig,
    label: str,
    tick: Tick,
    token_env: str,
    model: str | None = None,
) -> Answers:
    """Greedy answers from a served model; ``model`` picks one of the endpoint's models (a vLLM adapter)."""
    endpoint = Endpoint.from_config(url, config.eval.judge, token_env, api="chat", model=model)
    results = run_all(endpoint, [e.prompt for e in examples], config.eval.max_new_tokens, on_done=lambda: tick(1))
    errors = [r for r in results if isinstance(r, EndpointError)]
    if errors:
        raise EvaluateError(f"{label} endpoint failed on {len(errors)}/{len(examples)} requests: {errors[0]}")
    return Answers(label, redact_url(url), [r.text for r in results if isinstance(r, Completion)])


def resolve_baseline(config: TunelineConfig, workdir: Path) -> tuple[str, Path | None, bool, dict[str, Any]]:
    """(kind, model dir, use adapter, info) of the baseline; kind is none, base, champion or endpoint.

    ``auto`` prefers the registry's champion (what users get today) and falls back to the
    untouched base when there is no champion yet.
    """
    e = config.eval
    if e.baseline == "none":
        return "none", None, False, {}
    if e.baseline_endpoint:
        return "endpoint", None, False, {"endpoint": e.baseline_endpoint}
    if e.baseline in ("auto", "champion"):
        name = config.registry.model_name
        try:
            version = version_by_alias(config.registry.tracking_uri, name, CHAMPION)
        except RegistryError as exc:
            if e.baseline == "champion":
                raise EvaluateError(str(exc)) from None
            log.warning("no champion baseline (%s); comparing with the base model", exc)
            version = None
        if version is not None:
            path = download_version(
                config.registry.tracking_uri,
                name,
                version.version,
                Path(tempfile.mkdtemp(prefix="champion-", dir=workdir)),
            )
            log.info("baseline: %s v%s (@%s)", name, version.version, CHAMPION)
            return "champion", path, True, {"model_name": name, "version": str(version.version)}
        if e.baseline == "champion":
            raise EvaluateError(
                f"eval.baseline is 'champion' but {name!r} has no @{CHAMPION} version; "
                "use 'auto' or 'base' until a model is promoted"
            )
    return "base", None, False, {}
