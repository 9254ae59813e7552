"""Answers to the evaluation split from the candidate and from the baseline.

Either in-process (transformers, greedy, batched) or through an inference endpoint (the TGI
client). In-process runs also measure the reference answers' loss under each model.
"""

from __future__ import annotations

import gc
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from tuneline.stages.evaluate.toolcalls import (
    ExpectedCall,
    ParsedAnswer,
    calls_of_message,
    expected_from_calls,
    parse_calls,
)

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


@dataclass(frozen=True)
class ToolExample:
    """A tool-calling record's first assistant turn that calls tools (or, where none does, its last answer: the
    right answer is then no call), asked with the record's ``tools``; ``expected`` is what it should call."""

    id: str
    category: str
    prompt: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    expected: list[ExpectedCall]
    reference: list[dict[str, Any]]  # the record's own calls, as {"name", "arguments"}


@dataclass
class Answers:
    label: str  # candidate | baseline
    source: str  # what produced them, for the report
    texts: list[str]
    loss: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    tool_answers: list[ParsedAnswer] = field(default_factory=list)  # one per ToolExample


@dataclass(frozen=True)
class Examples:
    """The split's text conversations (judged, scored against the reference) and tool-calling ones (scored as
    calls, :mod:`.toolcalls`)."""

    text: list[Example]
    tools: list[ToolExample]


def load_examples(split_dir: str | Path, split: str, max_examples: int | None) -> Examples:
    """SFT records of ``split`` whose last turn is the assistant's (the reference answer), text and tool-calling
    (a ``tools`` schema or tool calls) apart; ``max_examples`` caps each."""
    path = Path(split_dir) / "sft" / f"{split}.jsonl"
    if not path.is_file():
        raise EvaluateError(f"{path} not found: run `tuneline split` first (or set eval.split)")
    text: list[Example] = []
    tools: list[ToolExample] = []
    for record in read_jsonl(path):
        messages = record.get("messages") or []
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            continue
        category = str((record.get("meta") or {}).get("category") or "uncategorized")
        if record.get("tools") or any(m.get("tool_calls") for m in messages):
            if not max_examples or len(tools) < max_examples:
                tools.append(_tool_example(record, messages, category))
        elif not max_examples or len(text) < max_examples:
            text.append(Example(str(record["id"]), category, messages[:-1], messages[-1]["content"]))
    if not text and not tools:
        raise EvaluateError(f"{path} holds no conversation ending with an assistant answer")
    return Examples(text, tools)


def _tool_example(record: dict[str, Any], messages: list[dict[str, Any]], category: str) -> ToolExample:
    turn = next((i for i, m in enumerate(messages) if m.get("role") == "assistant" and m.get("tool_calls")), None)
    turn = len(messages) - 1 if turn is None else turn
    calls = calls_of_message(messages[turn])
    tools = list(record.get("tools") or [])
    return ToolExample(str(record["id"]), category, messages[:turn], tools, expected_from_calls(calls, tools), calls)


Tick = Callable[[int], None]


def in_process(
    model_dir: str | Path,
    adapter: bool,
    examples: Examples,
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
    size, budget = config.eval.batch_size, config.eval.max_new_tokens
    for start in range(0, len(examples.text), size):
        batch = examples.text[start : start + size]
        texts += generate(model, tokenizer, [e.prompt for e in batch], budget, batch_size=size)
        tick(len(batch))
    tool_answers = []
    for e in examples.tools:  # one at a time: each is asked with its own tools
        text = generate(model, tokenizer, [e.prompt], config.eval.tool_max_new_tokens, tools=e.tools)[0]
        tool_answers.append(parse_calls(text))
        tick(1)
    loss = answer_loss(model, tokenizer, [e.conversation for e in examples.text]) if examples.text else None
    del model
    gc.collect()
    return Answers(label, source, texts, loss, tool_answers=tool_answers)


def via_endpoint(
    url: str,
    examples: Examples,
    config: TunelineConfig,
    label: str,
    tick: Tick,
    token_env: str,
    model: str | None = None,
) -> Answers:
    """Greedy answers from a served model; ``model`` picks one of the endpoint's models (a vLLM adapter)."""
    endpoint = Endpoint.from_config(url, config.eval.judge, token_env, api="chat", model=model)
    text = _completions(endpoint, [e.prompt for e in examples.text], None, config.eval.max_new_tokens, label, tick)
    tool_prompts, tools = [e.prompt for e in examples.tools], [e.tools for e in examples.tools]
    calls = _completions(endpoint, tool_prompts, tools, config.eval.tool_max_new_tokens, label, tick)
    # a server's parsed tool_calls where it returns them, else the <tool_call> blocks of its text
    tool_answers = [ParsedAnswer(list(c.tool_calls)) if c.tool_calls else parse_calls(c.text) for c in calls]
    return Answers(label, redact_url(url), [r.text for r in text], tool_answers=tool_answers)


def _completions(
    endpoint: Endpoint, prompts: list[Any], tools: list[Any] | None, budget: int, label: str, tick: Tick
) -> list[Completion]:
    if not prompts:
        return []
    results = run_all(endpoint, prompts, budget, on_done=lambda: tick(1), tools=tools)
    errors = [r for r in results if isinstance(r, EndpointError)]
    if errors:
        raise EvaluateError(f"{label} endpoint failed on {len(errors)}/{len(prompts)} requests: {errors[0]}")
    return [r for r in results if isinstance(r, Completion)]


def split_tools(answers: Answers, count: int) -> tuple[Answers, list[ParsedAnswer]]:
    """``answers`` to the first ``count`` tool examples (the split's), and the rest (a benchmark's questions,
    asked in the same pass so that each model is loaded once)."""
    return replace(answers, tool_answers=answers.tool_answers[:count]), answers.tool_answers[count:]


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
