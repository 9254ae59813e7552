"""Prompt-level leakage between train and val/test: exact and MinHash near duplicates, staged over blocks.

:func:`split_block` is the block task of the split stage: it hashes each record's id (the split's order) and
writes to scratch those hashes, its prompt keys (an exact hash, LSH band keys) as bucketed ``(key, rank)`` rows,
and its signatures, as the clean stage's dedup does. The split driver then pairs every val/test record with the
first train record (lowest rank) sharing a key (:func:`tuneline.engine.cluster_tasks.bucket_pairs` in reference
mode) and verifies near pairs by their signatures; memory stays one bucket at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from tuneline.config.schema import LeakageConfig
from tuneline.dedup import batch_near_keys
from tuneline.engine.blocks import Block, line_offsets, write_array, write_bytes
from tuneline.engine.cluster_tasks import KeyedBlock, write_keys, write_signatures
from tuneline.io.jsonl import BadRecord, line_id, parse_canonical
from tuneline.records import Kind
from tuneline.stages.clean.text import prompt_text
from tuneline.stages.split.assign import SPLITS, SplitError, field_value, rank

NUM_PERM, _SHINGLE = 64, 3
CHUNK = 4096


@dataclass(frozen=True, slots=True)
class SplitTask:
    block: Block
    kind: Kind  # of every record in the block (from the file it is in)
    prefix: str
    seed: int
    field: str | None  # the record field the strategy reads (None: random)
    leakage: LeakageConfig | None  # None: no audit
    exact_bits: int
    band_bits: int


@dataclass(slots=True)
class SplitKeyed:
    """What a block task found: its records, and, where the strategy needs them, each one's id and field value;
    the prompt keys written for the leakage audit. Each record's hash of (seed, id), which orders the random
    split, is in scratch (``<prefix>.h``), not here: the driver reads them back in passes and never holds them."""

    keyed: KeyedBlock
    records: int
    ids: list[str] | None = None
    values: list[Any] | None = None
    error: str | None = None  # "line N: what is wrong"


def split_block(task: SplitTask) -> SplitKeyed:
    blk = task.block
    ranks: list[int] = []
    texts: list[str] = []
    hashes: list[int] = []
    ids: list[str] | None = [] if task.field else None
    values: list[Any] | None = [] if task.field else None
    for lineno, line in blk.read():
        if not line or line.isspace():  # blank (no copy, as strip would make)
            continue
        try:
            rec = parse_canonical(line, 0, task.kind)
        except BadRecord as exc:
            empty = KeyedBlock(task.prefix, blk.first_rank, blk.first_rank, {}, 0)
            return SplitKeyed(empty, 0, error=f"{lineno}: {exc.detail}")
        hashes.append(rank(task.seed, rec["id"]))
        if ids is not None and values is not None:
            ids.append(rec["id"])
            values.append(field_value(rec, task.field))
        if task.leakage is not None:
            texts.append(prompt_text(rec, task.kind))
        ranks.append(blk.first_rank + lineno - blk.first_line)
    write_array(f"{task.prefix}.h", np.array(hashes, dtype=np.uint64))
    if task.leakage is None:
        keyed = KeyedBlock(task.prefix, blk.first_rank, blk.first_rank + blk.lines, {}, 0)
        return SplitKeyed(keyed, len(hashes), ids, values)
    sigs, bands = [], []
    for i in range(0, len(texts), CHUNK):
        s, b = batch_near_keys(texts[i : i + CHUNK], task.leakage.threshold, NUM_PERM, _SHINGLE)
        sigs.append(s)
        bands.append(b)
    r = np.array(ranks, dtype=np.int64)
    sig = np.concatenate(sigs) if sigs else np.zeros((0, NUM_PERM), dtype=np.uint32)
    band = np.concatenate(bands) if bands else np.zeros((0, 1), dtype=np.uint64)
    exact = np.array([xxhash.xxh3_64_intdigest(t.encode()) for t in texts], dtype=np.uint64)
    offsets = {
        "px": write_keys(task.prefix, "px", exact, r, task.exact_bits),
        "pb": write_keys(task.prefix, "pb", band.reshape(-1), np.repeat(r, band.shape[1]), task.band_bits),
    }
    signed = write_signatures(task.prefix, r, sig)
    keyed = KeyedBlock(task.prefix, blk.first_rank, blk.first_rank + blk.lines, offsets, signed)
    return SplitKeyed(keyed, len(hashes), ids, values)


#: In :attr:`SplitWriteTask.splits`, a record the leakage audit removes.
DROPPED = 255


@dataclass(frozen=True, slots=True)
class SplitWriteTask:
    block: Block
    prefix: str  # scratch: <prefix>.<split> for each split
    splits: np.ndarray  # uint8 per record of the block: an index into SPLITS, or DROPPED
    wanted: np.ndarray  # positions in the block of the records whose ids the leakage log names


def write_split_block(task: SplitWriteTask) -> list[str]:
    """Write the block's records to ``<prefix>.<split>`` for each split, in input order; the ids of ``wanted``.

    The block was read once before (:func:`split_block`), which refused blank lines: line i is record i."""
    data = task.block.read_bytes()
    if data and not data.endswith(b"\n"):  # the file's last line: every split file's lines end in a newline
        data += b"\n"
    offsets = line_offsets(data)
    if len(offsets) - 1 != len(task.splits):
        raise SplitError(f"{task.block.path} changed while it was being split: re-run `tuneline split`")
    for s, name in enumerate(SPLITS):
        chosen = np.flatnonzero(task.splits == s).tolist()
        write_bytes(f"{task.prefix}.{name}", b"".join([data[offsets[i] : offsets[i + 1]] for i in chosen]))
    return [line_id(data[offsets[i] : offsets[i + 1]]) for i in task.wanted.tolist()]
