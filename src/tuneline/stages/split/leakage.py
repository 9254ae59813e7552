"""Prompt-level leakage between train and val/test: exact and MinHash near duplicates, staged over blocks.

:func:`prompt_block` is the block task: it writes each record's prompt keys (an exact hash, LSH band keys)
as bucketed ``(key, rank)`` rows and its signatures, as the clean stage's dedup does. The split driver then
pairs every val/test record with the first train record (lowest rank) sharing a key
(:func:`tuneline.engine.cluster_tasks.bucket_pairs` in reference mode) and verifies near pairs by their
signatures; memory stays one bucket at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from tuneline.config.schema import LeakageConfig
from tuneline.dedup import batch_near_keys
from tuneline.engine.blocks import Block
from tuneline.engine.cluster_tasks import KeyedBlock, write_keys, write_signatures
from tuneline.io.jsonl import BadRecord, parse_canonical
from tuneline.stages.clean.text import prompt_text

NUM_PERM, _SHINGLE = 64, 3
CHUNK = 4096


@dataclass(frozen=True, slots=True)
class PromptTask:
    block: Block
    prefix: str
    config: LeakageConfig
    exact_bits: int
    band_bits: int


@dataclass(slots=True)
class PromptKeyed:
    keyed: KeyedBlock
    records: int = 0
    error: str | None = None  # "line N: what is wrong"


def prompt_block(task: PromptTask) -> PromptKeyed:
    blk = task.block
    ranks: list[int] = []
    texts: list[str] = []
    for lineno, line in blk.read():
        if not line.strip():
            continue
        try:
            texts.append(prompt_text(parse_canonical(line, 0)))
        except BadRecord as exc:
            return PromptKeyed(
                KeyedBlock(task.prefix, blk.first_rank, blk.first_rank, {}, 0), error=f"{lineno}: {exc.detail}"
            )
        ranks.append(blk.first_rank + lineno - blk.first_line)
    sigs, bands = [], []
    for i in range(0, len(texts), CHUNK):
        s, b = batch_near_keys(texts[i : i + CHUNK], task.config.threshold, NUM_PERM, _SHINGLE)
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
    return PromptKeyed(KeyedBlock(task.prefix, blk.first_rank, blk.first_rank + blk.lines, offsets, signed), len(r))
