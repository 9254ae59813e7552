"""The bucket and verify tasks of :mod:`tuneline.clusters`, reading what block tasks wrote to scratch.

Shared by the clean stage's dedup and the split stage's leakage audit: a block task writes, per kind of key,
``(key, rank)`` rows sorted by bucket (``<prefix>.<name>``) with the bucket offsets in its result, and the
MinHash signatures of its records (``<prefix>.sig``, row i = rank ``<prefix>.sr``\\[i]).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tuneline.clusters import ROW, partition, similar, star_edges, unique_pairs
from tuneline.engine.blocks import read_array, read_rows, write_array
from tuneline.engine.executors import Executor, release_freed_memory

VERIFY_PAIRS = 1 << 14


@dataclass(frozen=True, slots=True)
class KeyedBlock:
    """What a block task wrote for the dedup steps: its scratch prefix, rank range and bucket offsets."""

    prefix: str
    first_rank: int
    end_rank: int
    offsets: dict[str, np.ndarray]  # key kind ("ex", "bd", ...) → bucket offsets (rows of <prefix>.<kind>)
    signed: int  # rows of <prefix>.sig


def write_keys(prefix: str, name: str, keys: np.ndarray, ranks: np.ndarray, bits: int) -> np.ndarray:
    rows, offsets = partition(keys, ranks, bits)
    write_array(f"{prefix}.{name}", rows)
    return offsets


def write_signatures(prefix: str, ranks: np.ndarray, sigs: np.ndarray) -> int:
    write_array(f"{prefix}.sr", ranks.astype(np.int64))
    write_array(f"{prefix}.sig", sigs)
    return len(ranks)


@dataclass(frozen=True, slots=True)
class BucketTask:
    slices: tuple[tuple[str, int, int], ...]  # (uri, first row, end row) per block
    # a file of sorted int64 ranks to leave out (exact duplicates, before the near step): a path, as ``mark``
    exclude: str | None = None
    # a file of one byte per rank (all ranks), 0 for the "reference" side (split: train); None = no sides. A path,
    # not the ranks themselves: every bucket task would otherwise carry an array that grows with the corpus
    mark: str | None = None


def _bucket_rows(task: BucketTask) -> np.ndarray:
    parts = [read_array(uri, ROW, lo, hi) for uri, lo, hi in task.slices if hi > lo]
    rows = np.concatenate(parts) if parts else np.zeros(0, dtype=ROW)
    if task.exclude is not None and len(rows):
        rows = rows[~_members(rows["rank"], read_array(task.exclude, np.int64))]
    return rows


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted set, by binary search: ``isin`` sorts the set again in every
    bucket task, and the set (the exact duplicates) grows with the corpus while a bucket does not."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[pos] == values


def bucket_pairs(task: BucketTask) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs of one bucket: (first rank of a key group, another rank of it).

    A bucket task's arrays are the largest a worker makes, and few: they go back to the system when it ends
    (a worker otherwise keeps freed memory for its next block:
    :func:`~tuneline.engine.executors.reuse_freed_memory`)."""
    try:
        return _bucket_pairs(task)
    finally:
        release_freed_memory()


def _bucket_pairs(task: BucketTask) -> tuple[np.ndarray, np.ndarray]:
    rows = _bucket_rows(task)
    if task.mark is None:
        return unique_pairs(*star_edges(rows))
    # reference mode: each non-reference record is paired with the first reference record of its group
    ref = read_array(task.mark, np.uint8)[rows["rank"]] == 0
    refs, others = rows[ref], rows[~ref]
    if not len(refs) or not len(others):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    refs = refs[np.lexsort((refs["rank"], refs["key"]))]
    first = np.ones(len(refs), dtype=bool)
    first[1:] = refs["key"][1:] != refs["key"][:-1]
    refs = refs[first]
    pos = np.searchsorted(refs["key"], others["key"])
    pos = np.minimum(pos, len(refs) - 1)
    hit = refs["key"][pos] == others["key"]
    return unique_pairs(refs["rank"][pos[hit]], others["rank"][hit])


def bucket_tasks(
    blocks: Sequence[KeyedBlock], name: str, exclude: str | None = None, mark: str | None = None
) -> Iterator[BucketTask]:
    """One task per bucket, made as the executor takes them: a task names a slice of every block, so all of
    them at once would be buckets x blocks slices, both of which grow with the corpus (14 MiB at 4M records)."""
    n = len(blocks[0].offsets[name]) - 1 if blocks else 0
    for p in range(n):
        slices = tuple((f"{b.prefix}.{name}", int(b.offsets[name][p]), int(b.offsets[name][p + 1])) for b in blocks)
        yield BucketTask(slices, exclude, mark)


@dataclass(frozen=True, slots=True)
class VerifyTask:
    a: np.ndarray
    b: np.ndarray
    threshold: float
    num_perm: int
    blocks: tuple[tuple[str, int, int], ...]  # (prefix, first rank, end rank)


def _signatures(task: VerifyTask, ranks: np.ndarray) -> np.ndarray:
    out = np.empty((len(ranks), task.num_perm), dtype=np.uint32)
    starts = np.array([lo for _, lo, _ in task.blocks])
    which = np.searchsorted(starts, ranks, side="right") - 1
    for bi in np.unique(which):
        prefix = task.blocks[bi][0]
        sel = np.flatnonzero(which == bi)
        signed = read_array(f"{prefix}.sr", np.int64)
        rows = np.searchsorted(signed, ranks[sel])
        out[sel] = read_rows(f"{prefix}.sig", np.uint32, rows, task.num_perm)
    return out


def verify_pairs(task: VerifyTask) -> np.ndarray:
    """Which candidate pairs are near duplicates by their signatures (memory handed back as bucket tasks do)."""
    try:
        return similar(_signatures(task, task.a), _signatures(task, task.b), task.threshold)
    finally:
        release_freed_memory()


_MERGE_AT = 1 << 17  # pairs gathered before they are merged into the unique ones found so far (1 MiB)
_LOW = np.int64(0xFFFFFFFF)


def _concat(parts: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The unique pairs of all ``parts`` (one per bucket task), ordered by (a, b), merged as they arrive.

    A pair sharing several band keys comes from several buckets: kept whole, the driver's memory would grow
    with every bucket of a large corpus. Each pair is packed into one int64 (ranks stay below 2**32) and the
    packed keys are merged every 131,072 pairs, so the driver holds the unique pairs and one batch at most.
    """
    merged, batch, size = np.zeros(0, np.int64), [], 0
    for a, b in parts:
        if not len(a):
            continue
        if max(int(a.max()), int(b.max())) > _LOW:
            raise ValueError("ranks of 2**32 records or more cannot be packed")
        batch.append((a.astype(np.int64) << 32) | b.astype(np.int64))
        size += len(a)
        if size >= _MERGE_AT:
            merged, batch, size = np.unique(np.concatenate([merged, *batch])), [], 0
    if batch:
        merged = np.unique(np.concatenate([merged, *batch]))
    return merged >> 32, merged & _LOW


def exact_groups(
    ex: Executor, blocks: Sequence[KeyedBlock], name: str = "ex", mark: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(first, duplicate) rank pairs of records with equal exact keys."""
    return _concat(ex.imap(bucket_pairs, bucket_tasks(blocks, name, mark=mark)))


def near_pairs(
    ex: Executor,
    blocks: Sequence[KeyedBlock],
    threshold: float,
    num_perm: int,
    exclude: np.ndarray | None = None,
    mark: str | None = None,
    name: str = "bd",
) -> tuple[np.ndarray, np.ndarray]:
    """Verified near-duplicate pairs: candidates from shared band keys, kept when the signatures agree."""
    excluded = None
    if exclude is not None and len(exclude) and blocks:
        excluded = f"{blocks[0].prefix}.{name}.exclude"  # beside the first block's scratch files, removed with them
        write_array(excluded, np.sort(exclude).astype(np.int64))
    a, b = _concat(ex.imap(bucket_pairs, bucket_tasks(blocks, name, excluded, mark)))
    layout = tuple((blk.prefix, blk.first_rank, blk.end_rank) for blk in blocks)
    tasks = (
        VerifyTask(a[i : i + VERIFY_PAIRS], b[i : i + VERIFY_PAIRS], threshold, num_perm, layout)
        for i in range(0, len(a), VERIFY_PAIRS)
    )
    masks = list(ex.imap(verify_pairs, tasks))
    keep = np.concatenate(masks) if masks else np.zeros(0, dtype=bool)
    return a[keep], b[keep]


def by_block(ranks: np.ndarray, blocks: Sequence[KeyedBlock]) -> Iterator[tuple[int, np.ndarray]]:
    """(block position, indices into ``ranks``) for the ranks that fall in each block."""
    starts = np.array([b.first_rank for b in blocks])
    which = np.searchsorted(starts, ranks, side="right") - 1
    for bi in np.unique(which):
        yield int(bi), np.flatnonzero(which == bi)
