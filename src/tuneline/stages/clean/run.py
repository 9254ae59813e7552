"""The clean stage: canonical records → normalized, redacted, filtered, deduplicated records + audit."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.config.schema import TunelineConfig
from tuneline.dedup import NearDuplicateIndex
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path, write_json_atomic
from tuneline.io.jsonl import BadRecord, JsonlWriter, bad_input, count_lines, dumps, line_chunks
from tuneline.parallel import chunk_mapper, resolve_workers
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS
from tuneline.stages.clean.rules import CleanedChunk, clean_chunk, init_worker

REMOVED_FILE, REPORT_FILE = "removed.jsonl", "report.json"
CHUNK = 1024


class CleanError(RuntimeError):
    """The clean stage cannot run (missing input, unusable tokenizer setting)."""


class CleanRejected(CleanError, OutputRejected):
    """The stage ran but kept nothing: its output is set aside as ``DIR.failed``, the previous one stays."""


@dataclass(frozen=True)
class CleanResult:
    out: Path
    kept: dict[str, int]
    removed: dict[str, int]
    report: dict[str, Any]


def tokenizer_for(config: TunelineConfig) -> str | None:
    tl = config.clean.token_length
    if not tl.enabled:
        return None
    path = tl.tokenizer or config.model.base
    if path.startswith("builtin:"):
        raise CleanError(
            "clean.token_length.enabled needs a real tokenizer: set clean.token_length.tokenizer "
            f"(model.base is {config.model.base!r}, whose tokenizer is only built at training time)"
        )
    return path


def _named_errors(results: Any, path: Path, st: Counter) -> Any:
    """The chunks, with a malformed input line turned into a CleanError naming the file and line."""
    try:
        yield from results
    except BadRecord as exc:
        raise CleanError(bad_input(path, st["input"] + exc.index + 1, exc.detail, "ingest")) from None


def run_clean(config: TunelineConfig, src: str | Path, out: str | Path) -> CleanResult:
    """Clean ``src/{sft,preference,kto}.jsonl`` into ``out``; every removal is written to ``removed.jsonl`` with its rule.

    Deterministic: decisions depend only on input order and config, not on the number of workers.
    """
    src, out = Path(src), Path(out)
    inputs = {k: src / f"{k}.jsonl" for k in KINDS}
    if not any(p.exists() for p in inputs.values()):
        raise CleanError(f"no sft.jsonl, preference.jsonl or kto.jsonl in {src}: run `tuneline ingest` first")
    tok = tokenizer_for(config)
    if config.clean.pii.enabled and config.clean.pii.names:
        import importlib.util

        if importlib.util.find_spec("presidio_analyzer") is None:
            raise CleanError(
                "clean.pii.names needs Presidio: pip install 'tuneline[ner]' (or set clean.pii.names=false)"
            )
    cfg = config.clean
    workers = resolve_workers(cfg.workers)
    keep_examples = cfg.examples_per_rule

    removed_by_rule: Counter = Counter()
    redactions: Counter = Counter()
    examples: dict[str, list[Any]] = defaultdict(list)
    stats: dict[str, Counter] = {k: Counter() for k in KINDS}
    rate = Rate()

    with (
        chunk_mapper(workers, init_worker, (cfg, tok)) as pmap,
        atomic_dir(out, "tuneline clean", [src]) as tmp,
        JsonlWriter(tmp / REMOVED_FILE) as removed,
        stage_progress("clean") as progress,
    ):
        for kind in KINDS:
            path = inputs[kind]
            with JsonlWriter(tmp / f"{kind}.jsonl") as kept:
                if not path.exists():
                    continue
                total = count_lines(path)
                task = progress.add_task(kind, total=total, rate="")
                exact_seen: dict[int, str] = {}
                near_index = NearDuplicateIndex(cfg.near_dedup.threshold, cfg.near_dedup.num_perm)
                chunks = line_chunks(path, CHUNK)
                results = pmap(clean_chunk, chunks)
                st = stats[kind]
                for chunk in _named_errors(results, path, st):
                    st["input"] += len(chunk.ids)
                    st["normalized"] += chunk.normalized
                    st["with_pii"] += len(chunk.pii)
                    for i, (counts, example) in chunk.pii.items():
                        redactions.update(counts)
                        for label in counts:
                            if len(examples[f"pii.{label}"]) < keep_examples:
                                examples[f"pii.{label}"].append({"id": chunk.ids[i], "redacted": example})
                    for i, rid in enumerate(chunk.ids):
                        reason = chunk.removed[i] or _dedup(chunk, i, exact_seen, near_index)
                        if reason is None:
                            kept.write_raw(chunk.lines[i])
                            continue
                        rule, detail = reason
                        removed_by_rule[rule] += 1
                        st["removed"] += 1
                        head = dumps({"rule": rule, "detail": detail, "kind": kind, "id": rid})
                        removed.write_raw(head[:-2] + b',"record":' + chunk.lines[i][:-1] + b"}\n")
                        if len(examples[rule]) < keep_examples:
                            examples[rule].append({"id": rid, "detail": detail})
                    progress.update(
                        task,
                        advance=len(chunk.ids),
                        rate=f"{rate.per_second(sum(s['input'] for s in stats.values())):,.0f} rec/s",
                    )
                st["output"] = kept.count
                log.info(
                    "clean %s: %d in → %d kept, %d removed, %d with PII redacted",
                    kind,
                    st["input"],
                    st["output"],
                    st["removed"],
                    st["with_pii"],
                )
        n_in = sum(s["input"] for s in stats.values())
        report = {
            "stage": "clean",
            "input": {k: stats[k]["input"] for k in KINDS},
            "output": {k: stats[k]["output"] for k in KINDS},
            "removed": dict(sorted(removed_by_rule.items())),
            "redactions": dict(sorted(redactions.items())),
            "records_with_pii": sum(s["with_pii"] for s in stats.values()),
            "normalized": sum(s["normalized"] for s in stats.values()),
            "examples": dict(sorted(examples.items())),
            "rules": cfg.model_dump(),
            "workers": workers,
            "seconds": round(rate.elapsed(), 3),
            "records_per_second": round(rate.per_second(n_in), 1),
        }
        write_json_atomic(tmp / REPORT_FILE, report)
        if n_in and not sum(report["output"].values()):
            raise CleanRejected(
                f"clean kept 0 of {n_in} records (removed: "
                + ", ".join(f"{k}={v}" for k, v in removed_by_rule.most_common())
                + f"); {out} is unchanged, this output is in {failed_path(out)} (see removed.jsonl there)"
            )
    return CleanResult(out, report["output"], report["removed"], report)


def _dedup(chunk: CleanedChunk, i: int, exact_seen: dict[int, str], near: NearDuplicateIndex) -> tuple[str, str] | None:
    """Ordered dedup decisions: the first record of a duplicate group is kept."""
    key, row, rid = chunk.exact[i], chunk.near_rows[i], chunk.ids[i]
    if key:
        first = exact_seen.get(key)
        if first is not None:
            return "exact_dedup", f"same text as {first}"
    if row >= 0:
        assert chunk.sigs is not None and chunk.bands is not None
        hit = near.find(chunk.bands[row], chunk.sigs[row])
        if hit is not None:
            return "near_dedup", f"near duplicate of {hit}"
        near.add(chunk.bands[row], chunk.sigs[row], rid)
    if key:
        exact_seen[key] = rid
    return None
