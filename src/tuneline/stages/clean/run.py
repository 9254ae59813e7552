"""The clean stage: canonical records → normalized, redacted, filtered, deduplicated records + audit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
import numpy as np

from tuneline.clusters import bucket_bits, components
from tuneline.config.schema import CleanConfig, TunelineConfig
from tuneline.dedup import lsh_params
from tuneline.engine import Executor, executor_for, release_freed_memory
from tuneline.engine.blocks import Block, Discard, append_file, plan_blocks, reachable, remove_tree
from tuneline.engine.cluster_tasks import KeyedBlock, by_block, exact_groups, near_pairs
from tuneline.errors import TunelineError
from tuneline.io.atomic import OutputRejected, atomic_dir, failed_path
from tuneline.io.jsonl import bad_input
from tuneline.progress import Rate, log, stage_progress
from tuneline.records import KINDS
from tuneline.results import DATA_REPORT, CleanReport
from tuneline.stages.clean.blocks import (
    BlockCleaned,
    BlockWritten,
    CleanBlockTask,
    IdsTask,
    WriteTask,
    clean_block,
    record_ids,
    write_block,
    write_decisions,
)

REMOVED_FILE, REPORT_FILE = "removed.jsonl", DATA_REPORT
SCRATCH = ".blocks"


class CleanError(TunelineError, RuntimeError):
    """The clean stage cannot run (missing input, unusable tokenizer setting)."""


class CleanRejected(CleanError, OutputRejected):
    """The stage ran but kept nothing: its output is set aside as ``DIR.failed``, the previous one stays."""


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


def run_clean(config: TunelineConfig, src: str | Path, out: str | Path, scratch: str | None = None) -> CleanReport:
    """Clean ``src/{sft,preference,kto}.jsonl`` into ``out``; every removal is written to ``removed.jsonl`` with its rule.

    Deterministic: a duplicate cluster keeps its record of lowest input position (:mod:`tuneline.clusters`),
    so decisions depend only on the input and the config, not on the number of workers or ``data.engine``.
    ``src`` may be a URI (a Ray cluster's workers read it); ``scratch`` (default: inside the output being
    written) is where block tasks write, and must be reachable by every worker.
    """
    src_s, out = reachable(src).rstrip("/"), Path(out)
    present = _present_inputs(src_s, src)
    tok = tokenizer_for(config)
    _check_ner_installed(config)
    tally = _Tally(config.clean.examples_per_rule)
    with (
        executor_for(config) as ex,
        atomic_dir(out, "tuneline clean", [src] if "://" not in src_s else []) as tmp,
        stage_progress("clean") as progress,
    ):
        root = (scratch.rstrip("/") if scratch else reachable(tmp / SCRATCH)) + "/"
        try:
            with open(tmp / REMOVED_FILE, "wb") as removed_fh:
                for kind in KINDS:
                    with open(tmp / f"{kind}.jsonl", "wb") as kept_fh:
                        if kind not in present:
                            continue
                        blocks = plan_blocks([present[kind]], config.data.block_records)
                        task = progress.add_task(kind, total=sum(b.lines for b in blocks), rate="")
                        args = (config, ex, kind, present[kind], blocks, root, tok, progress, task, tally.rate)
                        tally.add(kind, _clean_kind(*args, outputs=(kept_fh, removed_fh)))
        finally:
            remove_tree(root)
        report = tally.report(config, ex)
        report.write(tmp / REPORT_FILE)
        _refuse_empty(report, out)
    return report


def _present_inputs(src_s: str, src: str | Path) -> dict[str, str]:
    fs, _ = fsspec.core.url_to_fs(src_s)
    inputs = {k: f"{src_s}/{k}.jsonl" for k in KINDS}
    present = {k: p for k, p in inputs.items() if fs.exists(fsspec.core.url_to_fs(p)[1])}
    if not present:
        raise CleanError(f"no sft.jsonl, preference.jsonl or kto.jsonl in {src}: run `tuneline ingest` first")
    return present


def _check_ner_installed(config: TunelineConfig) -> None:
    if config.clean.pii.enabled and config.clean.pii.names:
        import importlib.util

        if importlib.util.find_spec("presidio_analyzer") is None:
            raise CleanError(
                "clean.pii.names needs Presidio: pip install 'tuneline[ner]' (or set clean.pii.names=false)"
            )


def _refuse_empty(report: CleanReport, out: Path) -> None:
    n_in = sum(report.input.values())
    if n_in and not sum(report.output.values()):
        removed = sorted(report.removed.items(), key=lambda kv: -kv[1])
        raise CleanRejected(
            f"clean kept 0 of {n_in} records (removed: "
            + ", ".join(f"{k}={v}" for k, v in removed)
            + f"); {out} is unchanged, this output is in {failed_path(out)} (see removed.jsonl there)"
        )


@dataclass
class _Tally:
    """Counts per kind, removals per rule, redactions per PII kind, and the first examples of each rule."""

    examples_per_rule: int
    stats: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in KINDS})
    removed_by_rule: Counter = field(default_factory=Counter)
    redactions: Counter = field(default_factory=Counter)
    examples: dict[str, list[Any]] = field(default_factory=dict)
    rate: Rate = field(default_factory=Rate)

    def add(self, kind: str, written: _KindWritten) -> None:
        st, keep = self.stats[kind], self.examples_per_rule
        for cleaned in written.cleaned:
            st["input"] += cleaned.records
            st["normalized"] += cleaned.normalized
            st["with_pii"] += cleaned.with_pii
            self.redactions.update(cleaned.redactions)
            self.removed_by_rule.update(cleaned.filtered)
            _merge_examples(self.examples, cleaned.pii_examples, keep)
            _merge_examples(self.examples, cleaned.filter_examples, keep)
        for result in written.results:
            self.removed_by_rule.update(result.removed)
            _merge_examples(self.examples, result.examples, keep)
        st["output"] = sum(r.kept for r in written.results)
        st["removed"] = st["input"] - st["output"]
        log.info(
            "clean %s: %d in → %d kept, %d removed, %d with PII redacted",
            kind, st["input"], st["output"], st["removed"], st["with_pii"],
        )  # fmt: skip

    def report(self, config: TunelineConfig, ex: Executor) -> CleanReport:
        n_in = sum(s["input"] for s in self.stats.values())
        return CleanReport(
            input={k: self.stats[k]["input"] for k in KINDS},
            output={k: self.stats[k]["output"] for k in KINDS},
            removed=dict(sorted(self.removed_by_rule.items())),
            redactions=dict(sorted(self.redactions.items())),
            records_with_pii=sum(s["with_pii"] for s in self.stats.values()),
            normalized=sum(s["normalized"] for s in self.stats.values()),
            examples=dict(sorted(self.examples.items())),
            rules=config.clean.model_dump(),
            engine=ex.name,
            workers=ex.workers,
            seconds=round(self.rate.elapsed(), 3),
            records_per_second=round(self.rate.per_second(n_in), 1),
        )


@dataclass
class _KindWritten:
    cleaned: list[BlockCleaned]
    results: list[BlockWritten]


def _clean_kind(
    config: TunelineConfig,
    ex: Executor,
    kind: str,
    path: str,
    blocks: list[Block],
    root: str,
    tok: str | None,
    progress: Any,
    task: Any,
    rate: Rate,
    outputs: tuple[BinaryIO, BinaryIO],
) -> _KindWritten:
    """The four dedup steps of :mod:`tuneline.clusters` over one kind's blocks, then the write of each block,
    appended to ``outputs`` (kept records, removed records) in block order."""
    cfg = config.clean
    nd = cfg.near_dedup
    total = sum(b.lines for b in blocks)
    bands = lsh_params(nd.threshold, nd.num_perm)[0] if nd.enabled else 1
    prefixes = [f"{root}{kind}/{b.index:06d}" for b in blocks]
    tasks = [
        CleanBlockTask(b, kind, p, cfg, tok, bucket_bits(total), bucket_bits(total * bands))
        for b, p in zip(blocks, prefixes, strict=True)
    ]
    cleaned: list[BlockCleaned] = []
    done = 0
    for result in ex.imap(clean_block, tasks):
        blk = blocks[len(cleaned)]
        if result.error:
            line, _, detail = result.error.partition(": ")
            raise CleanError(bad_input(path, int(line), detail, "ingest"))
        cleaned.append(result)
        done += blk.lines
        progress.update(task, advance=blk.lines, rate=f"{rate.per_second(done):,.0f} rec/s")
    keyed = [c.keyed for c in cleaned]
    removed = _dedup_decisions(ex, keyed, cfg)
    release_freed_memory()  # the steps' pairs are gone; only the removals' arrays stay
    first_ids = _first_ids(ex, blocks, prefixes, keyed, removed.first)
    for bi, sel in _per_block(removed.rank, keyed):
        write_decisions(prefixes[bi], *removed.block(sel), first_ids.block(sel))
    del removed, first_ids
    release_freed_memory()  # the removals are in scratch: the driver writes the blocks holding none of them
    writes = (WriteTask(b, p, kind, cfg.examples_per_rule) for b, p in zip(blocks, prefixes, strict=True))
    kept_fh, removed_fh = outputs
    results = []
    with Discard() as done:
        for bi, result in enumerate(ex.imap(write_block, writes)):  # every block, in order
            # appended as each block's write returns: its spans need not be kept, and the copy overlaps the writes
            kept_part, removed_part = f"{prefixes[bi]}.jsonl", f"{prefixes[bi]}.removed"
            append_file(kept_fh, kept_part, result.kept_spans)
            append_file(removed_fh, removed_part)
            done.drop(kept_part)
            done.drop(removed_part)
            result.kept_spans = result.kept_spans[:0]
            results.append(result)
    return _KindWritten(cleaned, results)


@dataclass(frozen=True)
class _Removals:
    """The dedup removals of one kind, as arrays sorted by rank: what the driver remembers per record."""

    rank: np.ndarray  # int64
    rule: np.ndarray  # uint8, an index into DEDUP_RULES
    first: np.ndarray  # int64: the rank of the record it duplicates (the one kept)

    def block(self, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rank[sel], self.rule[sel]


@dataclass(frozen=True)
class _Ids:
    """Record ids of some ranks, packed: sorted ranks, the ids' UTF-8 bytes end to end and where each starts."""

    ranks: np.ndarray
    blob: bytes
    starts: np.ndarray  # len(ranks) + 1 offsets into blob
    of: np.ndarray  # per removal, the index into ``ranks`` of its first record

    def block(self, sel: np.ndarray) -> list[str]:
        """The first record's id of each removal ``sel`` selects (one block's: bounded by the block size)."""
        at = self.of[sel].tolist()
        return [self.blob[self.starts[i] : self.starts[i + 1]].decode() for i in at]


def _dedup_decisions(ex: Executor, keyed: list[KeyedBlock], cfg: CleanConfig) -> _Removals:
    """Exact duplicates first; the near step sees only what they left. Arrays throughout: no Python object
    per duplicate in the driver, whatever the corpus size."""
    empty = np.zeros(0, np.int64)
    exact_first, exact_dup = exact_groups(ex, keyed) if cfg.exact_dedup.enabled else (empty, empty)
    near_dup, near_first = empty, empty
    if cfg.near_dedup.enabled:
        nd = cfg.near_dedup
        a, b = near_pairs(ex, keyed, nd.threshold, nd.num_perm, exclude=np.unique(exact_dup))
        near_dup, near_first = components(a, b)
    rank = np.concatenate([exact_dup, near_dup]).astype(np.int64)
    first = np.concatenate([exact_first, near_first]).astype(np.int64)
    rule = np.concatenate([np.zeros(len(exact_dup), np.uint8), np.ones(len(near_dup), np.uint8)])
    order = np.argsort(rank, kind="stable")
    rank, first, rule = rank[order], first[order], rule[order]
    last = np.ones(len(rank), dtype=bool)  # a rank decided twice keeps its later (near) decision
    last[:-1] = rank[1:] != rank[:-1]
    return _Removals(rank[last], rule[last], first[last])


def _first_ids(
    ex: Executor, blocks: list[Block], prefixes: list[str], keyed: list[KeyedBlock], first: np.ndarray
) -> _Ids:
    """The ids of the records the removals keep instead (their details name them), read by block tasks."""
    wanted = np.unique(first)
    tasks = [IdsTask(blocks[bi], prefixes[bi], wanted[sel]) for bi, sel in by_block(wanted, keyed)]
    ranks, blobs, lengths = [], [], []
    for found in ex.imap(record_ids, tasks):
        ranks.append(found.ranks)
        blobs.append(found.blob)
        lengths.append(found.lengths)
    starts = np.zeros(len(wanted) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=starts[1:])
    got = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    assert np.array_equal(got, wanted), "record_ids answered other ranks than asked"
    return _Ids(wanted, b"".join(blobs), starts, np.searchsorted(wanted, first))


def _per_block(ranks: np.ndarray, keyed: list[KeyedBlock]) -> Iterator[tuple[int, np.ndarray]]:
    """(block index, indices into ``ranks``) for every block, those without removals too (all are written)."""
    found = dict(by_block(ranks, keyed))
    for bi in range(len(keyed)):
        yield bi, found.get(bi, np.zeros(0, np.int64))


def _merge_examples(into: dict[str, list[Any]], found: dict[str, list[Any]], keep: int) -> None:
    for rule, shown in found.items():
        have = into.setdefault(rule, [])
        have.extend(shown[: max(0, keep - len(have))])
