"""Prompt-level leakage between train and val/test: exact and MinHash near duplicates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from tuneline.config.schema import LeakageConfig
from tuneline.dedup import batch_near_keys
from tuneline.io.jsonl import parse_canonical
from tuneline.stages.clean.text import prompt_text

_CFG: LeakageConfig | None = None
NUM_PERM, _SHINGLE = 64, 3


@dataclass(slots=True)
class PromptKeys:
    """Leakage keys of one chunk: exact prompt hashes, MinHash signatures and band keys, row i = record i."""

    exact: list[int]
    sigs: np.ndarray
    bands: list[list[int]]


def init_worker(cfg: LeakageConfig) -> None:
    global _CFG
    _CFG = cfg


def prompt_keys_chunk(lines: list[bytes]) -> PromptKeys:
    assert _CFG is not None
    texts = [prompt_text(parse_canonical(line, i)) for i, line in enumerate(lines)]
    sigs, bands = batch_near_keys(texts, _CFG.threshold, NUM_PERM, _SHINGLE)
    return PromptKeys([xxhash.xxh3_64_intdigest(t.encode()) for t in texts], sigs, bands.tolist())
