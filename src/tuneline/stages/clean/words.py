"""The words of a chunk's ASCII contents, found at once: what the quality filters, exact dedup and MinHash read.

Per record, ``content.split()`` made a Python string of every word, and the repetition bound, the exact key and
the near-dup text each went over them again. Here the contents of a chunk's plain records are one byte array,
and numpy answers for each text: how many words it has, whether its repetition ratio could exceed the limit,
and its case-folded, space-collapsed form (the clean stage, one core: 39.3 → 30.4 µs per chat record; README,
"Data stages: where the time goes").

Contract: every answer equals what the per-text rules compute (:mod:`tuneline.stages.clean.text`), or is a
"check it exactly" that sends the text down that path. Texts are ASCII (a character is a byte): ``str.split``'s
whitespace is then the six bytes of ``string.whitespace`` and the separators 0x1c-0x1f, and ``casefold`` is
``lower``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tuneline.config.schema import QualityRule
from tuneline.records import Kind
from tuneline.stages.clean.text import key_prefix, key_suffix, turns_of
from tuneline.textscan import ByteClass, runs

#: Folded texts end to end, with where each starts and ends (:meth:`ChunkWords.folded`).
Folded = tuple[bytes, list[int], list[int]]

#: What ``str.split()`` splits an ASCII text at.
SPACE = ByteClass(b" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f")
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
#: The low k bytes of a little-endian uint64 set, for k = 0 … 8.
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


class ChunkWords:
    """The ASCII texts ``texts``, joined by newlines; text ``i`` is ``raw[start[i]:end[i]]``."""

    def __init__(self, texts: list[str]) -> None:
        self.raw = "\n".join(texts).encode("ascii")
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        self.end = np.cumsum(lengths + 1) - 1
        self.start = self.end - lengths
        self.in_word = ~SPACE.mask(self.raw)
        self.word_start, self.word_end = runs(self.in_word)
        # texts are in order and the newline between two is whitespace: no word spans two texts, and a text's
        # words are those from the first word at or after its start to the next text's first
        first_word = np.searchsorted(self.word_start, self.start)
        self.words = np.diff(np.append(first_word, len(self.word_start)))  # len(text.split())
        self.word_text = np.repeat(np.arange(len(texts)), self.words)

    def chars(self) -> np.ndarray:
        """``len(text)`` of each."""
        return self.end - self.start

    def repetition_unclear(self, limit: float) -> np.ndarray:
        """Which texts' repetition ratio (:func:`~tuneline.stages.clean.text.repetition_ratio`) may be above
        ``limit``: the rest certainly are not.

        Each 3-gram of words is a 64-bit hash of its words' hashes, and the distinct hashes of a text are counted
        by one sort of the chunk's. Equal 3-grams hash equal, so there are never more distinct hashes than
        distinct 3-grams: the ratio computed from them (same formula, same floating point) is never below the
        true one, and where it is at or below ``limit`` the true one is too."""
        n, wt = len(self.words), self.word_text
        if len(wt) < 3:
            return self.words >= 5
        h = self._word_keys()
        with np.errstate(over="ignore"):
            tri = h[:-2] * _MIX[0] + h[1:-1] * _MIX[1] + h[2:] * _MIX[2]
        inside = wt[:-2] == wt[2:]  # the 3-gram's words are of one text
        # a text in the high 32 bits, the hash's high 32 in the low: one sort groups them by text
        keys = (wt[:-2][inside].astype(np.uint64) << np.uint64(32)) | (tri[inside] >> np.uint64(32))
        keys.sort()
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        distinct = np.bincount((keys[first] >> np.uint64(32)).astype(np.int64), minlength=n)
        grams = np.maximum(self.words - 2, 1)
        return (self.words >= 5) & (1.0 - distinct / grams > limit)

    def _word_keys(self) -> np.ndarray:
        """A 64-bit key of each word, from its length and its first and last 8 bytes (a longer word's middle is
        not in it: two words that differ only there share a key, which only makes a text look more repetitive).
        Loaded 8 bytes at a time, it costs a sixth of hashing every byte (:func:`tuneline.dedup.word_hashes`)."""
        start, end = self.word_start, self.word_end
        padded = self.raw + bytes(8)
        # the 8 bytes from every offset, as a little-endian uint64 (overlapping, unaligned: a view, no copy)
        at = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
        length = end - start
        mask = _LOW_BYTES[np.minimum(length, 8)]  # the word's own bytes of the first 8 (and of the last 8)
        head = at[start] & mask
        tail = at[np.maximum(end - 8, start)] & mask
        with np.errstate(over="ignore"):
            return head * _MIX[0] + tail * _MIX[1] + length.astype(np.uint64) * _MIX[2]

    def folded(self) -> Folded:
        """``" ".join(text.split()).casefold()`` of every text, end to end, and where each starts and ends."""
        kept = self.in_word.copy()
        out = np.frombuffer(self.raw.translate(_LOWER), dtype=np.uint8).copy()
        # one space after each word that another word of its text follows
        inner = self.word_end[:-1][self.word_text[:-1] == self.word_text[1:]]
        kept[inner] = True
        out[inner] = 0x20
        word_bytes = np.bincount(self.word_text, weights=self.word_end - self.word_start, minlength=len(self.words))
        size = word_bytes.astype(np.int64) + np.maximum(self.words - 1, 0)  # the words and a space between two
        ends = np.cumsum(size)
        return out[kept].tobytes(), (ends - size).tolist(), ends.tolist()

    def lowered(self) -> bytes:
        """The texts end to end (newlines between), case-folded: as :func:`tuneline.dedup.shingles` takes them."""
        return self.raw.translate(_LOWER)


class PlainRecords:
    """The records of a chunk whose messages are all plain ASCII contents (no reasoning, no tool calls), and the
    words of those contents. ``row[i]``: record i's index among them, -1 for any other record."""

    def __init__(self, row: np.ndarray, first: np.ndarray, texts: list[str]) -> None:
        self.row, self.first, self.words = row, first, ChunkWords(texts)
        self._first = first.tolist()
        self._prefixes: dict[tuple[str, bool], bytes] = {}  # key_prefix of each (role, context only), encoded

    @classmethod
    def of(cls, msgs: list[list[dict[str, Any]]], plain: list[bool]) -> PlainRecords | None:
        members = [i for i, ms in enumerate(msgs) if plain[i] and ms]
        if not "".join(m["content"] for i in members for m in msgs[i]).isascii():
            members = [i for i in members if all(m["content"].isascii() for m in msgs[i])]
        if not members:
            return None
        row = np.full(len(msgs), -1, dtype=np.int64)
        row[members] = np.arange(len(members))
        first = np.zeros(len(members), dtype=np.int64)
        np.cumsum([len(msgs[i]) for i in members[:-1]], out=first[1:])
        return cls(row, first, [m["content"] for i in members for m in msgs[i]])

    def passed(self, recs: list[dict[str, Any]], kind: Kind, q: QualityRule) -> np.ndarray:
        """Which of them certainly pass every quality bound (the rest go through the exact rules, which say which
        bound, if any, they break)."""
        if not q.enabled:
            return np.ones(len(self.first), dtype=bool)
        w, first = self.words, self.first
        members = np.flatnonzero(self.row >= 0).tolist()
        turns = np.fromiter((turns_of(recs[i]) for i in members), dtype=np.int64, count=len(members))
        chars = np.add.reduceat(w.chars(), first)
        return (
            (np.minimum.reduceat(w.words, first) > 0)
            & (chars >= q.min_chars)
            & (chars <= q.max_chars)
            & (turns >= q.min_turns)
            & (turns <= q.max_turns)
            & ~np.logical_or.reduceat(w.repetition_unclear(q.max_repetition), first)
        )

    def canonical(self, f: int, rec: dict[str, Any], msgs: list[dict[str, Any]], kind: Kind, folded: Folded) -> bytes:
        """:func:`~tuneline.stages.clean.text.canonical_text` of record ``f`` of them, UTF-8."""
        raw, starts, ends = folded
        t, prefixes = self._first[f], self._prefixes
        parts = []
        for j, m in enumerate(msgs):
            key = (m["role"], m.get("weight") == 0)
            prefix = prefixes.get(key)
            if prefix is None:
                prefix = prefixes[key] = key_prefix(m).encode()
            parts.append(prefix + raw[starts[t + j] : ends[t + j]])
        return b"\x1e".join(parts) + key_suffix(rec, kind).encode()

    def documents(self, rows: list[int]) -> tuple[bytes, np.ndarray]:
        """The records ``rows`` (ascending) as near-dup documents (:func:`tuneline.dedup.shingles`): the chunk's
        lowered texts with every other record's blanked, and where each of ``rows`` starts."""
        w = self.words
        data = np.frombuffer(w.lowered(), dtype=np.uint8).copy()
        ends = np.append(w.start[self.first[1:]] - 1, len(data))
        chosen = np.zeros(len(self.first), dtype=bool)
        chosen[rows] = True
        for r in np.flatnonzero(~chosen).tolist():
            data[w.start[self.first[r]] : ends[r]] = 0x0A
        return data.tobytes(), w.start[self.first[rows]]
