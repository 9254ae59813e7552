"""The evaluate stage: candidate vs baseline on the held-out split, reference metrics, judge, gate, report.

Outputs (one directory, written atomically):
``metrics.json`` (DVC metrics), ``gate.json`` (pass/fail with reasons; registration and
promotion read it), ``examples.jsonl`` (per-example table), ``report.md``/``report.html``
with ``charts/``, and ``evaluation.json`` (what was compared with what, MLflow run id).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.config import TunelineConfig
from tuneline.inference.cache import CallCache, cache_key
from tuneline.inference.client import Endpoint, EndpointError, run_all
from tuneline.inference.local_server import LocalServer
from tuneline.io.atomic import atomic_dir, check_output, write_text_atomic
from tuneline.io.jsonl import JsonlWriter, read_jsonl
from tuneline.models.builtin import build_builtin
from tuneline.models.catalogue import is_builtin, is_packaged
from tuneline.models.resolve import REMOTE_SCHEMES, NotLocal, fetch_remote, local_model_dir
from tuneline.models.trained import ModelDirError, read_manifest
from tuneline.progress import stage_progress
from tuneline.redact import redact_url
from tuneline.results import (
    EVAL_GATE,
    EVAL_METRICS,
    EVALUATION,
    REFERENCE_METRICS,
    BenchmarkScore,
    EvalMetrics,
    Evaluation,
    ExampleRow,
    GateDecision,
    JudgedAnswer,
    ModelManifest,
    PairwiseJudgement,
    ToolCallRow,
)
from tuneline.stages.evaluate import answers as ans
from tuneline.stages.evaluate import benchmarks as bench
from tuneline.stages.evaluate import gate as gate_mod
from tuneline.stages.evaluate import judge as jd
from tuneline.stages.evaluate import report
from tuneline.stages.evaluate.errors import EvaluateError
from tuneline.stages.evaluate.reference import scores
from tuneline.stages.evaluate.tool_scores import tool_metrics, tool_rows
from tuneline.stages.train.data import texts as split_texts
from tuneline.tracking import flatten, mlflow_run, tracking_uri

log = logging.getLogger("tuneline")

EXAMPLES = "examples.jsonl"
TOOL_CALLS = "tool_calls.jsonl"  # one ToolCallRow per tool-calling test record
REPORT_MD, REPORT_HTML = "report.md", "report.html"
WRITER = "tuneline evaluate"


@dataclass(frozen=True)
class EvalResult:
    out: Path
    metrics: EvalMetrics
    gate: GateDecision


def run_evaluate(
    config: TunelineConfig,
    model_dir: str | Path | None = None,
    split_dir: str | Path | None = None,
    out: str | Path | None = None,
    cache_path: str | Path | None = None,
) -> EvalResult:
    """Answer the held-out split with the candidate and the baseline, score, judge, gate, and write the report.

    The paths default to ``paths.model``, ``paths.split``, ``paths.eval`` (this function owns those defaults).
    """
    started = time.perf_counter()
    e = config.eval
    model_dir, split_dir = Path(model_dir or config.paths.model), Path(split_dir or config.paths.split)
    out = Path(out or config.paths.eval)
    try:
        manifest = read_manifest(model_dir)
        prompts = jd.Prompts.load(e.judge.prompts_dir)
    except (ModelDirError, ValueError, OSError) as exc:
        raise EvaluateError(str(exc)) from None
    check_output(out, WRITER, [model_dir, split_dir])  # before the expensive part, not only at the swap
    human = _human_labels(e.judge.human_labels)
    examples = ans.load_examples(split_dir, e.split, e.max_examples)
    log.info(
        "evaluate: %d text and %d tool-calling examples from %s/sft/%s.jsonl",
        len(examples.text), len(examples.tools), split_dir, e.split,
    )  # fmt: skip

    with ExitStack() as stack, stage_progress("evaluate") as progress:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tuneline-eval-")))

        def task(name: str, total: int) -> Any:
            tid = progress.add_task(name, total=total, rate="")
            return lambda n=1: progress.advance(tid, n)

        candidate, kind, baseline, base_info, scores = _answers_and_benchmarks(
            config, model_dir, manifest, examples, task, work
        )
        judge = _judge(config, model_dir, manifest, split_dir, work)
        requests = _judge_requests(prompts, examples.text, candidate, baseline, e.judge.pairwise, e.judge.mode)
        cache = CallCache(cache_path or config.paths.judge_cache)
        stack.callback(cache.close)
        judged = _judge_all(config, judge, requests, cache, task, stack)
        rows = _rows(examples.text, candidate, baseline, requests, judged.outputs, e.judge.mode)
        tools = tool_rows(examples.tools, candidate, baseline)
        metrics = _metrics(rows, tools, candidate, baseline, judged, human, e.judge.mode, scores)
        gate = gate_mod.decide(e.gate, metrics)
        metrics = metrics.model_copy(update={"gate_passed": gate.passed})
        evaluation = Evaluation(
            candidate=candidate.source,
            baseline=baseline.source if baseline else "none",
            baseline_kind=kind,
            baseline_info=base_info,
            judge=judge.name,
            split=e.split,
            model_dir=str(model_dir),
            train_run_id=manifest.mlflow_run_id,
            seconds=round(time.perf_counter() - started, 2),
        )
        with atomic_dir(out, WRITER, [model_dir, split_dir]) as tmp:
            _write_outputs(config, tmp, metrics, gate, rows, tools, evaluation)
    log.info("evaluate: gate %s in %.1fs → %s", "PASS" if gate.passed else "FAIL", time.perf_counter() - started, out)
    return EvalResult(out=out, metrics=metrics, gate=gate)


def _answers_and_benchmarks(
    config: TunelineConfig, model_dir: Path, manifest: ModelManifest, examples: ans.Examples, task: Any, work: Path
) -> tuple[ans.Answers, str, ans.Answers | None, dict[str, Any], list[BenchmarkScore]]:
    """Both models' answers (candidate; baseline kind, answers, info) and the benchmarks' scores. BFCL's questions
    are asked in the same pass as the split's tool-calling records, so that each model is loaded once."""
    bfcl = bench.bfcl_examples(config.eval.benchmarks.bfcl)
    tasks = bench.lm_eval_tasks(config.eval.benchmarks.lm_eval)  # both checked before any model loads
    asked = ans.Examples(examples.text, examples.tools + bfcl)
    candidate = _candidate_answers(config, model_dir, manifest, asked, task)
    kind, baseline, base_info, base_target = _baseline_answers(config, model_dir, manifest, asked, task, work)
    candidate, candidate_bfcl = ans.split_tools(candidate, len(examples.tools))
    baseline, baseline_bfcl = ans.split_tools(baseline, len(examples.tools)) if baseline else (None, None)
    log.info("answers ready: candidate %s; baseline %s", candidate.source, baseline.source if baseline else "none")
    scores = bench.bfcl_scores(bfcl, candidate_bfcl, baseline_bfcl) if bfcl else []
    if tasks is not None:
        cfg = config.eval.benchmarks.lm_eval
        log.info("lm-eval: %s on the candidate%s", ", ".join(cfg.tasks), " and the baseline" if base_target else "")
        theirs = bench.lm_eval_run(cfg, tasks, base_target) if base_target else None
        scores += bench.lm_eval_scores(bench.lm_eval_run(cfg, tasks, _candidate_target(config, model_dir)), theirs)
    return candidate, kind, baseline, base_info, scores


def _candidate_answers(
    config: TunelineConfig, model_dir: Path, manifest: ModelManifest, examples: ans.Examples, task: Any
) -> ans.Answers:
    """The fine-tune's answers: from its served endpoint when ``eval.candidate_endpoint`` is set, else in-process."""
    e, tick = config.eval, task("candidate answers", len(examples.text) + len(examples.tools))
    if e.candidate_endpoint:
        return ans.via_endpoint(
            e.candidate_endpoint, examples, config, "candidate", tick, e.candidate_token_env, e.candidate_model
        )
    source = f"{model_dir} ({manifest.method} adapter on {manifest.base})"
    return ans.in_process(model_dir, True, examples, config, "candidate", source, tick)


def _baseline_answers(
    config: TunelineConfig, model_dir: Path, manifest: ModelManifest, examples: ans.Examples, task: Any,
    work: Path,
) -> tuple[str, ans.Answers | None, dict[str, Any], bench.LmEvalTarget | None]:  # fmt: skip
    """What the candidate is compared with (``eval.baseline``): an endpoint, the registry's champion, the base
    model, or nothing. Returns its kind, its answers, what it is (for the report) and where lm-eval finds it."""
    e = config.eval
    kind, base_dir, _, base_info = ans.resolve_baseline(config, work)
    if kind == "none":
        return kind, None, base_info, None
    tick = task("baseline answers", len(examples.text) + len(examples.tools))
    if kind == "endpoint":
        answers = ans.via_endpoint(
            e.baseline_endpoint or "", examples, config, "baseline", tick, e.baseline_token_env, e.baseline_model
        )
        endpoint = Endpoint.from_config(
            e.baseline_endpoint or "", e.judge, e.baseline_token_env, api="chat", model=e.baseline_model
        )
        return kind, answers, base_info, bench.LmEvalTarget(endpoint=endpoint)
    if kind == "champion":
        source = f"{base_info['model_name']} v{base_info['version']} (@champion)"
        answers = ans.in_process(base_dir or work, True, examples, config, "baseline", source, tick)
        return kind, answers, base_info, bench.LmEvalTarget(base_dir or work, adapter=True)
    answers = ans.in_process(model_dir, False, examples, config, "baseline", f"{manifest.base} (base)", tick)
    return kind, answers, base_info, bench.LmEvalTarget(model_dir, adapter=False)


def _candidate_target(config: TunelineConfig, model_dir: Path) -> bench.LmEvalTarget:
    e = config.eval
    if e.candidate_endpoint:
        endpoint = Endpoint.from_config(
            e.candidate_endpoint, e.judge, e.candidate_token_env, api="chat", model=e.candidate_model
        )
        return bench.LmEvalTarget(endpoint=endpoint)
    return bench.LmEvalTarget(model_dir, adapter=True)


@dataclass(frozen=True)
class _Judge:
    """Where the judge runs (an endpoint URL, or a local model dir), its cache identity and its name."""

    url: str | None
    local_dir: Path | None
    identity: str
    name: str


def _judge(config: TunelineConfig, model_dir: Path, manifest: ModelManifest, split_dir: Path, work: Path) -> _Judge:
    j = config.eval.judge
    if j.endpoint:
        return _Judge(j.endpoint, None, f"endpoint:{j.endpoint}", f"{redact_url(j.endpoint)} ({j.mode} mode)")
    local_dir = _judge_model_dir(config, model_dir, manifest, split_dir, work)
    how = "in-process" if j.mode == "logprobs" else "served locally by `transformers serve`"
    identity = f"local:{j.model}:{_dir_fingerprint(local_dir)}"
    return _Judge(None, local_dir, identity, f"{j.model} {how} ({j.mode} mode)")


@dataclass(frozen=True)
class _Judged:
    outputs: list[str | None]  # per request; None where the judge failed
    cache_hits: int
    errors: int


def _judge_all(
    config: TunelineConfig, judge: _Judge, requests: list[Request], cache: CallCache, task: Any, stack: ExitStack
) -> _Judged:
    """Every judge request, from the cache where it was asked before; fails only when all of them fail."""
    j = config.eval.judge
    budget = j.top_logprobs if j.mode == "logprobs" else j.max_new_tokens
    keys = [cache_key(judge.identity, f"{j.api}:{j.mode}", budget, messages) for _, _, messages in requests]
    outputs: list[str | None] = [cache.get(k) for k in keys]
    hits = sum(o is not None for o in outputs)
    missing = [i for i, o in enumerate(outputs) if o is None]
    errors = 0
    if missing:
        fresh = _run_judge(
            config, j.mode, judge.url, judge.local_dir, requests, missing, task("judge", len(missing)), stack
        )
        failed = [r for r in fresh if isinstance(r, EndpointError)]
        if failed and len(failed) == len(fresh):
            raise EvaluateError(f"the judge failed on all {len(fresh)} requests: {failed[0]}")
        errors = len(failed)
        for i, result in zip(missing, fresh, strict=True):
            if not isinstance(result, EndpointError):
                outputs[i] = result
                cache.put(keys[i], result)
    log.info("judge (%s): %d requests, %d from cache, %d failed", j.mode, len(requests), hits, errors)
    return _Judged(outputs, hits, errors)


def _metrics(
    rows: list[ExampleRow], tools: list[ToolCallRow], candidate: ans.Answers, baseline: ans.Answers | None,
    judged: _Judged, human: dict[str, jd.Outcome] | None, mode: jd.Mode, scores: list[BenchmarkScore],
) -> EvalMetrics:  # fmt: skip
    judge_metrics = _judge_metrics(rows, len(judged.outputs), human, baseline is not None)
    judge_metrics.update(
        mode=mode,
        truth=jd.truth_agreement(rows),
        requests=len(judged.outputs),
        cache_hits=judged.cache_hits,
        request_errors=judged.errors,
    )
    reference = {who: _mean_reference(rows, who) for who in ("candidate", "baseline")}
    payload = {
        "examples": len(rows),
        "tool_examples": len(tools),
        "candidate": {
            **reference["candidate"], **(candidate.loss or {}), **tool_metrics(tools, "candidate"),
            **bench.summaries(scores, "candidate"),
        },
        "baseline": {
            **reference["baseline"], **(baseline.loss or {}), **tool_metrics(tools, "baseline"),
            **bench.summaries(scores, "baseline"),
        } if baseline else None,
        "judge": judge_metrics,
        "benchmarks": [s.model_dump(mode="json") for s in scores],
    }  # fmt: skip
    return EvalMetrics.model_validate(_jsonable(payload))


def _write_outputs(
    config: TunelineConfig, tmp: Path, metrics: EvalMetrics, gate: GateDecision, rows: list[ExampleRow],
    tools: list[ToolCallRow], evaluation: Evaluation,
) -> None:  # fmt: skip
    metrics.write(tmp / EVAL_METRICS)
    gate.write(tmp / EVAL_GATE)
    with JsonlWriter(tmp / EXAMPLES) as writer:
        writer.write_many(r.model_dump(mode="json") for r in rows)
    with JsonlWriter(tmp / TOOL_CALLS) as writer:
        writer.write_many(r.model_dump(mode="json") for r in tools)
    report.write_charts(tmp, metrics, rows)
    text = report.markdown(metrics, gate, rows, evaluation, tools)
    write_text_atomic(tmp / REPORT_MD, text)
    write_text_atomic(tmp / REPORT_HTML, report.html(text, tmp))
    run_id = _log_mlflow(config, metrics, gate, rows, evaluation, tmp)
    evaluation.model_copy(update={"mlflow_run_id": run_id}).write(tmp / EVALUATION)


def _human_labels(path: str | None) -> dict[str, jd.Outcome] | None:
    if not path:
        return None
    mapping: dict[str, jd.Outcome] = {"candidate": "win", "baseline": "loss", "tie": "tie"}
    labels: dict[str, jd.Outcome] = {}
    try:
        for n, record in enumerate(read_jsonl(path), 1):
            winner = record.get("winner")
            if winner not in mapping or "id" not in record:
                raise EvaluateError(
                    f'{path}:{n}: expected {{"id", "winner": candidate|baseline|tie}}, got {json.dumps(record)[:120]}'
                )
            labels[str(record["id"])] = mapping[winner]
    except FileNotFoundError:
        raise EvaluateError(f"eval.judge.human_labels: {path} not found") from None
    except ValueError as exc:
        raise EvaluateError(f"eval.judge.human_labels: {path}: {exc}") from None
    return labels


def _judge_model_dir(
    config: TunelineConfig, model_dir: Path, manifest: ModelManifest, split_dir: Path, work: Path
) -> Path:
    """A local directory ``transformers serve`` can load for ``eval.judge.model``."""
    name = config.eval.judge.model
    if is_builtin(name) and not is_packaged(name):
        if manifest.base == name and manifest.base_dir:
            return model_dir / manifest.base_dir  # the same built-in model, already built
        return build_builtin(name, split_texts(split_dir), work / "judge", seed=config.train.seed)
    if name.startswith(REMOTE_SCHEMES):
        return fetch_remote(name)
    try:
        return local_model_dir(name)  # a packaged conversion (cached, shared by every run), a dir, the hub cache
    except NotLocal as exc:
        raise EvaluateError(
            f"eval.judge.model {name!r} is neither built-in, a directory, nor in the local hub "
            f"cache ({exc}); download it first or set eval.judge.endpoint"
        ) from None


def _dir_fingerprint(path: Path) -> str:
    """Identity of a model dir for the judge cache: config, tokenizer, and each weight file's size and head."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode())
        with open(file, "rb") as fh:
            digest.update(str(file.stat().st_size).encode() + fh.read(1 << 20))
    return digest.hexdigest()[:16]


Request = tuple[str, int, list[dict[str, str]]]  # (kind, example index, messages)


def _judge_requests(
    prompts: jd.Prompts,
    examples: list[ans.Example],
    candidate: ans.Answers,
    baseline: ans.Answers | None,
    pairwise: bool,
    mode: jd.Mode,
) -> list[Request]:
    requests: list[Request] = []
    for i, ex in enumerate(examples):
        question, ref = jd.render_question(ex.prompt), ex.reference
        requests.append(("score_candidate", i, prompts.single_messages(question, ref, candidate.texts[i], mode)))
        if baseline:
            requests.append(("score_baseline", i, prompts.single_messages(question, ref, baseline.texts[i], mode)))
            if pairwise:
                c, b = candidate.texts[i], baseline.texts[i]
                requests.append(("pair_candidate_first", i, prompts.pairwise_messages(question, ref, c, b, mode)))
                requests.append(("pair_baseline_first", i, prompts.pairwise_messages(question, ref, b, c, mode)))
    return requests


def _run_judge(
    config: TunelineConfig,
    mode: jd.Mode,
    url: str | None,
    local_dir: Path | None,
    requests: list[Request],
    which: list[int],
    tick: Any,
    stack: ExitStack,
) -> list[str | EndpointError]:
    """Judge outputs of ``requests[which]`` as the text the cache keeps (logprob mode: the encoded alternatives).

    Logprob mode with a local judge runs in-process (``transformers serve`` rejects logprobs);
    everything else goes through the endpoint client, a local judge behind ``transformers serve``.
    """
    j = config.eval.judge
    if mode == "logprobs" and url is None:
        from tuneline.inference.next_token import judge_in_process

        labelled = [(_labels(requests[i][0]), requests[i][2]) for i in which]
        tops = judge_in_process(local_dir or Path(), labelled, on_done=tick, batch_size=config.eval.batch_size)
        return [jd.encode_logprobs(top) for top in tops]
    if url is None:
        url = stack.enter_context(LocalServer(local_dir or Path()))
    endpoint = Endpoint.from_config(url, j)
    messages = [requests[i][2] for i in which]
    if mode == "logprobs":
        labels = [_labels(requests[i][0]) for i in which]
        results = run_all(endpoint, messages, 1, on_done=tick, top_logprobs=j.top_logprobs, labels=labels)
        return [r if isinstance(r, EndpointError) else jd.encode_logprobs(r.top_logprobs or []) for r in results]
    results = run_all(endpoint, messages, j.max_new_tokens, on_done=tick)
    return [r if isinstance(r, EndpointError) else r.text for r in results]


def _labels(kind: str) -> tuple[str, ...]:
    return jd.SCORE_TOKENS if kind.startswith("score_") else jd.VERDICT_TOKENS


def _rows(
    examples: list[ans.Example], candidate: ans.Answers, baseline: ans.Answers | None, requests: list[Request],
    outputs: list[str | None], mode: jd.Mode,
) -> list[ExampleRow]:  # fmt: skip
    """Each example with both answers, their reference scores and what the judge made of them."""
    judged: list[dict[str, str | None]] = [{} for _ in examples]
    for (kind, i, _), text in zip(requests, outputs, strict=True):
        judged[i][kind] = text

    def answer(text: str, reference: str, output: str | None) -> JudgedAnswer:
        return JudgedAnswer(
            text=text, scores=scores(text, reference), judge_score=jd.read_score(output, mode), judge_output=output
        )

    rows = []
    for i, ex in enumerate(examples):
        got = judged[i]
        rows.append(
            ExampleRow(
                id=ex.id,
                category=ex.category,
                question=jd.render_question(ex.prompt),
                reference=ex.reference,
                candidate=answer(candidate.texts[i], ex.reference, got.get("score_candidate")),
                baseline=answer(baseline.texts[i], ex.reference, got.get("score_baseline")) if baseline else None,
                pairwise=_pairwise(got, mode) if "pair_candidate_first" in got else None,
            )
        )
    return rows


def _pairwise(got: dict[str, str | None], mode: jd.Mode) -> PairwiseJudgement:
    first = jd.as_verdict(jd.read_verdict(got["pair_candidate_first"], mode), candidate_is_a=True)
    second = jd.as_verdict(jd.read_verdict(got["pair_baseline_first"], mode), candidate_is_a=False)
    return PairwiseJudgement(
        candidate_first=first,
        baseline_first=second,
        outcome=jd.combine(first, second),
        output_candidate_first=got["pair_candidate_first"],
        output_baseline_first=got["pair_baseline_first"],
    )


def _judge_metrics(
    rows: list[ExampleRow], n_requests: int, human: dict[str, jd.Outcome] | None, has_baseline: bool
) -> dict[str, Any]:
    """Mean grades with confidence intervals, the share of unreadable verdicts, pairwise rates."""
    answers = [a for r in rows for a in r.answers().values()]
    pairs = [r.pairwise for r in rows if r.pairwise]
    failures = sum(a.judge_score is None for a in answers)
    failures += sum((p.candidate_first is None) + (p.baseline_first is None) for p in pairs)
    grades = {
        who: [a.judge_score for r in rows if (a := r.answers().get(who)) and a.judge_score is not None]
        for who in ("candidate", "baseline")
    }
    metrics: dict[str, Any] = {
        "candidate_score": jd.mean_ci(grades["candidate"]),
        "baseline_score": jd.mean_ci(grades["baseline"]) if has_baseline else None,
        "parse_failure_rate": failures / n_requests if n_requests else None,
        "pairwise": None,
        "agreement": None,
    }
    if pairs:
        pw = jd.pairwise_rates([p.outcome for p in pairs])
        both = [p for p in pairs if p.candidate_first is not None and p.baseline_first is not None]
        pw["position_consistency"] = (
            sum(p.candidate_first == p.baseline_first for p in both) / len(both) if both else None
        )
        metrics["pairwise"] = pw
        if human is not None:
            metrics["agreement"] = jd.agreement({r.id: r.pairwise.outcome for r in rows if r.pairwise}, human)
    return metrics


def _mean_reference(rows: list[ExampleRow], who: str) -> dict[str, float]:
    """Mean of each reference metric over the rows that have it (valid_json/field_accuracy: JSON references)."""
    means = {}
    for name in REFERENCE_METRICS:
        values = [v for r in rows if (a := r.answers().get(who)) and (v := getattr(a.scores, name)) is not None]
        if values:
            means[name] = sum(values) / len(values)
    return means


def _jsonable(payload: Any) -> Any:
    """NaN/inf are not JSON: they become null."""
    if isinstance(payload, dict):
        return {k: _jsonable(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_jsonable(v) for v in payload]
    if isinstance(payload, float) and not math.isfinite(payload):
        return None
    return payload


def _log_mlflow(
    config: TunelineConfig,
    metrics: EvalMetrics,
    gate: GateDecision,
    rows: list[ExampleRow],
    evaluation: Evaluation,
    out: Path,
) -> str:
    import mlflow

    uri = tracking_uri(config.registry.tracking_uri)
    try:
        with mlflow_run(uri, config.registry.experiment, run_name="evaluate", system_metrics=False) as run:
            mlflow.set_tags(
                {
                    "tuneline.stage": "evaluate",
                    "tuneline.gate": "pass" if gate.passed else "fail",
                    "tuneline.judge_mode": metrics.judge.mode,
                    "tuneline.train_run_id": evaluation.train_run_id or "",
                }
            )
            mlflow.log_params(
                {
                    "baseline": evaluation.baseline[:500],
                    "judge": evaluation.judge[:500],
                    **flatten(config.eval.model_dump(mode="json"), "eval."),
                }
            )
            numbers = {
                k: float(v)
                for k, v in flatten(metrics.model_dump(mode="json")).items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            numbers["gate_passed"] = float(gate.passed)
            for b in metrics.benchmarks:  # bench.bfcl.simple_python.accuracy.candidate, ...
                numbers.update(
                    {f"{b.key}.{who}": v for who in ("candidate", "baseline") if (v := getattr(b, who)) is not None}
                )
            mlflow.log_metrics({k.replace("@", "_"): v for k, v in numbers.items()})
            flat = [flatten(r.model_dump(mode="json")) for r in rows]
            columns = sorted({k for row in flat for k in row})
            mlflow.log_table({k: [row.get(k) for row in flat] for k in columns}, artifact_file="examples_table.json")
            mlflow.log_artifacts(str(out), "evaluation")
            return str(run.info.run_id)
    except ConnectionError as exc:
        raise EvaluateError(str(exc)) from None
