"""The split stage: cleaned records → ``{sft,preference,kto}/{train,val,test}.jsonl`` + leakage audit + report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.config.schema import TunelineConfig
from tuneline.dedup import NearDuplicateIndex
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path, write_json_atomic
from tuneline.io.jsonl import BadRecord, JsonlWriter, bad_input, line_chunks, parse_canonical
from tuneline.parallel import chunk_mapper, resolve_workers
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS
from tuneline.stages.split.assign import SPLITS, SplitError, assign, field_value
from tuneline.stages.split.leakage import NUM_PERM, init_worker, prompt_keys_chunk

LEAKAGE_FILE, REPORT_FILE = "leakage.jsonl", "report.json"
CHUNK = 1024


class SplitRejected(SplitError, OutputRejected):
    """The split ran but must not replace the previous one (leakage with action 'fail'); it is kept beside."""


@dataclass(frozen=True)
class SplitResult:
    out: Path
    counts: dict[str, dict[str, int]]
    leaked: int
    report: dict[str, Any]


def split_path(root: str | Path, kind: str, split: str) -> Path:
    """Where a split file lives; later stages use this instead of restating the layout."""
    return Path(root) / kind / f"{split}.jsonl"


def _nl(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def _read_keys(path: Path, field: str | None) -> list[tuple[str, Any]]:
    """(id, field value) per record. Stage outputs start with ``{"id":"...`` (orjson keeps key order),
    so without a field the id is sliced out instead of parsing the whole record."""
    keys = []
    prefix = b'{"id":"'
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            if field is None and line.startswith(prefix):
                end = line.find(b'"', len(prefix))
                keys.append((line[len(prefix) : end].decode(), None))
                continue
            try:
                rec = parse_canonical(line, len(keys))
            except BadRecord as exc:
                raise SplitError(bad_input(path, exc.index + 1, exc.detail, "clean")) from None
            keys.append((rec["id"], field_value(rec, field) if field else None))
    return keys


def _write_train_and_audit(
    path: Path,
    keys: list[tuple[str, Any]],
    assignment: list[int],
    writers: dict[str, JsonlWriter],
    pmap: Any,
    threshold: float,
) -> dict[int, tuple[str, str]]:
    """Write the train split; with ``pmap`` also find val/test records whose prompt occurs in train.

    Returns ``{ordinal: (match, train_id)}`` for leaked val/test records. Train prompts are
    indexed as they stream by; only val/test prompt keys (a small share) are held in memory.
    """
    exact: dict[int, str] = {}
    near = NearDuplicateIndex(threshold, NUM_PERM)
    held: dict[int, Any] = {}
    chunks = line_chunks(path, CHUNK)
    keyed = pmap(prompt_keys_chunk, line_chunks(path, CHUNK)) if pmap is not None else None
    ordinal = 0
    for lines in chunks:
        try:
            pk = next(keyed) if keyed is not None else None
        except BadRecord as exc:
            raise SplitError(bad_input(path, ordinal + exc.index + 1, exc.detail, "clean")) from None
        for j, line in enumerate(lines):
            if assignment[ordinal] == 0:
                writers["train"].write_raw(_nl(line))
                if pk is not None:
                    exact.setdefault(pk.exact[j], keys[ordinal][0])
                    near.add(pk.bands[j], pk.sigs[j], keys[ordinal][0])
            elif pk is not None:
                held[ordinal] = (pk.exact[j], pk.bands[j], pk.sigs[j].copy())
            ordinal += 1
    leaks: dict[int, tuple[str, str]] = {}
    for ordinal, (exact_key, bands, sig) in held.items():
        if exact_key in exact:
            leaks[ordinal] = ("exact", exact[exact_key])
        else:
            hit = near.find(bands, sig)
            if hit is not None:
                leaks[ordinal] = ("near", hit)
    return leaks


def run_split(config: TunelineConfig, src: str | Path, out: str | Path) -> SplitResult:
    """Split each kind of record deterministically and audit prompt leakage from train into val/test.

    Leaked val/test records are reported in ``leakage.jsonl``; with ``leakage.action: remove``
    they are dropped from val/test, with ``fail`` the stage stops and writes nothing.
    """
    cfg = config.split
    src, out = Path(src), Path(out)
    inputs = {k: src / f"{k}.jsonl" for k in KINDS}
    if not any(p.exists() for p in inputs.values()):
        raise SplitError(f"no sft.jsonl, preference.jsonl or kto.jsonl in {src}: run `tuneline clean` first")
    field = cfg.field or ("source" if cfg.strategy == "group" else None)
    rate = Rate()
    counts: dict[str, dict[str, int]] = {}
    leak_counts: Counter = Counter()
    examples: list[dict[str, Any]] = []
    workers = resolve_workers(config.clean.workers)

    with (
        chunk_mapper(workers, init_worker, (cfg.leakage,)) as pmap,
        atomic_dir(out, "tuneline split", [src]) as tmp,
        JsonlWriter(tmp / LEAKAGE_FILE) as leakage,
        stage_progress("split") as progress,
    ):
        for kind in KINDS:
            path = inputs[kind]
            (tmp / kind).mkdir()
            writers = {s: JsonlWriter(split_path(tmp, kind, s)) for s in SPLITS}
            try:
                if not path.exists():
                    continue
                keys = _read_keys(path, field)
                missing = sum(1 for _, v in keys if v is None) if field else 0
                if missing and cfg.strategy in ("stratified", "temporal"):
                    raise SplitError(f"split.field {field!r} is missing in {missing} of {len(keys)} {kind} records")
                assignment = assign(keys, cfg)
                task = progress.add_task(kind, total=len(keys), rate="")
                leaks = _write_train_and_audit(
                    path, keys, assignment, writers, pmap if cfg.leakage.check else None, cfg.leakage.threshold
                )
                for ordinal, (match, train_id) in sorted(leaks.items()):
                    split = SPLITS[assignment[ordinal]]
                    leak_counts[f"{kind}.{split}.{match}"] += 1
                    entry = {
                        "kind": kind,
                        "split": split,
                        "id": keys[ordinal][0],
                        "match": match,
                        "train_id": train_id,
                        "action": cfg.leakage.action,
                    }
                    leakage.write(entry)
                    if len(examples) < 5:
                        examples.append(entry)
                drop = set(leaks) if cfg.leakage.action == "remove" else set()
                with open(path, "rb") as fh:
                    ordinal = 0
                    for line in fh:
                        if not line.strip():
                            continue
                        if assignment[ordinal] and ordinal not in drop:
                            writers[SPLITS[assignment[ordinal]]].write_raw(_nl(line))
                        ordinal += 1
                        if ordinal % CHUNK == 0:
                            progress.update(task, completed=ordinal)
                progress.update(task, completed=len(keys))
            finally:
                for w in writers.values():
                    w.close()
            counts[kind] = {s: writers[s].count for s in SPLITS}
            log.info("split %s: %s", kind, ", ".join(f"{s}={n}" for s, n in counts[kind].items()))

        leaked = sum(leak_counts.values())
        report = {
            "stage": "split",
            "strategy": cfg.strategy,
            "field": field,
            "seed": cfg.seed,
            "ratios": cfg.ratios.model_dump(),
            "counts": counts,
            "leakage": {
                "checked": cfg.leakage.check,
                "action": cfg.leakage.action,
                "found": leaked,
                "by_kind_split_match": dict(sorted(leak_counts.items())),
                "examples": examples,
            },
            "seconds": round(rate.elapsed(), 3),
        }
        write_json_atomic(tmp / REPORT_FILE, report)
        if leaked and cfg.leakage.action == "fail":
            raise SplitRejected(
                f"{leaked} val/test records share a prompt with train ({dict(leak_counts)}); "
                "set split.leakage.action to 'remove' or fix the data; "
                f"{out} is unchanged, this split is in {failed_path(out)}"
            )
    if leaked:
        log.warning("split: %d val/test records leak from train (%s)", leaked, cfg.leakage.action)
    return SplitResult(out, counts, leaked, report)
