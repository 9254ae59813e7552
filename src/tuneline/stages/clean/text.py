"""Text views of canonical records and the per-text rules (normalization, repetition)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

# C0/C1 controls except \t \n \r, zero-width and bidi marks, line/paragraph separators, BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")


def messages_of(rec: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Every message of an SFT or preference record, in a stable order."""
    if "messages" in rec:
        yield from rec["messages"]
    else:
        yield from rec["prompt"]
        yield from rec["chosen"]
        yield from rec["rejected"]


def normalize_text(text: str, form: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize(form, text)
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    return text.replace("\r\n", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")


def canonical_text(rec: dict[str, Any]) -> str:
    """What 'the same record' means for exact dedup: roles + case-folded, space-collapsed content."""
    return "\x1e".join(m["role"] + "\x1f" + " ".join(m["content"].casefold().split()) for m in messages_of(rec))


def prompt_text(rec: dict[str, Any]) -> str:
    """The user side of a record (user and tool turns), for leakage checks.

    System prompts are left out: they are shared by design across a dataset and would make
    every pair of records look alike.
    """
    msgs = rec["prompt"] if "prompt" in rec else rec["messages"][:-1]
    return "\x1e".join(
        _SPACE.sub(" ", m["content"]).strip().casefold() for m in msgs if m["role"] in ("user", "tool")
    ) or canonical_text(rec)


def repetition_ratio(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one (Gopher-style repetition filter)."""
    words = text.split()
    if len(words) < n + 2:
        return 0.0
    total = len(words) - n + 1
    return 1.0 - len(set(zip(*(words[i:] for i in range(n)), strict=False))) / total
