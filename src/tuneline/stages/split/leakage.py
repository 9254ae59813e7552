"""Prompt-level leakage between train and val/test: exact and MinHash near duplicates, staged over blocks.

:func:`split_block` is the block task of the split stage: it hashes each record's id (the split's order) and
writes its prompt keys (an exact hash, LSH band keys) as bucketed ``(key, rank)`` rows and its signatures, as the clean stage's dedup does. The split driver then
pairs every val/test record with the first train record (lowest rank) sharing a key
(:func:`tuneline.engine.cluster_tasks.bucket_pairs` in reference mode) and verifies near pairs by their
signatures; memory stays one bucket at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xxhash

from tuneline.config.schema import LeakageConfig
from tuneline.dedup import batch_near_keys
from tuneline.engine.blocks import Block
from tuneline.engine.cluster_tasks import KeyedBlock, write_keys, write_signatures
from tuneline.io.jsonl import BadRecord, parse_canonical
from tuneline.records import Kind
from tuneline.stages.clean.text import prompt_text
from tuneline.stages.split.assign import field_value, rank

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
    """Per record of a block: the hash of (seed, id) that orders the split, and, where the strategy needs them,
    the id and the field's value; plus the prompt keys written for the leakage audit."""

    keyed: KeyedBlock
    hashes: np.ndarray
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
        if not line.strip():
            continue
        try:
            rec = parse_canonical(line, 0, task.kind)
        except BadRecord as exc:
            empty = KeyedBlock(task.prefix, blk.first_rank, blk.first_rank, {}, 0)
            return SplitKeyed(empty, np.zeros(0, np.uint64), error=f"{lineno}: {exc.detail}")
        hashes.append(rank(task.seed, rec["id"]))
        if ids is not None and values is not None:
            ids.append(rec["id"])
            values.append(field_value(rec, task.field))
        if task.leakage is not None:
            texts.append(prompt_text(rec, task.kind))
        ranks.append(blk.first_rank + lineno - blk.first_line)
    h = np.array(hashes, dtype=np.uint64)
    if task.leakage is None:
        return SplitKeyed(KeyedBlock(task.prefix, blk.first_rank, blk.first_rank + blk.lines, {}, 0), h, ids, values)
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
    return SplitKeyed(keyed, h, ids, values)
