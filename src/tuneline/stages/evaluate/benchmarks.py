"""Standard benchmarks beside the judge (``eval.benchmarks``): BFCL v4 offline and lm-evaluation-harness tasks.

BFCL's questions become :class:`~.answers.ToolExample` records, answered by the same code as the split's own
tool-calling records (in-process, or the candidate's and baseline's endpoints) and scored by BFCL's rules
(:mod:`.toolcalls`); its question files and possible answers are read from the installed ``bfcl-eval`` wheel,
never copied. lm-eval runs its own loop: on the loaded model in-process (its ``HFLM`` wrapper, the adapter merged)
or on an endpoint through its ``local-chat-completions`` model. Both give :class:`~tuneline.results.BenchmarkScore`
rows and the summaries of :data:`~tuneline.results.BENCHMARK_METRICS`.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.config.schema import BfclConfig, LmEvalConfig
from tuneline.inference.client import Endpoint
from tuneline.results import BenchmarkScore
from tuneline.stages.evaluate.answers import ToolExample
from tuneline.stages.evaluate.errors import EvaluateError
from tuneline.stages.evaluate.toolcalls import ExpectedCall, ParsedAnswer, check_turn

log = logging.getLogger("tuneline")

BFCL_PIN = "bfcl-eval==2026.3.23"
BFCL_PREFIX = "bfcl/"  # a BFCL question's ToolExample.category: bfcl/<category>
_SCHEMA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


# ----------------------------------------------------------------------------- BFCL
def bfcl_data_dir() -> Path:
    """The ``data`` directory of the installed ``bfcl-eval`` wheel."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or spec.origin is None:
        raise EvaluateError(
            f"eval.benchmarks.bfcl needs the bfcl-eval package: pip install --no-deps {BFCL_PIN} (make setup does)"
        )
    return Path(spec.origin).parent / "data"


def bfcl_examples(cfg: BfclConfig) -> list[ToolExample]:
    """``cfg.n`` questions of each category, drawn with ``cfg.seed``, as tool-calling examples."""
    data = bfcl_data_dir() if cfg.categories else Path()
    return [example for category in cfg.categories for example in _bfcl_category(data, category, cfg.n, cfg.seed)]


def _bfcl_category(data: Path, category: str, n: int, seed: int) -> list[ToolExample]:
    questions = [json.loads(line) for line in (data / f"BFCL_v4_{category}.json").open(encoding="utf-8")]
    answers = data / "possible_answer" / f"BFCL_v4_{category}.json"
    truth = {}
    if answers.exists():  # irrelevance categories have none: the right answer is no call
        truth = {a["id"]: a["ground_truth"] for a in map(json.loads, answers.open(encoding="utf-8"))}
    picked = random.Random(seed).sample(questions, min(n, len(questions)))
    examples = []
    for q in picked:
        expected = [ExpectedCall(name, params) for call in truth.get(q["id"], []) for name, params in call.items()]
        reference = [{"name": e.name, "arguments": e.params} for e in expected]
        tools = [bfcl_tool(f) for f in q["function"]]
        examples.append(ToolExample(q["id"], BFCL_PREFIX + category, q["question"][0], tools, expected, reference))
    return examples


def bfcl_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function description as an OpenAI tool: its ``dict``/``float``/``tuple``/``any`` types written in
    JSON schema (the scorer reads both spellings alike)."""

    def schema(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: _SCHEMA_TYPES.get(v, v) if k == "type" and isinstance(v, str) else schema(v) for k, v in node.items()
            }
        if isinstance(node, list):
            return [schema(v) for v in node]
        return node

    return {"type": "function", "function": schema(function)}


def bfcl_scores(
    examples: list[ToolExample], candidate: list[ParsedAnswer], baseline: list[ParsedAnswer] | None
) -> list[BenchmarkScore]:
    """Accuracy per BFCL category, candidate beside baseline, in the order the categories were asked."""
    by_category: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_category.setdefault(e.category.removeprefix(BFCL_PREFIX), []).append(i)

    def accuracy(answers: list[ParsedAnswer], rows: list[int]) -> float:
        right = sum(check_turn(examples[i].tools, answers[i].calls, examples[i].expected).valid for i in rows)
        return round(right / len(rows), 4)

    return [
        BenchmarkScore(
            suite="bfcl",
            task=category,
            metric="accuracy",
            n=len(rows),
            candidate=accuracy(candidate, rows),
            baseline=accuracy(baseline, rows) if baseline is not None else None,
        )
        for category, rows in by_category.items()
    ]


# -------------------------------------------------------------------------- lm-eval
@dataclass(frozen=True)
class LmEvalTarget:
    """What lm-eval evaluates: a model dir in-process (``adapter``: the fine-tune, else its base), or a served
    model through its OpenAI-compatible chat completions."""

    model_dir: Path | None = None
    adapter: bool = True
    endpoint: Endpoint | None = None


@dataclass(frozen=True)
class TaskResult:
    """One lm-eval task's results for one model: ``{"exact_match": 0.4}`` (filters other than ``none`` kept as
    ``metric,filter``), how many examples, and which way each metric is better."""

    n: int
    values: dict[str, float]
    higher_is_better: dict[str, bool]


def lm_eval_tasks(cfg: LmEvalConfig) -> Any:
    """lm-eval's task index for ``cfg`` (None when lm-eval is off), every named task checked to exist: run before
    any model is loaded, so that a misspelt task fails in seconds."""
    if not cfg.tasks:
        return None
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise EvaluateError("eval.benchmarks.lm_eval needs lm-eval: pip install 'tuneline[eval]'") from None
    include = cfg.include_path
    if include and not Path(include).is_dir():
        raise EvaluateError(f"eval.benchmarks.lm_eval.include_path: {include} is not a directory")
    manager = TaskManager(include_path=include, include_defaults=include is None)
    unknown = [t for t in cfg.tasks if t not in manager.all_tasks]
    if unknown:
        where = f" in {include}" if include else " (include_path: a directory of your own task YAMLs)"
        raise EvaluateError(f"eval.benchmarks.lm_eval.tasks: unknown task(s) {unknown}{where}")
    return manager


def lm_eval_run(cfg: LmEvalConfig, manager: Any, target: LmEvalTarget) -> dict[str, TaskResult]:
    """Every task of ``cfg.tasks`` (indexed by :func:`lm_eval_tasks`) on one target, greedy, chat-templated."""
    from lm_eval import simple_evaluate

    with _lm(cfg, target) as lm:
        try:
            out = simple_evaluate(
                model=lm, tasks=list(cfg.tasks), task_manager=manager, limit=cfg.limit, num_fewshot=cfg.num_fewshot,
                apply_chat_template=True, log_samples=False, bootstrap_iters=0, random_seed=0,
            )  # fmt: skip
        except (ValueError, OSError, KeyError, NotImplementedError) as exc:  # data missing, a loglikelihood task
            raise EvaluateError(f"eval.benchmarks.lm_eval: {type(exc).__name__}: {exc}") from None
    if out is None:
        raise EvaluateError("eval.benchmarks.lm_eval: lm-eval returned no results")
    return {task: _task_result(out, task) for task in cfg.tasks}


def _task_result(out: dict[str, Any], task: str) -> TaskResult:
    values = {}
    for key, value in out["results"][task].items():
        metric, _, kind = key.partition(",")
        if kind and not metric.endswith("_stderr") and isinstance(value, int | float):
            values[key.removesuffix(",none")] = round(float(value), 4)
    higher = {str(k): bool(v) for k, v in (out.get("higher_is_better", {}).get(task) or {}).items()}
    return TaskResult(int(out["n-samples"][task]["effective"]), values, higher)


@contextmanager
def _lm(cfg: LmEvalConfig, target: LmEvalTarget) -> Iterator[Any]:
    """lm-eval's model object: ``local-chat-completions`` on an endpoint, ``HFLM`` on a loaded model."""
    if target.endpoint is not None:
        from lm_eval.models.openai_completions import LocalChatCompletion

        endpoint = target.endpoint
        yield LocalChatCompletion(
            base_url=f"{endpoint.url}/v1/chat/completions", model=asyncio.run(endpoint.served_model()),
            header=endpoint.auth_headers(), max_gen_toks=cfg.max_gen_toks, tokenized_requests=False,
            timeout=int(endpoint.timeout_s), max_retries=endpoint.max_retries,
        )  # fmt: skip
        return
    from lm_eval.models.huggingface import HFLM

    from tuneline.models.trained import ModelDirError, load_trained

    try:
        model, tokenizer = load_trained(target.model_dir or Path(), adapter=target.adapter)
    except ModelDirError as exc:
        raise EvaluateError(str(exc)) from None
    if hasattr(model, "merge_and_unload"):  # a PEFT adapter: lm-eval takes a plain transformers model
        model = model.merge_and_unload()
    yield HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size)
    del model
    gc.collect()


def lm_eval_scores(candidate: dict[str, TaskResult], baseline: dict[str, TaskResult] | None) -> list[BenchmarkScore]:
    """One row per task and metric, candidate beside baseline."""
    rows = []
    for task, result in candidate.items():
        other = (baseline or {}).get(task)
        for metric, value in result.values.items():
            rows.append(
                BenchmarkScore(
                    suite="lm_eval",
                    task=task,
                    metric=metric,
                    n=result.n,
                    candidate=value,
                    baseline=other.values.get(metric) if other else None,
                    higher_is_better=result.higher_is_better.get(metric.split(",")[0], True),
                )  # fmt: skip
            )
    return rows


def summaries(scores: list[BenchmarkScore], who: str) -> dict[str, float | None]:
    """:data:`~tuneline.results.BENCHMARK_METRICS` of ``who``: BFCL accuracy over all its questions; the mean over
    lm-eval tasks of each one's first higher-is-better metric. Absent where the suite did not run."""
    out: dict[str, float | None] = {}
    bfcl = [s for s in scores if s.suite == "bfcl"]
    if bfcl:
        values = [(getattr(s, who), s.n) for s in bfcl]
        known = [(v, n) for v, n in values if v is not None]
        out["bfcl_accuracy"] = round(sum(v * n for v, n in known) / sum(n for _, n in known), 4) if known else None
    firsts: dict[str, float | None] = {}
    for s in scores:
        if s.suite == "lm_eval" and s.higher_is_better and s.task not in firsts:
            firsts[s.task] = getattr(s, who)
    if firsts:
        known_values = [v for v in firsts.values() if v is not None]
        out["lm_eval_score"] = round(sum(known_values) / len(known_values), 4) if known_values else None
    return out
