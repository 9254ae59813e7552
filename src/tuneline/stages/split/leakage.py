"""Prompt-level leakage between train and val/test: exact and MinHash near duplicates."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import xxhash

from tuneline.config.schema import LeakageConfig
from tuneline.dedup import NearKeys, near_keys
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
    out = []
    for line in lines:
        text = prompt_text(orjson.loads(line))
        out.append(PromptKeys(xxhash.xxh3_64_intdigest(text.encode()), near_keys(text, _CFG.threshold, NUM_PERM, _SHINGLE)))
    return out
