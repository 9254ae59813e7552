"""Near-duplicate detection: MinHash signatures (datasketch's scheme) + a compact, verified LSH band index.

Signatures follow datasketch's ``affine32`` MinHash scheme with datasketch's own permutations
(``MinHash(num_perm, seed=1).permutations``) and MurmurHash3 pre-mix, and the band/row split is
datasketch's optimizer's; each is made here and compared with datasketch's in tests/test_dedup.py
(datasketch itself is a test dependency: importing it imports scipy). Two things are ours, both for
scale (measured in benchmarks/):

* ``batch_signatures`` computes the signatures of a whole chunk of documents in a few numpy
  operations. ``MinHash.update_batch`` works one document per call, and at a million records
  its per-call overhead (plus hashing every shingle string in Python) dominated the clean
  stage. tests/test_dedup.py checks that the result equals datasketch's ``MinHash`` fed the
  same shingle hashes, value for value.
* no ``MinHashLSH``: it was measured here at ~1.9 KB per indexed record (≈1.9 GB at a million).
  ``band_keys`` gives each band one 64-bit key, and :mod:`tuneline.clusters` groups records by
  those keys bucket by bucket and verifies every candidate pair against the two signatures.
  Banding is therefore weighted towards recall (false negatives cost 0.7, false positives 0.3):
  the verification removes the extra false positives again.

Shingles are word n-grams of the case-folded text with punctuation dropped; word characters
are ASCII letters, digits, '_' and any non-ASCII UTF-8 byte.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from tuneline.textscan import ByteClass, runs

_SEED = 1
_WEIGHTS = (0.3, 0.7)  # (false positive, false negative) weights for the band/row optimizer
_DTYPE = np.uint32  # datasketch's affine32 scheme

_WORD_BYTE = ByteClass(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_" + bytes(range(0x80, 0x100)))
_P = np.uint64(0x100000001B3)  # odd, hence invertible modulo 2**64
_P_INV = np.uint64(pow(int(_P), -1, 2**64))
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9))
_powers_cache: dict[str, np.ndarray] = {}


@lru_cache(maxsize=8)
def permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutations for ``num_perm`` (``MinHash(num_perm, seed=1, scheme="affine32").permutations``):
    ``a`` odd, then ``b``, drawn from ``RandomState(1)`` (tests/test_dedup.py compares them with datasketch's).
    Made here, not imported: importing datasketch imports scipy, a quarter of a second of every data stage."""
    gen = np.random.RandomState(_SEED)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    return a, gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, the affine32 scheme's pre-mix (a bijection on uint32; wrapping products)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for ``threshold``: datasketch's optimizer (the first (b, r), b then r ascending, with b·r ≤
    num_perm, of least weighted false positive and false negative probability), its two integrals of the banding
    curve by Gauss-Legendre quadrature: the curve is a polynomial of degree b·r, which num_perm/2 + 1 nodes
    integrate exactly (tests/test_dedup.py checks the choice equals datasketch's, which integrates with scipy)."""
    x, w = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    b, r = (np.array(column, dtype=np.float64).reshape(-1, 1) for column in zip(*pairs, strict=True))
    below = threshold / 2 * (x + 1)  # the nodes on [0, threshold], then on [threshold, 1]
    above = threshold + (1 - threshold) / 2 * (x + 1)
    false_positive = (1 - (1 - below**r) ** b) @ w * (threshold / 2)
    false_negative = (1 - (1 - (1 - above**r) ** b)) @ w * ((1 - threshold) / 2)
    error = false_positive * _WEIGHTS[0] + false_negative * _WEIGHTS[1]
    return pairs[int(np.argmin(error))]


def _cumpow(base: np.uint64, size: int) -> np.ndarray:
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=out[1:])
    return out


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i modulo 2**64 for i < n (wrapping uint64 arithmetic), grown on demand."""
    if len(_powers_cache.get("p", ())) < n:
        size = max(n, 2 * len(_powers_cache.get("p", ())), 1 << 16)
        _powers_cache["p"], _powers_cache["inv"] = _cumpow(_P, size), _cumpow(_P_INV, size)
    return _powers_cache["p"], _powers_cache["inv"]


# Scripts written without spaces between words (Chinese, Japanese kana, Thai, Lao, Myanmar, Khmer) and the CJK
# punctuation and full-width forms. Without spaces, a whole Chinese sentence is one "word" and an edit of three
# characters changes every shingle of it; each such character is made a word of its own instead, so the
# word n-grams over them are character n-grams (text in spaced scripts is unchanged).
_UNSPACED = re.compile(
    r"([\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef])"
)


def segment(text: str) -> str:
    """``text`` with every character of an unspaced script set apart by spaces (ASCII text: as it is)."""
    if text.isascii() or not _UNSPACED.search(text):
        return text
    return _UNSPACED.sub(r" \1 ", text)


def word_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each word's polynomial hash: the sum of its bytes times P**(offset in the word), plus its length.

    The bytes are weighted by P**i at once and summed per word by one reduceat over [start, end) and the gaps
    between (dropped), then shifted back by P**-start (the last end may be the array's end: one more, zero,
    element)."""
    pw, inv = _powers(len(data) + 1)
    with np.errstate(over="ignore"):
        weighted = np.empty(len(data) + 1, dtype=np.uint64)
        weighted[-1] = 0
        np.multiply(data, pw[: len(data)], out=weighted[:-1])
        edges = np.empty(2 * len(starts), dtype=np.int64)
        edges[0::2], edges[1::2] = starts, ends
        sums = np.add.reduceat(weighted, edges)[0::2] if len(edges) else np.zeros(0, dtype=np.uint64)
        return sums * inv[starts] + (ends - starts).astype(np.uint64)


def encode_documents(texts: list[str]) -> tuple[bytes, np.ndarray]:
    """The documents as shingles see them, end to end: segmented (``segment``), case-folded UTF-8, each followed by
    a NUL (no word byte: words never span documents); and where each starts."""
    encoded = [segment(t).casefold().encode("utf-8") for t in texts]
    doc_start = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded) > 1:
        np.cumsum([len(e) + 1 for e in encoded[:-1]], out=doc_start[1:])
    return b"\x00".join(encoded), doc_start


def batch_shingles(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every document's word n-grams, and the document index of each (:func:`shingles` of
    :func:`encode_documents`)."""
    return shingles(*encode_documents(texts), n)


def shingles(raw: bytes, doc_start: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every document's word n-grams, and the document index of each.

    ``raw`` holds the documents end to end, already case-folded and segmented (:func:`encode_documents`, or
    ASCII text lowered, which is the same bytes), each starting at ``doc_start`` and running to the next one's
    start; a byte between documents must be no word byte. Words of unspaced scripts are single characters, so
    their n-grams are character n-grams.

    Each word gets a polynomial hash from prefix sums over the bytes; n consecutive words of the same document
    are mixed into one n-gram hash. A document with fewer than n words yields one hash of all its words (a
    document with none, a constant).
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    starts, ends = runs(_WORD_BYTE.mask(raw))  # where each word opens and closes
    # documents are in order: the few document starts placed among the many word starts give each word's own
    per_doc = np.diff(np.append(np.searchsorted(starts, doc_start), len(starts)))
    word_doc = np.repeat(np.arange(len(doc_start), dtype=np.int64), per_doc)
    words = word_hashes(data, starts, ends)
    with np.errstate(over="ignore"):
        counts = np.bincount(word_doc, minlength=len(doc_start))
        gram_hash, gram_doc = [], []
        if len(words) >= n:
            m = len(words) - n + 1
            g = words[:m] * _MIX[0]
            for j in range(1, n):
                g = (g ^ (g >> np.uint64(29))) + words[j : m + j] * _MIX[j % 3]
            same_doc = word_doc[:m] == word_doc[n - 1 :]
            gram_hash.append(g[same_doc])
            gram_doc.append(word_doc[:m][same_doc])
        short = np.flatnonzero(counts < n)
        if len(short):  # documents with fewer than n words: one gram over all their words
            first = np.searchsorted(word_doc, short)
            for d, f in zip(short.tolist(), first.tolist(), strict=True):
                g = np.uint64(0x5F3759DF)
                for j in range(int(counts[d])):
                    g = (g ^ (g >> np.uint64(29))) + words[f + j] * _MIX[j % 3]
                gram_hash.append(np.array([g], dtype=np.uint64))
                gram_doc.append(np.array([d], dtype=np.int64))
        hashes = np.concatenate(gram_hash) if gram_hash else np.zeros(0, dtype=np.uint64)
        docs = np.concatenate(gram_doc) if gram_doc else np.zeros(0, dtype=np.int64)
        hashes ^= hashes >> np.uint64(32)
    if len(docs) > 1 and bool((docs[1:] < docs[:-1]).any()):  # only short documents' grams come out of order
        order = np.argsort(docs, kind="stable")
        hashes, docs = hashes[order], docs[order]
    return hashes.astype(np.uint32), docs


# grams per permutation step: (num_perm, grams) uint32 is 1 MiB at 64 permutations and stays in L2 (a chat record's
# signature: 7.3 µs with 16k grams a step, 6.5 with 4k; fewer grams pay numpy's per-call cost too often)
_SLICE_GRAMS = 1 << 12


def batch_signatures(texts: list[str], num_perm: int, n: int) -> np.ndarray:
    """MinHash signatures, shape (len(texts), num_perm): datasketch's affine32 scheme over ``batch_shingles``."""
    return signatures(*encode_documents(texts), num_perm, n)


def signatures(raw: bytes, doc_start: np.ndarray, num_perm: int, n: int) -> np.ndarray:
    """MinHash signatures of the documents of ``raw`` (as :func:`shingles` takes them), one row per document.

    The permuted hashes of all grams of a chunk would take num_perm x grams x 4 bytes (20 MiB for 1,024 chat
    records at 64 permutations); they are made for a slice of documents at a time instead."""
    hashes, docs = shingles(raw, doc_start, n)
    count = len(doc_start)
    a, b = (p.reshape(-1, 1) for p in permutations(num_perm))
    mixed = fmix32(hashes).reshape(1, -1)
    first = np.searchsorted(docs, np.arange(count))  # every document has at least one gram
    ends = np.append(first[1:], len(hashes))
    out = np.empty((count, num_perm), dtype=_DTYPE)
    buf = np.empty((num_perm, 0), dtype=_DTYPE)  # one buffer for every slice (grown for a longer document)
    lo = 0
    while lo < count:
        hi = max(lo + 1, int(np.searchsorted(ends, first[lo] + _SLICE_GRAMS, side="right")))
        g0, g1 = int(first[lo]), int(ends[hi - 1])
        if g1 - g0 > buf.shape[1]:
            buf = np.empty((num_perm, max(g1 - g0, min(_SLICE_GRAMS, len(hashes)))), dtype=_DTYPE)
        with np.errstate(over="ignore"):
            # (num_perm, grams): the per-document min then runs along contiguous memory
            phv = np.multiply(a, mixed[:, g0:g1], out=buf[:, : g1 - g0])
            phv += b
        out[lo:hi] = np.minimum.reduceat(phv, first[lo:hi] - g0, axis=1).T
        lo = hi
    return out


_BAND_MUL = np.uint64(0xFF51AFD7ED558CCD)


def band_keys(sigs: np.ndarray, threshold: float) -> np.ndarray:
    """LSH band keys, shape (n, bands): each band's rows mixed into one uint64, vectorized over records."""
    bands, rows = lsh_params(threshold, sigs.shape[1])
    keys = np.empty((sigs.shape[0], bands), dtype=np.uint64)
    wide = sigs.astype(np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(sigs.shape[0], np.uint64(b) * _MIX[0] + _MIX[1], dtype=np.uint64)
            for j in range(b * rows, (b + 1) * rows):
                h = (h ^ wide[:, j]) * _BAND_MUL
            keys[:, b] = h ^ (h >> np.uint64(31))
    return keys


def batch_near_keys(
    texts: list[str], threshold: float, num_perm: int, shingle_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """Signatures (n, num_perm) uint32 and band keys (n, bands) uint64 for a chunk of texts."""
    return near_keys(*encode_documents(texts), threshold, num_perm, shingle_words)


def near_keys(
    raw: bytes, doc_start: np.ndarray, threshold: float, num_perm: int, shingle_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`batch_near_keys` of documents given end to end (as :func:`shingles` takes them)."""
    if not len(doc_start):
        return np.zeros((0, num_perm), dtype=_DTYPE), band_keys(np.zeros((0, num_perm), dtype=_DTYPE), threshold)
    sigs = signatures(raw, doc_start, num_perm, shingle_words)
    return sigs, band_keys(sigs, threshold)
