"""The block tasks of the clean stage: clean a block and write its dedup keys, then write its decisions.

:func:`clean_block` runs the per-record rules (:class:`~tuneline.stages.clean.rules.RecordCleaner`) over one
block and writes to scratch: the cleaned lines, the records a rule removed, the exact keys and LSH band keys
as bucketed ``(key, rank)`` rows, and the MinHash signatures. :func:`write_block` later reads the block's
cleaned lines again and splits them into kept and removed by the decisions the driver took over all blocks.
Both are pure functions of their task: re-running one (a Ray retry) rewrites the same files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from tuneline.config.schema import CleanConfig
from tuneline.engine.blocks import Block, line_offsets, read_bytes, write_bytes
from tuneline.engine.cluster_tasks import KeyedBlock, write_keys, write_signatures
from tuneline.io.jsonl import BadRecord, dumps, line_id
from tuneline.records import Kind
from tuneline.stages.clean.rules import cleaner_for
from tuneline.textscan import runs

CHUNK = 1024


@dataclass(frozen=True, slots=True)
class CleanBlockTask:
    block: Block
    kind: Kind  # of every record in the block (from the file it is in)
    prefix: str  # scratch prefix of this block's files
    config: CleanConfig
    tokenizer: str | None
    exact_bits: int
    band_bits: int


@dataclass(slots=True)
class BlockCleaned:
    """What one block task found; everything but the keys the driver merges in block order."""

    keyed: KeyedBlock
    records: int = 0
    normalized: int = 0
    with_pii: int = 0
    redactions: Counter = field(default_factory=Counter)
    pii_examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    filtered: Counter = field(default_factory=Counter)
    filter_examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    error: str | None = None  # "line N: what is wrong" for a malformed input line


def clean_block(task: CleanBlockTask) -> BlockCleaned:
    """Clean one block in chunks; write its kept lines, its filter decisions and its dedup keys to scratch."""
    blk, cfg = task.block, task.config
    cleaner = cleaner_for(cfg, task.tokenizer)
    out = BlockCleaned(KeyedBlock(task.prefix, blk.first_rank, blk.first_rank + blk.lines, {}, 0))
    numbered = [(lineno, line) for lineno, line in blk.read() if line and not line.isspace()]
    lines = [line for _, line in numbered]
    linenos = np.array([lineno for lineno, _ in numbered], dtype=np.int64)
    ranks = linenos + (blk.first_rank - blk.first_line)  # each line's rank
    acc = _BlockKeys()
    for start in range(0, len(lines), CHUNK):
        try:
            chunk = cleaner.clean_many(lines[start : start + CHUNK], task.kind)
        except BadRecord as exc:
            out.error = f"{linenos[start + exc.index]}: {exc.detail}"
            return out
        _count_pii(out, chunk, cfg.examples_per_rule)
        acc.add(out, chunk, start, ranks[start : start + len(chunk.removed)], cfg.examples_per_rule)
    out.records = len(lines)
    out.keyed = acc.write(task, cfg.near_dedup.num_perm)
    return out


def _count_pii(out: BlockCleaned, chunk: Any, keep: int) -> None:
    out.normalized += chunk.normalized
    out.with_pii += len(chunk.pii)
    for i, (counts, example) in sorted(chunk.pii.items()):  # record order: the first examples shown
        out.redactions.update(counts)
        for label in counts:
            shown = out.pii_examples.setdefault(f"pii.{label}", [])
            if len(shown) < keep:
                shown.append({"id": chunk.ids[i], "redacted": example})


@dataclass
class _BlockKeys:
    """What a block's chunks leave for the dedup steps: kept lines, filter decisions, exact and near keys (numpy
    arrays per chunk, concatenated once per block)."""

    cleaned: list[bytes] = field(default_factory=list)
    filtered: list[tuple[int, str, str]] = field(default_factory=list)  # (position in block, rule, detail)
    ex_keys: list[np.ndarray] = field(default_factory=list)
    ex_ranks: list[np.ndarray] = field(default_factory=list)
    near_ranks: list[np.ndarray] = field(default_factory=list)
    sigs: list[np.ndarray] = field(default_factory=list)
    bands: list[np.ndarray] = field(default_factory=list)

    def add(self, out: BlockCleaned, chunk: Any, start: int, ranks: np.ndarray, keep: int) -> None:
        for i, removed in enumerate(chunk.removed):
            if removed is not None:
                rule, detail = removed
                self.filtered.append((start + i, rule, detail))
                out.filtered[rule] += 1
                shown = out.filter_examples.setdefault(rule, [])
                if len(shown) < keep:
                    shown.append({"id": chunk.ids[i], "detail": detail})
        self.cleaned.extend(chunk.lines)
        exact = np.array(chunk.exact, dtype=np.uint64)  # 0: removed, or exact dedup off
        self.ex_keys.append(exact[exact != 0])
        self.ex_ranks.append(ranks[exact != 0])
        rows = np.array(chunk.near_rows, dtype=np.int64)  # -1: removed, or near dedup off
        if (rows >= 0).any():
            assert chunk.sigs is not None and chunk.bands is not None
            self.near_ranks.append(ranks[rows >= 0])
            self.sigs.append(chunk.sigs[rows[rows >= 0]])
            self.bands.append(chunk.bands[rows[rows >= 0]])

    def write(self, task: CleanBlockTask, num_perm: int) -> KeyedBlock:
        blk, prefix = task.block, task.prefix
        write_bytes(f"{prefix}.jsonl", b"".join(self.cleaned))
        write_bytes(f"{prefix}.filtered", orjson.dumps(self.filtered))
        keys, ex_ranks = _joined(self.ex_keys, np.uint64), _joined(self.ex_ranks, np.int64)
        offsets = {"ex": write_keys(prefix, "ex", keys, ex_ranks, task.exact_bits)}
        ranks = _joined(self.near_ranks, np.int64)
        sig = np.concatenate(self.sigs) if self.sigs else np.zeros((0, num_perm), dtype=np.uint32)
        band = np.concatenate(self.bands) if self.bands else np.zeros((0, 1), dtype=np.uint64)
        band_ranks = np.repeat(ranks, band.shape[1]) if len(ranks) else ranks
        offsets["bd"] = write_keys(prefix, "bd", band.reshape(-1), band_ranks, task.band_bits)
        signed = write_signatures(prefix, ranks, sig)
        return KeyedBlock(prefix, blk.first_rank, blk.first_rank + blk.lines, offsets, signed)


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


@dataclass(frozen=True, slots=True)
class IdsTask:
    block: Block
    prefix: str
    ranks: np.ndarray  # sorted ranks whose record ids are wanted


def _index_of(block: Block, lines: int, ranks: list[int]) -> list[int]:
    """Index among the block's ``lines`` cleaned lines of each rank (they differ from rank order only where the
    input had blank lines, which ingest never writes)."""
    if lines == block.lines:
        return [r - block.first_rank for r in ranks]
    index: dict[int, int] = {}
    for lineno, line in block.read():
        if line.strip():
            index[block.first_rank + lineno - block.first_line] = len(index)
    return [index[r] for r in ranks]


@dataclass(frozen=True, slots=True)
class FoundIds:
    """The ids of the asked ranks, packed (no Python object per record crosses to the driver)."""

    ranks: np.ndarray
    blob: bytes  # the ids' UTF-8 bytes end to end
    lengths: np.ndarray  # bytes of each


def record_ids(task: IdsTask) -> FoundIds:
    """The record ids of the asked ranks of one block."""
    data = read_bytes(f"{task.prefix}.jsonl")
    offsets = line_offsets(data)
    ranks = [int(r) for r in task.ranks]
    ids = [line_id(data[offsets[i] : offsets[i + 1]]).encode() for i in _index_of(task.block, len(offsets) - 1, ranks)]
    return FoundIds(task.ranks, b"".join(ids), np.array([len(i) for i in ids], dtype=np.int64))


#: A dedup removal's rule (``WriteTask.rules`` holds indices into this) and the detail it writes.
DEDUP_RULES = ("exact_dedup", "near_dedup")
_DETAILS = ("same text as {}", "near duplicate of {}")


def write_decisions(prefix: str, ranks: np.ndarray, rules: np.ndarray, first_ids: list[str]) -> None:
    """The dedup removals of one block (sorted ranks, their rules as indices into ``DEDUP_RULES``, the id of the
    record each duplicates) to scratch, ``<prefix>.decided``: the driver holds none while the blocks are written."""
    write_bytes(f"{prefix}.decided", orjson.dumps([ranks.tolist(), rules.tolist(), first_ids]))


@dataclass(frozen=True, slots=True)
class WriteTask:
    block: Block
    prefix: str
    kind: str
    examples_per_rule: int

    def decisions(self, lines: int) -> dict[int, tuple[str, str]]:
        """Position in the block → (rule, detail), for the block's dedup removals (:func:`write_decisions`)."""
        ranks, rules, first_ids = orjson.loads(read_bytes(f"{self.prefix}.decided"))
        positions = _index_of(self.block, lines, ranks)
        return {
            pos: (DEDUP_RULES[r], _DETAILS[r].format(fid))
            for pos, r, fid in zip(positions, rules, first_ids, strict=True)
        }


@dataclass(slots=True)
class BlockWritten:
    kept: int = 0
    kept_spans: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # in <prefix>.jsonl
    removed: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def write_block(task: WriteTask) -> BlockWritten:
    """``<prefix>.removed``: the block's removed records, in input order, each with its rule; and where its kept
    records lie in ``<prefix>.jsonl`` (byte spans of runs of kept lines), which the driver appends to the
    output as they are. Python touches only the removed lines."""
    data = read_bytes(f"{task.prefix}.jsonl")
    offsets = line_offsets(data)
    lines = len(offsets) - 1
    filtered = {pos: (rule, detail) for pos, rule, detail in orjson.loads(read_bytes(f"{task.prefix}.filtered"))}
    by_pos = task.decisions(lines)
    out = BlockWritten()
    gone = np.zeros(lines, dtype=bool)
    gone[sorted(filtered.keys() | by_pos.keys())] = True
    removed = []
    for pos in np.flatnonzero(gone).tolist():
        rule, detail = filtered.get(pos) or by_pos[pos]
        line = data[offsets[pos] : offsets[pos + 1]]
        rid = line_id(line)
        head = dumps({"rule": rule, "detail": detail, "kind": task.kind, "id": rid})
        removed.append(head[:-2] + b',"record":' + line.rstrip(b"\n") + b"}\n")
        if pos in by_pos:  # rule removals were counted by the clean task
            out.removed[rule] += 1
            shown = out.examples.setdefault(rule, [])
            if len(shown) < task.examples_per_rule:
                shown.append({"id": rid, "detail": detail})
    out.kept = lines - len(removed)
    out.kept_spans = _runs(~gone, offsets)
    write_bytes(f"{task.prefix}.removed", b"".join(removed))
    return out


def _runs(keep: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Byte spans ``[start, end)`` of the maximal runs of lines ``keep`` marks."""
    starts, ends = runs(keep)
    return np.stack((offsets[starts], offsets[ends]), axis=1)
