"""The generate stage: synthetic training data from a teacher, filtered, deduplicated and traced.

Outputs (one directory, written atomically; ingest reads it like any source): ``generated.jsonl`` (SFT
conversations, or preference records for ``preference``, each with ``meta.generated``: teacher, method, prompt
template hash, seed lines, judge score, sampling), ``dropped.jsonl`` (every record not kept, with its reason, and
every unreadable seed line with its file and line), and ``report.json`` (:class:`~tuneline.results.GenerateReport`).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneline.config import TunelineConfig
from tuneline.config.schema import GENERATED_RECORDS
from tuneline.inference.cache import CallCache
from tuneline.io.atomic import atomic_dir, check_output
from tuneline.io.jsonl import JsonlWriter
from tuneline.progress import stage_progress
from tuneline.results import GenerateReport
from tuneline.stages.generate import methods as mt
from tuneline.stages.generate.judging import Judge
from tuneline.stages.generate.teacher import Call, Teacher

log = logging.getLogger("tuneline")

GENERATED, DROPPED, REPORT = GENERATED_RECORDS, "dropped.jsonl", "report.json"
WRITER = "tuneline generate"


@dataclass
class _Run:
    """One run's state: the config, its seeds, the teacher and judge, and what was kept and dropped."""

    config: TunelineConfig
    seeds: list[mt.Seed]
    teacher: Teacher
    judge: Judge
    task: Any
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def drop(self, reason: str, prompt: str, answer: str | None = None, **detail: Any) -> None:
        self.dropped.append({"reason": reason, "prompt": prompt, "answer": answer, **detail})

    def provenance(self, template: str, seeds: list[str], **extra: Any) -> dict[str, Any]:
        g = self.config.generate
        return {"teacher": self.teacher.name, "method": g.method, "template": template, "seeds": seeds, **extra}


def run_generate(
    config: TunelineConfig, out: str | Path | None = None, cache_path: str | Path | None = None
) -> GenerateReport:
    """Make ``generate.method``'s records from ``generate.seeds`` with the teacher; paths default to
    ``paths.generated`` and ``paths.generate_cache``."""
    started = time.perf_counter()
    g = config.generate
    out = Path(out or config.paths.generated)
    seeds, unreadable = mt.read_seeds(g.seeds)
    check_output(out, WRITER, [Path(g.seeds)])
    cache = CallCache(cache_path or config.paths.generate_cache)
    try:
        with stage_progress("generate") as progress:

            def task(name: str, total: int) -> Any:
                tid = progress.add_task(name, total=total, rate="")
                return lambda n=1: progress.advance(tid, n)

            run = _Run(config, seeds, Teacher(config, cache), Judge(config, cache), task)
            METHODS[g.method](run, random.Random(g.seed))
    finally:
        cache.close()
    run.dropped += [{"reason": "unreadable_seed", **p} for p in unreadable]
    spend = run.teacher.spend
    price = g.price_per_million_tokens
    report = GenerateReport(
        method=g.method, teacher=run.teacher.name, seeds=len(seeds), requests=spend.requests,
        cache_hits=spend.cache_hits, failed=spend.failed, kept=len(run.kept),
        dropped=dict(Counter(d["reason"] for d in run.dropped)), judged=run.judge.calls,
        prompt_tokens=spend.prompt_tokens, completion_tokens=spend.completion_tokens,
        cost_usd=round(spend.tokens * price / 1e6, 6) if price is not None else None,
        budget_exhausted=spend.budget_exhausted, seconds=round(time.perf_counter() - started, 2),
    )  # fmt: skip
    _write(out, [Path(g.seeds)], run.kept, run.dropped, report)
    log.info(
        "generate (%s): %d kept, %d dropped %s; %d teacher calls (%d from cache), %d tokens → %s",
        g.method, report.kept, len(run.dropped), report.dropped, spend.requests, spend.cache_hits, spend.tokens, out,
    )  # fmt: skip
    return report


def skip_generate(config: TunelineConfig, out: str | Path | None = None) -> GenerateReport:
    """The pipeline's generate step with ``generate.enabled`` off: an empty output, so ``dvc repro`` has the
    stage's out and ingest (which reads it only when enabled) is unchanged."""
    report = GenerateReport(enabled=False, method=config.generate.method, teacher="none (generate.enabled: false)")
    _write(Path(out or config.paths.generated), [], [], [], report)
    return report


def _write(out: Path, inputs: list[Path], kept: list[Any], dropped: list[Any], report: GenerateReport) -> None:
    with atomic_dir(out, WRITER, inputs) as tmp:
        with JsonlWriter(tmp / GENERATED) as writer:
            writer.write_many(kept)
        with JsonlWriter(tmp / DROPPED) as writer:
            writer.write_many(dropped)
        report.write(tmp / REPORT)


def _self_instruct(run: _Run, rng: random.Random) -> None:
    """New instructions in the seeds' style (a few seeds shown per request), filtered by similarity, answered."""
    g = run.config.generate
    shown = [rng.sample(run.seeds, min(g.few_shot, len(run.seeds))) for _ in range(g.n)]
    calls = [Call(mt.self_instruct_messages([s.prompt for s in p]), g.temperature, g.seed + i) for i, p in enumerate(shown)]  # fmt: skip
    similarity = mt.Similarity([s.prompt for s in run.seeds])
    template = mt.template_hash(mt.SELF_INSTRUCT)
    fresh: list[tuple[str, str | None, dict[str, Any]]] = []
    for text, picked in zip(run.teacher.ask(calls, run.task("instructions", len(calls))), shown, strict=True):
        instruction = mt.parse_instruction(text) if text is not None else None
        if text is None:
            run.drop("not_generated", "")
        elif instruction is None:
            run.drop("malformed_instruction", "", text)
        elif (closest := similarity.closest(instruction)) > g.max_similarity:
            run.drop("too_similar", instruction, similarity=round(closest, 3))
        else:
            similarity.add(instruction)
            fresh.append((instruction, picked[0].system, run.provenance(template, [s.id for s in picked])))
    answers = run.teacher.ask([Call(_prompt(i, system)) for i, system, _ in fresh], run.task("answers", len(fresh)))
    _keep_answers(run, [(_prompt(i, system), a, p) for (i, system, p), a in zip(fresh, answers, strict=True)])


def _distil(run: _Run, rng: random.Random) -> None:
    """The teacher's answers to the seeds' prompts, ``generate.samples`` per prompt (sampled when more than one)."""
    g = run.config.generate
    temperature = g.temperature if g.samples > 1 else 0.0
    work = [(s, k) for s in run.seeds[: g.n] for k in range(g.samples)]
    calls = [Call(_prompt(s.prompt, s.system), temperature, g.seed + k) for s, k in work]
    answers = run.teacher.ask(calls, run.task("answers", len(calls)))
    items = [(c.messages, a, run.provenance("distil", [s.id], sample=k, temperature=temperature)) for (s, k), c, a in zip(work, calls, answers, strict=True)]  # fmt: skip
    _keep_answers(run, items)


def _preference(run: _Run, rng: random.Random) -> None:
    """Two answers per prompt at two temperatures; the judge, in both orders, picks the chosen one."""
    g = run.config.generate
    prompts = run.seeds[: g.n]
    calls = [Call(_prompt(s.prompt, s.system), t, g.seed) for s in prompts for t in g.preference_temperatures]
    answers = run.teacher.ask(calls, run.task("answers", len(calls)))
    pairs = []
    for i, s in enumerate(prompts):
        first, second = answers[2 * i], answers[2 * i + 1]
        if first is None or second is None:
            run.drop("not_generated", s.prompt, first or second)
        elif mt.canonical(first) == mt.canonical(second):
            run.drop("identical_answers", s.prompt, first)
        else:
            pairs.append((s, first, second))
    outcomes = run.judge.prefer([(s.prompt, a, b) for s, a, b in pairs], run.task("judge", 2 * len(pairs)))
    for (s, a, b), outcome in zip(pairs, outcomes, strict=True):
        if outcome not in ("win", "loss"):
            run.drop("judge_tie", s.prompt, a, other=b)
            continue
        chosen, rejected = (a, b) if outcome == "win" else (b, a)
        meta = {"generated": run.provenance("preference", [s.id], temperatures=list(g.preference_temperatures))}
        prompt = _prompt(s.prompt, s.system)
        if g.kto:  # the verdict as two unpaired examples: the chosen one desirable, the rejected one not
            run.kept += [_kto(prompt, chosen, True, meta), _kto(prompt, rejected, False, meta)]
        else:
            run.kept.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "meta": meta})


def _keep_answers(run: _Run, items: list[tuple[list[dict[str, str]], str | None, dict[str, Any]]]) -> None:
    """SFT records of (prompt messages, answer) that have the seeds' structure, pass the judge and duplicate
    nothing."""
    g = run.config.generate
    shape = mt.answer_shape(run.seeds)
    ready = []
    for prompt, answer, provenance in items:
        question = prompt[-1]["content"]
        if answer is None:
            run.drop("not_generated", question)
        elif not mt.fits_shape(answer, shape):
            run.drop("invalid_structure", question, answer, expected_keys=sorted(shape) if shape else None)
        else:
            ready.append((prompt, answer, provenance))
    scores: list[float | None] = [None] * len(ready)
    if g.min_judge_score is not None and ready:
        scores = run.judge.scores([(p[-1]["content"], a) for p, a, _ in ready], run.task("judge", len(ready)))
    duplicates = mt.Duplicates(run.config.clean.near_dedup, [_pair(s.prompt, s.answer) for s in run.seeds])
    for (prompt, answer, provenance), score in zip(ready, scores, strict=True):
        question = prompt[-1]["content"]
        good = g.min_judge_score is None or (score is not None and score >= g.min_judge_score)
        if score is None and g.min_judge_score is not None:
            run.drop("not_judged", question, answer)
        elif not good and not g.kto:
            run.drop("low_judge_score", question, answer, judge_score=score)
        elif reason := duplicates.reason(_pair(question, answer)):
            run.drop(reason, question, answer)
        else:
            duplicates.add(_pair(question, answer))
            meta = {"generated": {**provenance, "judge_score": None if score is None else round(score, 3)}}
            if g.kto:  # judged below min_judge_score: an undesirable example rather than a dropped one
                run.kept.append(_kto(prompt, answer, good, meta))
            else:
                run.kept.append({"messages": [*prompt, {"role": "assistant", "content": answer}], "meta": meta})


def _kto(prompt: list[dict[str, str]], answer: str, label: bool, meta: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt, "completion": answer, "label": label, "meta": meta}


def _prompt(text: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def _pair(prompt: str, answer: str | None) -> str:
    return f"{prompt}\n{answer or ''}"


METHODS = {"self_instruct": _self_instruct, "distil": _distil, "preference": _preference}
