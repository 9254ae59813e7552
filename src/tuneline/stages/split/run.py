"""The split stage: cleaned records → ``{sft,preference,kto}/{train,val,test}.jsonl`` + leakage audit + report."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from tuneline.clusters import bucket_bits
from tuneline.config.schema import TunelineConfig
from tuneline.dedup import lsh_params
from tuneline.engine import Executor, executor_for
from tuneline.engine.blocks import (
    Block,
    Discard,
    append_file,
    plan_blocks,
    reachable,
    read_array,
    remove_tree,
    write_array,
)
from tuneline.engine.cluster_tasks import KeyedBlock, exact_groups, near_pairs
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path
from tuneline.io.jsonl import JsonlWriter, bad_input
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS, Kind
from tuneline.results import DATA_REPORT, Leakage, SplitReport
from tuneline.stages.split.assign import SPLITS, HashChunks, SplitError, assign, assign_random
from tuneline.stages.split.leakage import (
    DROPPED,
    NUM_PERM,
    SplitKeyed,
    SplitTask,
    SplitWriteTask,
    split_block,
    write_split_block,
)

LEAKAGE_FILE, REPORT_FILE = "leakage.jsonl", DATA_REPORT
SCRATCH = ".blocks"


class SplitRejected(SplitError, OutputRejected):
    """The split ran but must not replace the previous one (leakage with action 'fail'); it is kept beside."""


def split_path(root: str | Path, kind: str, split: str) -> Path:
    """Where a split file lives; later stages use this instead of restating the layout."""
    return Path(root) / kind / f"{split}.jsonl"


def _keys(
    config: TunelineConfig, ex: Executor, kind: Kind, path: str, field: str | None, root: str
) -> tuple[list[SplitKeyed], HashChunks, list[Block]]:
    """One pass of block tasks over ``path``: per block its field values and leakage keys, and the records'
    split hashes as the chunks the block tasks wrote to scratch (read again on demand, never all held)."""
    cfg = config.split
    blocks = plan_blocks([path], config.data.block_records)
    n = sum(b.lines for b in blocks)
    bands = lsh_params(cfg.leakage.threshold, NUM_PERM)[0]
    leak = cfg.leakage if cfg.leakage.check else None
    tasks = [
        SplitTask(b, kind, f"{root}{b.index:06d}", cfg.seed, field, leak, bucket_bits(n), bucket_bits(n * bands))
        for b in blocks
    ]
    results = []
    for res in ex.imap(split_block, tasks):
        if res.error:
            line, _, detail = res.error.partition(": ")
            raise SplitError(bad_input(path, int(line), detail, "clean"))
        results.append(res)
    if sum(r.records for r in results) != n:  # a block's records are its non-blank lines
        raise SplitError(f"{path} has blank lines: it is not as `tuneline clean` wrote it (re-run `tuneline clean`)")
    return results, lambda: (read_array(f"{t.prefix}.h", np.uint64) for t in tasks), blocks


def _assignment(
    config: TunelineConfig, ex: Executor, kind: Kind, path: str, field: str | None, root: str
) -> tuple[np.ndarray, list[KeyedBlock], list[Block]]:
    """Each record's split (an index into ``SPLITS``) in input order, the leakage keys of its blocks, and the
    blocks."""
    cfg = config.split
    results, hashes, blocks = _keys(config, ex, kind, path, field, root)
    keyed = [r.keyed for r in results]
    if cfg.strategy == "random":
        return assign_random(hashes, cfg), keyed, blocks
    keys = [(i, v) for r in results for i, v in zip(r.ids or [], r.values or [], strict=True)]
    missing = sum(1 for _, v in keys if v is None)
    if missing and cfg.strategy in ("stratified", "temporal"):
        raise SplitError(f"split.field {field!r} is missing in {missing} of {len(keys)} {kind} records")
    return np.array(assign(keys, cfg), dtype=np.uint8), keyed, blocks


def _leaks(
    config: TunelineConfig, ex: Executor, keyed: list[KeyedBlock], assignment: np.ndarray, root: str
) -> dict[int, tuple[str, int]]:
    """``{rank: (match, train rank)}`` for val/test records whose prompt is in train, exactly or nearly.

    Each is matched to the first train record (lowest rank) sharing a key with it, as a train-side index
    built in input order would; exact matches are taken first, the near step sees only the rest.
    """
    cfg = config.split.leakage
    train = f"{root}assignment.u8"  # the bucket tasks read which ranks are train (0) from scratch
    write_array(train, assignment)
    leaks: dict[int, tuple[str, int]] = {}
    first, other = exact_groups(ex, keyed, name="px", mark=train)
    for o, f in zip(other.tolist(), first.tolist(), strict=True):
        leaks[o] = ("exact", f)
    a, b = near_pairs(
        ex, keyed, cfg.threshold, NUM_PERM, exclude=np.array(sorted(leaks), dtype=np.int64), mark=train, name="pb"
    )
    order = np.lexsort((a, b))  # per val/test record, its lowest-rank verified train match first
    for t, o in zip(a[order].tolist(), b[order].tolist(), strict=True):
        leaks.setdefault(o, ("near", t))
    return leaks


def run_split(config: TunelineConfig, src: str | Path, out: str | Path, scratch: str | None = None) -> SplitReport:
    """Split each kind of record deterministically and audit prompt leakage from train into val/test.

    Leaked val/test records are reported in ``leakage.jsonl``; with ``leakage.action: remove``
    they are dropped from val/test, with ``fail`` the stage stops and writes nothing.
    """
    cfg = config.split
    src_s, out = reachable(src).rstrip("/"), Path(out)
    inputs = _present_inputs(src_s, src)
    field = cfg.field or ("source" if cfg.strategy == "group" else None)
    rate, counts, leaks = Rate(), {}, _LeakLog(cfg.leakage.action)
    with (
        executor_for(config) as ex,
        atomic_dir(out, "tuneline split", [src] if "://" not in src_s else []) as tmp,
        JsonlWriter(tmp / LEAKAGE_FILE) as leaks.file,
        stage_progress("split") as progress,
    ):
        for kind in KINDS:
            (tmp / kind).mkdir()
            with _SplitFiles(tmp, kind) as files:
                if kind in inputs:
                    root = f"{scratch.rstrip('/') if scratch else reachable(tmp / SCRATCH)}/{kind}/"
                    _split_kind(config, ex, kind, inputs[kind], field, root, files, leaks, progress)
            counts[kind] = dict(files.counts)
            log.info("split %s: %s", kind, ", ".join(f"{s}={n}" for s, n in counts[kind].items()))
        remove_tree(reachable(tmp / SCRATCH))  # each kind's scratch is gone: its empty parent goes too
        report = SplitReport(
            strategy=cfg.strategy, field=field, seed=cfg.seed, ratios=cfg.ratios.model_dump(), counts=counts,
            leakage=leaks.report(cfg.leakage.check), seconds=round(rate.elapsed(), 3),
        )  # fmt: skip
        report.write(tmp / REPORT_FILE)
        if report.leakage.found and cfg.leakage.action == "fail":
            raise SplitRejected(
                f"{report.leakage.found} val/test records share a prompt with train ({dict(leaks.counts)}); "
                "set split.leakage.action to 'remove' or fix the data; "
                f"{out} is unchanged, this split is in {failed_path(out)}"
            )
    if report.leakage.found:
        log.warning("split: %d val/test records leak from train (%s)", report.leakage.found, cfg.leakage.action)
    return report


def _present_inputs(src_s: str, src: str | Path) -> dict[str, str]:
    fs = fsspec.core.url_to_fs(src_s)[0]
    inputs = {k: f"{src_s}/{k}.jsonl" for k in KINDS}
    present = {k: p for k, p in inputs.items() if fs.exists(fsspec.core.url_to_fs(p)[1])}
    if not present:
        raise SplitError(f"no sft.jsonl, preference.jsonl or kto.jsonl in {src}: run `tuneline clean` first")
    return present


@dataclass
class _LeakLog:
    """Leaked records as they are found: each written to ``leakage.jsonl``, counted, the first five kept."""

    action: str
    file: Any = None
    counts: Counter = dataclasses.field(default_factory=Counter)
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def add(self, entry: dict[str, Any]) -> None:
        self.counts[f"{entry['kind']}.{entry['split']}.{entry['match']}"] += 1
        self.file.write(entry)
        if len(self.examples) < 5:
            self.examples.append(entry)

    def report(self, checked: bool) -> Leakage:
        by = dict(sorted(self.counts.items()))
        return Leakage(
            checked=checked, action=self.action, found=sum(by.values()), by_kind_split_match=by, examples=self.examples
        )


class _SplitFiles:
    """One kind's open split files, and how many records each got."""

    def __init__(self, root: Path, kind: str) -> None:
        self.handles = {s: open(split_path(root, kind, s), "wb") for s in SPLITS}  # noqa: SIM115 - closed below
        self.counts = dict.fromkeys(SPLITS, 0)

    def __enter__(self) -> _SplitFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        for fh in self.handles.values():
            fh.close()


def _split_kind(
    config: TunelineConfig, ex: Executor, kind: Kind, path: str, field: str | None, root: str,
    files: _SplitFiles, leak_log: _LeakLog, progress: Any,
) -> None:  # fmt: skip
    """Assign one kind's records to splits, find their leaks, and write them (dropping leaks under ``remove``)."""
    try:
        assignment, keyed, blocks = _assignment(config, ex, kind, path, field, root)
        leaks = _leaks(config, ex, keyed, assignment, root) if config.split.leakage.check else {}
        del keyed
        ids = _write(
            ex, kind, blocks, assignment, leaks, config.split.leakage.action == "remove", root, files, progress
        )
    finally:
        remove_tree(root)
    for ordinal, (match, train_rank) in sorted(leaks.items()):
        split = SPLITS[assignment[ordinal]]
        leak_log.add(
            {"kind": kind, "split": split, "id": ids[ordinal], "match": match, "train_id": ids[train_rank],
             "action": leak_log.action}
        )  # fmt: skip


def _write(
    ex: Executor, kind: Kind, blocks: list[Block], assignment: np.ndarray, leaks: dict[int, tuple[str, int]],
    drop: bool, root: str, files: _SplitFiles, progress: Any,
) -> dict[int, str]:  # fmt: skip
    """Block tasks write each block's records per split to scratch; the driver appends them in block order
    (by the kernel: :func:`~tuneline.engine.blocks.append_file`). The ids of the leaks and their train
    matches, by rank."""
    splits = assignment.astype(np.uint8)
    if drop and leaks:
        splits[np.fromiter(leaks, dtype=np.int64, count=len(leaks))] = DROPPED
    wanted = np.array(sorted(set(leaks) | {t for _, t in leaks.values()}), dtype=np.int64)
    cuts = np.searchsorted(wanted, [b.first_rank for b in blocks] + [len(splits)])
    tasks = (
        SplitWriteTask(b, f"{root}w{b.index:06d}", splits[b.first_rank : b.first_rank + b.lines],
                       wanted[cuts[i] : cuts[i + 1]] - b.first_rank)
        for i, b in enumerate(blocks)
    )  # fmt: skip
    task = progress.add_task(kind, total=len(splits), rate="")
    ids: dict[int, str] = {}
    with Discard() as done:
        for i, found in enumerate(ex.imap(write_split_block, tasks)):
            b = blocks[i]
            for s in SPLITS:
                part = f"{root}w{b.index:06d}.{s}"
                append_file(files.handles[s], part)
                done.drop(part)
            ids.update(zip(wanted[cuts[i] : cuts[i + 1]].tolist(), found, strict=True))
            progress.update(task, advance=b.lines)
    for s, count in zip(SPLITS, np.bincount(splits, minlength=DROPPED + 1)[: len(SPLITS)].tolist(), strict=True):
        files.counts[s] = count
    return ids
