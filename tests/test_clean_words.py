"""The chunk-at-once path of the clean stage (tuneline.stages.clean.words) decides as the per-record rules do."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from tuneline.config import load_config
from tuneline.records import Kind
from tuneline.stages.clean.rules import RecordCleaner
from tuneline.stages.clean.text import repetition_ratio
from tuneline.stages.clean.words import ChunkWords

# every byte str.split() splits ASCII at, letters of both cases, punctuation, a NUL
_ALPHABET = "aAbBzZ09_.,?!@-\x00" + " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f" + "  "
# words that share their first and last 8 bytes but differ between them (the screen's key does not see there)
_VOCAB = ["a", "B", "b", "longer_word", "x" * 8 + "1" + "y" * 8, "x" * 8 + "2" + "y" * 8, "abcdefghij", "ABCDEFGHIJ"]


def _ascii_texts(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(_ALPHABET, k=rng.randint(0, 40))) for _ in range(n)]


def _word_texts(rng: random.Random, n: int) -> list[str]:
    seps = [" ", "  ", "\t", "\n", "\x1f", " \x0b "]
    out = []
    for _ in range(n):
        words = rng.choices(_VOCAB[: rng.randint(1, len(_VOCAB))], k=rng.randint(0, 40))
        out.append("".join(w + rng.choice(seps) for w in words).strip(rng.choice(["", " "])))
    return out


def test_words_chars_and_folded_text_are_the_per_text_ones():
    rng = random.Random(1)
    texts = _ascii_texts(rng, 3000) + _word_texts(rng, 1000) + ["", " ", "x"]
    rng.shuffle(texts)
    words = ChunkWords(texts)
    assert words.words.tolist() == [len(t.split()) for t in texts]
    assert words.chars().tolist() == [len(t) for t in texts]
    raw, starts, ends = words.folded()
    assert [raw[a:b].decode() for a, b in zip(starts, ends, strict=True)] == [
        " ".join(t.split()).casefold() for t in texts
    ]
    assert words.lowered() == "\n".join(texts).casefold().encode()


@pytest.mark.parametrize("limit", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9])
def test_the_repetition_screen_never_passes_a_text_the_ratio_rejects(limit: float):
    """Unclear wherever the exact ratio is above the limit; where words are short (fully in their key) it is
    exactly the ratio's decision, so the screen spares the exact check for every text it can."""
    rng = random.Random(2)
    texts = _word_texts(rng, 4000) + _ascii_texts(rng, 1000)
    unclear = ChunkWords(texts).repetition_unclear(limit).tolist()
    above = [repetition_ratio(t) > limit for t in texts]
    assert all(u for u, a in zip(unclear, above, strict=True) if a)
    short = [i for i, t in enumerate(texts) if all(len(w) <= 8 for w in t.split())]
    assert len(short) > 1000
    assert [unclear[i] for i in short] == [above[i] for i in short]
    assert 0 < sum(above) < len(texts)


def _message(rng: random.Random, role: str) -> dict:
    kind = rng.random()
    if kind < 0.55:
        content = " ".join(rng.choices(_VOCAB, k=rng.randint(3, 30)))
    elif kind < 0.7:
        content = rng.choice(_word_texts(rng, 1))
    elif kind < 0.8:
        content = "".join(rng.choices(_ALPHABET, k=rng.randint(0, 30)))
    elif kind < 0.85:
        content = "Mail ALICE@example.com or call 415-555-0134,\r\nthanks"  # PII, a CRLF
    elif kind < 0.9:
        content = "Grüße, «café» ﬁne\u200b text"  # not ASCII: the per-record path
    elif kind < 0.95:
        content = "same same same same same same same same"  # repetitive
    else:
        content = ""
    m = {"role": role, "content": content}
    if role == "assistant" and rng.random() < 0.1:
        m["weight"] = 0
    if role == "assistant" and rng.random() < 0.05:
        m["tool_calls"] = [{"type": "function", "function": {"name": "f", "arguments": {"q": "A  b"}}}]
    return m


def _records(rng: random.Random, kind: Kind, n: int) -> list[bytes]:
    base = [
        {
            "sft": lambda: {
                "messages": [_message(rng, r) for r in ("system", "user", "assistant")[rng.randint(0, 1) :]]
            },
            "preference": lambda: {
                "prompt": [_message(rng, "user")],
                "chosen": [_message(rng, "assistant")],
                "rejected": [_message(rng, "assistant")],
            },
            "kto": lambda: {
                "prompt": [_message(rng, "user")],
                "completion": [_message(rng, "assistant")],
                "label": rng.random() < 0.5,
            },
        }[kind]()
        for _ in range(n)
    ]
    base += [orjson.loads(orjson.dumps(r)) for r in rng.choices(base, k=n // 5)]  # exact duplicates
    for r in rng.choices(base, k=n // 10):  # the same text in other case and spacing
        r = orjson.loads(orjson.dumps(r))
        for field in ("messages", "prompt"):
            for m in r.get(field, []):
                m["content"] = "  " + m["content"].upper().replace(" ", "\t ")
        base.append(r)
    rng.shuffle(base)
    return [orjson.dumps({"id": f"r{i}", "source": "s", "meta": {}, **r}) + b"\n" for i, r in enumerate(base)]


@pytest.mark.parametrize("kind", ["sft", "preference", "kto"])
@pytest.mark.parametrize(
    "overrides",
    [(), ("clean.quality.min_chars=40", "clean.quality.max_chars=200", "clean.quality.max_repetition=0.2")],
)
def test_plain_records_clean_as_the_per_record_path_does(kind: Kind, overrides: tuple[str, ...]):
    cfg = load_config(None, overrides).clean
    lines = _records(random.Random(len(overrides) + len(kind)), kind, 600)
    fast, slow = RecordCleaner(cfg), RecordCleaner(cfg)
    slow.fast = False
    a, b = fast.clean_many(lines, kind), slow.clean_many(lines, kind)
    assert a.ids == b.ids
    assert a.lines == b.lines
    assert a.removed == b.removed
    assert a.pii == b.pii and a.normalized == b.normalized and a.changed == b.changed
    assert a.exact == b.exact
    assert (a.near_rows >= 0).tolist() == (b.near_rows >= 0).tolist()
    near = np.flatnonzero(a.near_rows >= 0)
    assert a.sigs is not None and b.sigs is not None and a.bands is not None and b.bands is not None
    assert np.array_equal(a.sigs[a.near_rows[near]], b.sigs[b.near_rows[near]])
    assert np.array_equal(a.bands[a.near_rows[near]], b.bands[b.near_rows[near]])
    # the corpus reaches every rule and both paths
    rules = {r[0] for r in a.removed if r}
    assert "quality.empty_after_cleaning" in rules and "quality.repetition" in rules
    assert len(set(a.exact) - {0}) < len(near) and a.pii
