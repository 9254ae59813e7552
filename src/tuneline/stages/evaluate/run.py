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
from tuneline.models.catalogue import builtin_name, is_builtin, is_packaged
from tuneline.models.packaged import materialize
from tuneline.models.resolve import REMOTE_SCHEMES, fetch_remote
from tuneline.models.trained import ModelDirError, read_manifest
from tuneline.progress import stage_progress
from tuneline.redact import redact_url
from tuneline.results import EVAL_GATE, EVAL_METRICS, EVALUATION, EvalMetrics, Evaluation, GateDecision, ModelManifest
from tuneline.stages.evaluate import answers as ans
from tuneline.stages.evaluate import gate as gate_mod
from tuneline.stages.evaluate import judge as jd
from tuneline.stages.evaluate import report
from tuneline.stages.evaluate.errors import EvaluateError
from tuneline.stages.evaluate.reference import scores
from tuneline.stages.train.data import texts as split_texts
from tuneline.tracking import flatten, mlflow_run, tracking_uri

log = logging.getLogger("tuneline")

EXAMPLES = "examples.jsonl"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
REFERENCE = ("exact_match", "rouge_l", "token_f1", "valid_json", "field_accuracy")
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
    started = time.perf_counter()
    e = config.eval
    model_dir = Path(model_dir or config.paths.model)
    split_dir = Path(split_dir or config.paths.split)
    out = Path(out or config.paths.eval)
    try:
        manifest = read_manifest(model_dir)
        prompts = jd.Prompts.load(e.judge.prompts_dir)
    except (ModelDirError, ValueError, OSError) as exc:
        raise EvaluateError(str(exc)) from None
    check_output(out, WRITER, [model_dir, split_dir])  # before the expensive part, not only at the swap
    human = _human_labels(e.judge.human_labels)
    examples = ans.load_examples(split_dir, e.split, e.max_examples)
    log.info("evaluate: %d examples from %s/sft/%s.jsonl", len(examples), split_dir, e.split)

    with ExitStack() as stack, stage_progress("evaluate") as progress:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tuneline-eval-")))

        def task(name: str, total: int) -> Any:
            tid = progress.add_task(name, total=total, rate="")
            return lambda n=1: progress.advance(tid, n)

        # ---- answers
        candidate_src = f"{model_dir} ({manifest.method} adapter on {manifest.base})"
        if e.candidate_endpoint:
            candidate = ans.via_endpoint(
                e.candidate_endpoint,
                examples,
                config,
                "candidate",
                task("candidate answers", len(examples)),
                e.candidate_token_env,
                e.candidate_model,
            )
        else:
            candidate = ans.in_process(
                model_dir, True, examples, config, "candidate", candidate_src, task("candidate answers", len(examples))
            )
        kind, base_dir, base_adapter, base_info = ans.resolve_baseline(config, work)
        baseline: ans.Answers | None = None
        if kind == "endpoint":
            baseline = ans.via_endpoint(
                e.baseline_endpoint or "",
                examples,
                config,
                "baseline",
                task("baseline answers", len(examples)),
                e.baseline_token_env,
                e.baseline_model,
            )
        elif kind == "champion":
            baseline = ans.in_process(
                base_dir or work,
                True,
                examples,
                config,
                "baseline",
                f"{base_info['model_name']} v{base_info['version']} (@champion)",
                task("baseline answers", len(examples)),
            )
        elif kind == "base":
            baseline = ans.in_process(
                model_dir,
                False,
                examples,
                config,
                "baseline",
                f"{manifest.base} (base)",
                task("baseline answers", len(examples)),
            )
        log.info("answers ready: candidate %s; baseline %s", candidate.source, baseline.source if baseline else "none")

        # ---- judge
        mode = e.judge.mode
        cache = CallCache(cache_path or config.paths.judge_cache)
        stack.callback(cache.close)
        if e.judge.endpoint:
            judge_url, judge_name = e.judge.endpoint, redact_url(e.judge.endpoint)
            identity, judge_dir = f"endpoint:{e.judge.endpoint}", None
        else:
            judge_dir = _judge_model_dir(config, model_dir, manifest, split_dir, work)
            identity = f"local:{e.judge.model}:{_dir_fingerprint(judge_dir)}"
            how = "in-process" if mode == "logprobs" else "served locally by `transformers serve`"
            judge_name = f"{e.judge.model} {how}"
            judge_url = None
        judge_name += f" ({mode} mode)"
        requests = _judge_requests(prompts, examples, candidate, baseline, e.judge.pairwise, mode)
        budget = e.judge.top_logprobs if mode == "logprobs" else e.judge.max_new_tokens
        keys = [cache_key(identity, f"{e.judge.api}:{mode}", budget, messages) for _, _, messages in requests]
        outputs: list[str | None] = [cache.get(k) for k in keys]
        hits = sum(o is not None for o in outputs)
        missing = [i for i, o in enumerate(outputs) if o is None]
        errors = 0
        if missing:
            tick = task("judge", len(missing))
            fresh = _run_judge(config, mode, judge_url, judge_dir, requests, missing, tick, stack)
            failed = [r for r in fresh if isinstance(r, EndpointError)]
            if failed and len(failed) == len(fresh):
                raise EvaluateError(f"the judge failed on all {len(fresh)} requests: {failed[0]}")
            errors = len(failed)
            for i, result in zip(missing, fresh, strict=True):
                if not isinstance(result, EndpointError):
                    outputs[i] = result
                    cache.put(keys[i], result)
        log.info("judge (%s): %d requests, %d from cache, %d failed", mode, len(requests), hits, errors)

        # ---- metrics, gate, report
        rows, judge_metrics = _score(examples, candidate, baseline, requests, outputs, human, mode)
        judge_metrics.update(
            mode=mode,
            truth=jd.truth_agreement(rows),
            requests=len(requests),
            cache_hits=hits,
            request_errors=errors,
        )
        metrics = EvalMetrics.model_validate(
            _jsonable(
                {
                    "examples": len(examples),
                    "candidate": {**_mean_reference(rows, "candidate"), **(candidate.loss or {})},
                    "baseline": {**_mean_reference(rows, "baseline"), **(baseline.loss or {})} if baseline else None,
                    "judge": judge_metrics,
                }
            )
        )
        gate = gate_mod.decide(e.gate, metrics)
        metrics = metrics.model_copy(update={"gate_passed": gate.passed})
        evaluation = Evaluation(
            candidate=candidate.source,
            baseline=baseline.source if baseline else "none",
            baseline_kind=kind,
            baseline_info=base_info,
            judge=judge_name,
            split=e.split,
            model_dir=str(model_dir),
            train_run_id=manifest.mlflow_run_id,
            seconds=round(time.perf_counter() - started, 2),
        )
        with atomic_dir(out, WRITER, [model_dir, split_dir]) as tmp:
            metrics.write(tmp / EVAL_METRICS)
            gate.write(tmp / EVAL_GATE)
            with JsonlWriter(tmp / EXAMPLES) as writer:
                writer.write_many(rows)
            report.write_charts(tmp, metrics, rows)
            text = report.markdown(metrics, gate, rows, evaluation)
            write_text_atomic(tmp / REPORT_MD, text)
            write_text_atomic(tmp / REPORT_HTML, report.html(text, tmp))
            run_id = _log_mlflow(config, metrics, gate, rows, evaluation, tmp)
            evaluation.model_copy(update={"mlflow_run_id": run_id}).write(tmp / EVALUATION)
    log.info("evaluate: gate %s in %.1fs → %s", "PASS" if gate.passed else "FAIL", time.perf_counter() - started, out)
    return EvalResult(out=out, metrics=metrics, gate=gate)


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
    if is_packaged(name):
        return materialize(builtin_name(name))  # the cached conversion, shared by every run
    if is_builtin(name):
        if manifest.base == name and manifest.base_dir:
            return model_dir / manifest.base_dir  # the same built-in model, already built
        return build_builtin(name, split_texts(split_dir), work / "judge", seed=config.train.seed)
    if name.startswith(REMOTE_SCHEMES):
        return fetch_remote(name)
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
        raise EvaluateError(
            f"eval.judge.model {name!r} is neither built-in, a directory, nor in the local hub "
            f"cache ({type(exc).__name__}); download it first or set eval.judge.endpoint"
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


def _score(
    examples: list[ans.Example],
    candidate: ans.Answers,
    baseline: ans.Answers | None,
    requests: list[Request],
    outputs: list[str | None],
    human: dict[str, jd.Outcome] | None,
    mode: jd.Mode = "generate",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    by_example: list[dict[str, str | None]] = [{} for _ in examples]
    for (kind, i, _), text in zip(requests, outputs, strict=True):
        by_example[i][kind] = text
    rows, failures = [], 0
    for i, ex in enumerate(examples):
        judged = by_example[i]
        row: dict[str, Any] = {
            "id": ex.id,
            "category": ex.category,
            "question": jd.render_question(ex.prompt),
            "reference": ex.reference,
            "candidate": candidate.texts[i],
        }
        row.update({f"candidate_{k}": v for k, v in scores(candidate.texts[i], ex.reference).items()})
        row["judge_score_candidate"] = jd.read_score(judged.get("score_candidate"), mode)
        row["judge_output_candidate"] = judged.get("score_candidate")
        failures += row["judge_score_candidate"] is None
        if baseline:
            row["baseline"] = baseline.texts[i]
            row.update({f"baseline_{k}": v for k, v in scores(baseline.texts[i], ex.reference).items()})
            row["judge_score_baseline"] = jd.read_score(judged.get("score_baseline"), mode)
            row["judge_output_baseline"] = judged.get("score_baseline")
            failures += row["judge_score_baseline"] is None
        if "pair_candidate_first" in judged:
            first = jd.as_verdict(jd.read_verdict(judged["pair_candidate_first"], mode), candidate_is_a=True)
            second = jd.as_verdict(jd.read_verdict(judged["pair_baseline_first"], mode), candidate_is_a=False)
            failures += (first is None) + (second is None)
            row.update(
                verdict_candidate_first=first,
                verdict_baseline_first=second,
                pairwise=jd.combine(first, second),
                judge_output_candidate_first=judged["pair_candidate_first"],
                judge_output_baseline_first=judged["pair_baseline_first"],
            )
        rows.append(row)
    metrics: dict[str, Any] = {
        "candidate_score": jd.mean_ci(
            [r["judge_score_candidate"] for r in rows if r["judge_score_candidate"] is not None]
        ),
        "baseline_score": jd.mean_ci(
            [r["judge_score_baseline"] for r in rows if r.get("judge_score_baseline") is not None]
        )
        if baseline
        else None,
        "parse_failure_rate": failures / len(requests) if requests else None,
        "pairwise": None,
        "agreement": None,
    }
    if any("pairwise" in r for r in rows):
        outcomes = [r["pairwise"] for r in rows]
        pw = jd.pairwise_rates(outcomes)
        both = [r for r in rows if r["verdict_candidate_first"] is not None and r["verdict_baseline_first"] is not None]
        pw["position_consistency"] = (
            (sum(r["verdict_candidate_first"] == r["verdict_baseline_first"] for r in both) / len(both))
            if both
            else None
        )
        metrics["pairwise"] = pw
        if human is not None:
            metrics["agreement"] = jd.agreement({r["id"]: r["pairwise"] for r in rows}, human)
    return rows, metrics


def _mean_reference(rows: list[dict[str, Any]], who: str) -> dict[str, float]:
    """Mean of each reference metric over the rows that have it (valid_json/field_accuracy: JSON references)."""
    means = {}
    for name in REFERENCE:
        values = [r[f"{who}_{name}"] for r in rows if f"{who}_{name}" in r]
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
    rows: list[dict[str, Any]],
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
            mlflow.log_metrics({k.replace("@", "_"): v for k, v in numbers.items()})
            mlflow.log_table({k: [r.get(k) for r in rows] for k in rows[0]}, artifact_file="examples_table.json")
            mlflow.log_artifacts(str(out), "evaluation")
            return str(run.info.run_id)
    except ConnectionError as exc:
        raise EvaluateError(str(exc)) from None
