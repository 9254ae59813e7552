"""Many texts as one byte array, so that a question about each text costs a few numpy operations per chunk.

The clean stage asks, of every message of a chunk, "could a PII detector match here?" and "would normalization
change this?". Asked text by text, even a C regex pays Python's per-call cost and scans the text once per
question; asked of one array, the whole chunk is scanned once, in C, and the answer is a boolean per text.

Contract: only ASCII texts are in the array (there a character is a byte, and ``\\d`` is ``[0-9]``); a non-ASCII
text is answered True for every question, so that the caller takes its exact, per-text path. Answers may be
True where the exact check would say no (a superset), never False where it would say yes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: Texts are joined with a newline: no question asked here matches across it or counts it (it is no digit,
#: number separator, control that normalization removes, or byte of a marker).
_JOIN = "\n"


class ByteClass:
    """A set of byte values, for asking "which bytes are in it" of a whole chunk or of a few positions.

    Of a whole chunk it is asked through ``bytes.translate`` (one C pass mapping each byte to 0 or 1), not by
    indexing a numpy table with every byte: numpy's fancy indexing first widens each byte to an index and was
    the largest single cost of the clean stage (9% of its CPU time, ``perf`` on the 1M benchmark)."""

    __slots__ = ("table", "translation")

    def __init__(self, chars: bytes) -> None:
        self.table = np.zeros(256, dtype=bool)  # for a few positions: ``cls.table[data[at]]``
        self.table[list(chars)] = True
        self.translation = self.table.view(np.uint8).tobytes()

    def mask(self, raw: bytes) -> np.ndarray:
        """One boolean per byte of ``raw``: is it in the class."""
        return np.frombuffer(raw.translate(self.translation), dtype=bool)


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the maximal runs of True in a boolean array start and end (``[start, end)``), in order.

    Edges are found by comparing neighbours of a padded copy as booleans: ``np.diff`` over the mask widened to
    int64 (what concatenating it with ``[0]`` does) cost four times as much, 2.5 µs per chat record in MinHash."""
    padded = np.zeros(len(mask) + 2, dtype=bool)
    padded[1:-1] = mask
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


class TextScan:
    """The ASCII texts of a list, joined; positions found in :attr:`data` map back to the text they are in."""

    def __init__(self, texts: list[str]) -> None:
        self.size = len(texts)
        self.ascii = np.fromiter((t.isascii() for t in texts), dtype=bool, count=len(texts))
        self.index = np.flatnonzero(self.ascii)  # position in ``texts`` of each joined text
        joined = [texts[i] for i in self.index.tolist()]
        self.raw = _JOIN.join(joined).encode("ascii")
        self.data = np.frombuffer(self.raw, dtype=np.uint8)
        lengths = np.fromiter((len(t) + 1 for t in joined), dtype=np.int64, count=len(joined))
        self.starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(joined) else lengths
        self._found: dict[bytes, np.ndarray] = {}  # a class's positions (several questions ask of one class)

    def answer(self, positions: Iterable[np.ndarray]) -> np.ndarray:
        """One boolean per text: True for a non-ASCII text or one holding any of ``positions`` (into ``data``)."""
        out = ~self.ascii
        found = [p for p in positions if len(p)]
        if found:
            joined_text = np.searchsorted(self.starts, np.concatenate(found), side="right") - 1
            out[self.index[joined_text]] = True
        return out

    def find_any(self, needles: Needles) -> np.ndarray:
        """Every start of any of ``needles`` in the joined texts."""
        return needles.find(self.raw, self.data)

    def find_all(self, needle: bytes, haystack: bytes | None = None) -> np.ndarray:
        """Every start of ``needle`` in the joined texts (or in ``haystack``, a same-length view of them)."""
        raw = self.raw if haystack is None else haystack
        hits, at = [], raw.find(needle)
        while at >= 0:
            hits.append(at)
            at = raw.find(needle, at + 1)
        return np.array(hits, dtype=np.int64)

    def runs_of(self, member: ByteClass, linker: ByteClass, count: int, max_gap: int) -> np.ndarray:
        """Starts of ``count`` member bytes in a row, each next one after at most ``max_gap`` (≤ 2) linker bytes
        (the regex ``M(?:L{0,max_gap}M){count-1}`` for byte classes M and L, M and L disjoint)."""
        at = self.having(member)
        if len(at) < count:
            return at[:0]
        gap, last = at[1:] - at[:-1] - 1, len(self.data) - 1
        linked = gap == 0
        for width in range(1, max_gap + 1):  # the bytes between two members: all linkers
            between = gap == width
            for k in range(1, width + 1):
                between &= linker.table[self.data[np.minimum(at[:-1] + k, last)]]
            linked |= between
        links = np.concatenate(([0], np.cumsum(linked, dtype=np.int64)))
        need = count - 1
        return at[: len(at) - need][links[need:] - links[:-need] == need]

    def sequence(self, classes: tuple[ByteClass, ...]) -> np.ndarray:
        """Starts of a byte of ``classes[0]`` followed by one of ``classes[1]``, and so on."""
        span = len(classes) - 1
        at = self.having(classes[0])
        at = at[at < len(self.data) - span]
        for k, cls in enumerate(classes[1:], start=1):
            at = at[cls.table[self.data[at + k]]]
        return at

    def flanked(self, middle: bytes, side: ByteClass) -> np.ndarray:
        """Positions of the byte ``middle`` with a ``side`` byte right before and right after it."""
        at = np.flatnonzero(self.data == middle[0])
        at = at[(at > 0) & (at < len(self.data) - 1)]
        return at[side.table[self.data[at - 1]] & side.table[self.data[at + 1]]]

    def having(self, cls: ByteClass) -> np.ndarray:
        """Positions of bytes of the class ``cls`` (found once per scan and class)."""
        found = self._found.get(cls.translation)
        if found is None:
            found = self._found[cls.translation] = np.flatnonzero(cls.mask(self.raw))
        return found


class Needles:
    """Byte strings of three bytes or more, searched at once: their first byte through a byte class, the first
    two through a table lookup at those positions, the third through a set, and only the few positions left by a
    comparison each. One pass instead
    of one ``bytes.find`` per needle, each a scan of the whole chunk."""

    def __init__(self, needles: Iterable[bytes]) -> None:
        self.needles = tuple(needles)
        if any(len(n) < 3 for n in self.needles):
            raise ValueError("Needles are three bytes or more")
        self.first = ByteClass(bytes({n[0] for n in self.needles}))
        self.pairs = np.zeros(1 << 16, dtype=bool)
        self.pairs[[n[0] << 8 | n[1] for n in self.needles]] = True
        self.triples = np.array(sorted({n[0] << 16 | n[1] << 8 | n[2] for n in self.needles}), dtype=np.uint32)

    def find(self, raw: bytes, data: np.ndarray) -> np.ndarray:
        if len(data) < 3:
            return np.zeros(0, dtype=np.int64)
        at = np.flatnonzero(self.first.mask(raw[:-2]))
        pairs = (data[at].astype(np.uint32) << 8) | data[at + 1]
        paired = self.pairs[pairs]
        at, pairs = at[paired], pairs[paired]
        at = at[np.isin((pairs << 8) | data[at + 2], self.triples)]
        return np.array([p for p in at.tolist() if any(raw.startswith(n, p) for n in self.needles)], dtype=np.int64)
