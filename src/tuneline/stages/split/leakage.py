"""Prompt-level leakage between train and val/test: exact and MinHash near duplicates."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import xxhash

from tuneline.config.schema import LeakageConfig
from tuneline.dedup import NearKeys, batch_near_keys
from tuneline.stages.clean.text import prompt_text

_CFG: LeakageConfig | None = None
NUM_PERM, _SHINGLE = 64, 3


@dataclass(slots=True)
class PromptKeys:
    exact: int
    near: NearKeys


def init_worker(cfg: LeakageConfig) -> None:
    global _CFG
    _CFG = cfg


def prompt_keys_chunk(lines: list[bytes]) -> list[PromptKeys]:
    assert _CFG is not None
    texts = [prompt_text(orjson.loads(line)) for line in lines]
    near = batch_near_keys(texts, _CFG.threshold, NUM_PERM, _SHINGLE)
    return [PromptKeys(xxhash.xxh3_64_intdigest(t.encode()), k) for t, k in zip(texts, near, strict=True)]
