"""Duplicate clusters, staged so that every step runs on a bounded share of the data, on any engine.

The dedup of the clean stage and the leakage audit of the split stage run the same four steps:

1. **keys per block**: each block task computes an exact key and LSH band keys per record and writes them as
   ``(key, rank)`` rows, already sorted into hash buckets (:func:`partition`);
2. **group by key, per bucket**: a bucket task reads its slice from every block, sorts it and links each
   record of a group to the group's first record, the one of lowest rank (:func:`star_edges`);
3. **verify**: a candidate pair counts only when the two MinHash signatures agree in at least ``threshold``
   of their positions (:func:`similar`);
4. **one per cluster**: connected components of the verified pairs (:func:`components`); each keeps its
   record of lowest rank, the others are removed as its duplicates.

A rank is a record's position in the stage's input, so which record survives is fixed by the input alone:
not by the arrival order of block results, the number of workers or the engine. Memory per step is one
bucket (``bucket_bits`` is chosen from the input size so that a bucket stays near :data:`BUCKET_ROWS` rows)
plus the pairs found, which grow with the number of duplicates, not with the number of records.
"""

from __future__ import annotations

import math

import numpy as np

ROW = np.dtype([("key", "<u8"), ("rank", "<i8")])
BUCKET_ROWS = 1 << 19  # ~8 MiB of rows per bucket task
MIN_BUCKET_BITS = 4


def bucket_bits(rows: int) -> int:
    """Bits of the key that pick a bucket, for about ``rows`` rows in all."""
    return max(MIN_BUCKET_BITS, math.ceil(math.log2(max(rows, 1) / BUCKET_ROWS + 1)) + 1)


def partition(keys: np.ndarray, ranks: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(key, rank)`` rows ordered by bucket, and each bucket's start (``offsets[b]:offsets[b+1]``)."""
    rows = np.empty(len(keys), dtype=ROW)
    rows["key"], rows["rank"] = keys, ranks
    bucket = (keys >> np.uint64(64 - bits)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    offsets = np.zeros((1 << bits) + 1, dtype=np.int64)
    np.cumsum(np.bincount(bucket, minlength=1 << bits), out=offsets[1:])
    return rows[order], offsets


def star_edges(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every group of rows sharing a key: (first rank, other rank) pairs, first = lowest rank."""
    if len(rows) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = rows[np.lexsort((rows["rank"], rows["key"]))]
    keys, ranks = rows["key"], rows["rank"]
    new_group = np.empty(len(rows), dtype=bool)
    new_group[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new_group[1:])
    group_first = np.maximum.accumulate(np.where(new_group, np.arange(len(rows)), 0))
    member = ~new_group & (ranks != ranks[group_first])  # a record listed twice in one group is not its own pair
    return ranks[group_first[member]], ranks[member]


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(a):
        return a, b
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def similar(sig_a: np.ndarray, sig_b: np.ndarray, threshold: float) -> np.ndarray:
    """Estimated Jaccard similarity (share of equal MinHash values) at or above ``threshold``, per pair."""
    if not len(sig_a):
        return np.zeros(0, dtype=bool)
    return np.count_nonzero(sig_a == sig_b, axis=1) >= threshold * sig_a.shape[1] - 1e-9


def components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the pairs: (member, root) for every non-root rank; root = lowest rank."""
    if not len(a):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nodes = np.unique(np.concatenate([a, b]))
    ia, ib = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    label = np.arange(len(nodes))  # nodes are sorted by rank: the lowest label is the lowest rank
    while True:
        low = np.minimum(label[ia], label[ib])
        new = label.copy()
        np.minimum.at(new, ia, low)
        np.minimum.at(new, ib, low)
        new = new[new]  # pointer jumping
        if np.array_equal(new, label):
            break
        label = new
    member = label != np.arange(len(nodes))
    return nodes[member], nodes[label[member]]
