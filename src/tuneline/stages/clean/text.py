"""Text views of canonical records and the per-text rules (normalization, repetition)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np

from tuneline.records import Kind, message_text, messages_of
from tuneline.textscan import ByteClass, TextScan

__all__ = [
    "canonical_text",
    "key_prefix",
    "key_suffix",
    "map_texts",
    "message_text",
    "messages_of",
    "normalize_text",
    "prompt_text",
]

# C0/C1 controls except \t \n \r, zero-width and bidi marks, line/paragraph separators, BOM.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


def map_texts(m: dict[str, Any], fn: Callable[[str], str]) -> bool:
    """Apply ``fn`` to every text a message holds (content, reasoning, the string values of its tool
    calls' arguments), in place; True when something changed. A call's name is an identifier, left as is."""
    changed = False
    for key in ("content", "reasoning_content"):
        if key in m:
            new = fn(m[key])
            if new != m[key]:
                m[key], changed = new, True
    for call in m.get("tool_calls") or ():
        fn_ = call["function"]
        new = _map_strings(fn_["arguments"], fn)
        if new != fn_["arguments"]:
            fn_["arguments"], changed = new, True
    return changed


def normalize_text(text: str, form: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize(form, text)
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    return text.replace("\r\n", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")


# What normalize_text changes in ASCII text: the controls of _CONTROL that are ASCII, and "\r" (of "\r\n").
_ASCII_CHANGED = ByteClass(bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x0D]))


def normalize_candidates(scan: TextScan) -> np.ndarray:
    """Which texts :func:`normalize_text` may change (any form): non-ASCII ones and those with the bytes above;
    it returns every other text as it is."""
    return scan.answer([scan.having(_ASCII_CHANGED)])


def has_extras(m: dict[str, Any]) -> bool:
    """Whether the message holds more than its content (reasoning, tool calls): then its text is not just it."""
    return bool(m.get("reasoning_content") or m.get("tool_calls"))


def folded_text(m: dict[str, Any], words: list[str] | None = None) -> str:
    """``" ".join(message_text(m).casefold().split())``: the message's text as exact dedup compares it.

    ``words`` (``m["content"].split()``, when the caller has them) saves splitting the content again: casefold
    maps no character to or from whitespace and is idempotent (tests/test_clean.py checks every code point),
    so folding the joined words is folding, then splitting, the text."""
    if words is None or has_extras(m):
        return " ".join(message_text(m).casefold().split())
    return " ".join(words).casefold()


def canonical_text(rec: dict[str, Any], kind: Kind, folded: list[str] | None = None) -> str:
    """What 'the same record' means for exact dedup: roles + case-folded, space-collapsed content (``folded``:
    :func:`folded_text` of each message, when the caller has them)."""
    msgs = list(messages_of(rec, kind))
    folded = folded if folded is not None else [folded_text(m) for m in msgs]
    body = "\x1e".join(key_prefix(m) + text for m, text in zip(msgs, folded, strict=True))
    return body + key_suffix(rec, kind)


def key_prefix(m: dict[str, Any]) -> str:
    """What stands before a message's folded text in :func:`canonical_text`: its role, and whether it is trained
    (a context-only turn, weight 0, makes another training example than the same turn trained)."""
    return m["role"] + ("\x1d\x1f" if m.get("weight") == 0 else "\x1f")


def key_suffix(rec: dict[str, Any], kind: Kind) -> str:
    """What ends :func:`canonical_text`: a kto record's label (the same text liked and disliked is two records)."""
    return "\x1e" + str(rec["label"]) if kind == "kto" else ""


def turns_of(rec: dict[str, Any]) -> int:
    """The turns of one conversation: a preference record's is its prompt and one answer."""
    if "messages" in rec:
        return len(rec["messages"])
    return len(rec["prompt"]) + len(rec.get("chosen") or rec["completion"])


def prompt_text(rec: dict[str, Any], kind: Kind) -> str:
    """The user side of a record (user and tool turns), for leakage checks.

    System prompts are left out: they are shared by design across a dataset and would make
    every pair of records look alike.
    """
    msgs = rec["messages"][:-1] if kind == "sft" else rec["prompt"]
    # " ".join(text.split()) is re.sub(r"\s+", " ", text).strip(): str.split and re's \s share one whitespace
    return "\x1e".join(
        " ".join(m["content"].split()).casefold() for m in msgs if m["role"] in ("user", "tool")
    ) or canonical_text(rec, kind)


def repetition_ratio(text: str) -> float:
    """Share of word 3-grams that repeat an earlier one (Gopher-style repetition filter)."""
    w = text.split()
    if len(w) < 5:
        return 0.0
    return 1.0 - len(set(zip(w, w[1:], w[2:], strict=False))) / (len(w) - 2)


def repetition_above(text: str, limit: float) -> float | None:
    """:func:`repetition_ratio` of ``text`` when it is above ``limit``, else None."""
    return words_repetition_above(text.split(), limit)


def words_repetition_above(w: list[str], limit: float) -> float | None:
    """:func:`repetition_above` of the text whose ``str.split()`` is ``w``.

    Most texts are ruled out by their words alone, without building the 3-grams: each distinct word but the
    last two starts a distinct 3-gram, so ``1 - (distinct words - 2) / 3-grams`` bounds the ratio from above
    (in floating point too: division and subtraction are monotone), and a bound at or below ``limit`` decides.
    """
    if len(w) < 5 or 1.0 - (len(set(w)) - 2) / (len(w) - 2) <= limit:
        return None
    ratio = 1.0 - len(set(zip(w, w[1:], w[2:], strict=False))) / (len(w) - 2)
    return ratio if ratio > limit else None
