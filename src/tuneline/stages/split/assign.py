"""Deterministic assignment of records to train/val/test for each split strategy.

Every choice is a function of (seed, record id) through xxhash, so the same input and
config give the same split on any machine, and adding records does not reshuffle the
existing ones more than the ratios require.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np
import xxhash

from tuneline.config.schema import SplitConfig
from tuneline.errors import TunelineError

SPLITS = ("train", "val", "test")


class SplitError(TunelineError, RuntimeError):
    """The split cannot be made as configured (missing field, unparsable timestamps, leakage)."""


def field_value(rec: dict[str, Any], path: str) -> Any:
    node: Any = rec
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def rank(seed: int, key: str) -> int:
    return xxhash.xxh3_64_intdigest(key.encode(), seed=seed)


def _cut(order: list[int], ratios: tuple[float, float, float], assignment: list[int]) -> None:
    n = len(order)
    n_train = round(n * ratios[0])
    n_val = round(n * (ratios[0] + ratios[1])) - n_train
    for pos, idx in enumerate(order):
        assignment[idx] = 0 if pos < n_train else 1 if pos < n_train + n_val else 2


#: The hashes of the records, in input order, as consecutive chunks; called once per pass (three passes).
HashChunks = Callable[[], Iterable[np.ndarray]]


def assign_random(hashes: np.ndarray | HashChunks, cfg: SplitConfig) -> np.ndarray:
    """The ``random`` strategy from the records' ``rank(seed, id)`` hashes alone: 1 byte per record.

    The same assignment as :func:`assign` (a stable sort by hash, then the ratio cuts), without sorting: each cut
    is the k-th smallest hash, found by a histogram (:func:`_cuts`), and the records equal to it are taken in
    input order, as the stable sort would. ``hashes`` is an array or, so that the caller need not hold them, a
    function giving them chunk by chunk (the split stage reads its block tasks' scratch files). Beside the
    result, memory is a chunk and the histogram, whatever N is.
    """
    chunks = _chunked(hashes) if isinstance(hashes, np.ndarray) else hashes
    counts = np.zeros(1 << 16, dtype=np.int64)  # the histogram: how many hashes in each bucket
    for chunk in chunks():
        counts += np.bincount((chunk >> _TOP).astype(np.int64), minlength=1 << 16)
    n = int(counts.sum())
    r = cfg.ratios
    n_train = round(n * r.train)
    n_val = round(n * (r.train + r.val)) - n_train
    cuts = _cuts(chunks, counts, (n_train + n_val, n_train))  # val first: train's cut overrides it where both take
    out = np.full(n, 2, dtype=np.uint8)
    ties = [m for _, m in cuts]
    lo = 0
    for chunk in chunks():
        part = out[lo : lo + len(chunk)]
        for j, (value, (t, _)) in enumerate(zip((1, 0), cuts, strict=True)):
            cut = np.uint64(t)
            part[chunk < cut] = value
            equal = np.flatnonzero(chunk == cut)[: ties[j]]
            part[equal] = value
            ties[j] -= len(equal)
        lo += len(chunk)
    return out


_CHUNK = 1 << 20
_TOP = np.uint64(48)  # the histogram's buckets: the top 16 bits of a hash


def _chunked(hashes: np.ndarray) -> HashChunks:
    return lambda: (hashes[lo : lo + _CHUNK] for lo in range(0, len(hashes), _CHUNK))


def _cuts(chunks: HashChunks, counts: np.ndarray, ks: tuple[int, ...]) -> list[tuple[int, int]]:
    """Per k, (t, m): the first k records in (hash, position) order are those below t and the first m equal to t
    (k <= 0: none; k >= n: all). ``counts`` is the histogram of the hashes; one pass gathers the values of the
    buckets that hold a k-th smallest."""
    upto = np.cumsum(counts)
    n = int(upto[-1])
    inside = [k for k in ks if 0 < k < n]
    buckets = {k: int(np.searchsorted(upto, k)) for k in inside}
    wanted = np.array(sorted(set(buckets.values())), dtype=np.uint64)
    found = [c[np.isin(c >> _TOP, wanted)] for c in chunks()] if inside else []
    values = np.sort(np.concatenate(found)) if found else np.zeros(0, np.uint64)
    cuts = []
    for k in ks:
        if k <= 0 or k >= n:
            cuts.append((0, 0) if k <= 0 else (2**64 - 1, n))
            continue
        bucket = buckets[k]
        below = int(upto[bucket - 1]) if bucket else 0
        mine = values[(values >> _TOP) == bucket]
        t = mine[k - below - 1]
        cuts.append((int(t), k - below - int(np.searchsorted(mine, t, side="left"))))
    return cuts


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def assign(keys: list[tuple[str, Any]], cfg: SplitConfig) -> list[int]:
    """``keys`` holds (record id, field value) per record; returns a split index (0/1/2) per record."""
    r = cfg.ratios
    ratios = (r.train, r.val, r.test)
    assignment = [0] * len(keys)
    if cfg.strategy == "random":
        _cut(sorted(range(len(keys)), key=lambda i: rank(cfg.seed, keys[i][0])), ratios, assignment)
    elif cfg.strategy == "stratified":
        for members in _by_value(keys).values():
            _cut(sorted(members, key=lambda i: rank(cfg.seed, keys[i][0])), ratios, assignment)
    elif cfg.strategy == "temporal":
        _cut(_by_time(keys, cfg), ratios, assignment)
    else:
        _assign_groups(_by_value(keys), len(keys), cfg.seed, ratios, assignment)
    return assignment


def _by_value(keys: list[tuple[str, Any]]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (_, value) in enumerate(keys):
        groups[str(value)].append(i)
    return groups


def _by_time(keys: list[tuple[str, Any]], cfg: SplitConfig) -> list[int]:
    """Record indices oldest first (ties in seeded random order); every record must carry a timestamp."""
    stamps = []
    for i, (rid, value) in enumerate(keys):
        ts = _timestamp(value)
        if ts is None:
            raise SplitError(
                f"split.field {cfg.field!r} of record {rid} is {value!r}, not a timestamp "
                "(ISO 8601 or epoch seconds); temporal splits need it on every record"
            )
        stamps.append((ts, rank(cfg.seed, rid), i))
    return [i for _, _, i in sorted(stamps)]


def _assign_groups(
    groups: dict[str, list[int]], n: int, seed: int, ratios: tuple[float, float, float], assignment: list[int]
) -> None:
    """Every record of a group lands in the same split: the one where the group's midpoint falls on the
    cumulative ratio line, groups taken in seeded random order."""
    seen = 0
    for g in sorted(groups, key=lambda g: rank(seed, g)):
        members = groups[g]
        mid = (seen + len(members) / 2) / max(n, 1)
        split = 0 if mid < ratios[0] else 1 if mid < ratios[0] + ratios[1] else 2
        for i in members:
            assignment[i] = split
        seen += len(members)
