"""Deterministic assignment of records to train/val/test for each split strategy.

Every choice is a function of (seed, record id) through xxhash, so the same input and
config give the same split on any machine, and adding records does not reshuffle the
existing ones more than the ratios require.
"""

from __future__ import annotations

from collections import defaultdict
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


def assign_random(hashes: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """The ``random`` strategy from the records' ``rank(seed, id)`` hashes alone: 1 byte per record.

    The same assignment as :func:`assign` (a stable sort by hash, then the ratio cuts), without sorting: each cut
    is the k-th smallest hash, found by a histogram (:func:`_kth`), and the records equal to it are taken in input
    order, as the stable sort would. Beside the hashes, memory is a chunk and the histogram, whatever N is.
    """
    r = cfg.ratios
    n = len(hashes)
    n_train = round(n * r.train)
    n_val = round(n * (r.train + r.val)) - n_train
    out = np.full(n, 2, dtype=np.uint8)
    _mark_first(hashes, n_train + n_val, out, 1)
    _mark_first(hashes, n_train, out, 0)
    return out


_CHUNK = 1 << 20
_TOP = np.uint64(48)  # the histogram's buckets: the top 16 bits of a hash


def _kth(hashes: np.ndarray, k: int) -> tuple[int, int]:
    """(t, m): t is the k-th smallest hash (1-based); the first k in (hash, position) order are those below t
    and the first m equal to it."""
    counts = np.zeros(1 << 16, dtype=np.int64)
    for lo in range(0, len(hashes), _CHUNK):
        counts += np.bincount((hashes[lo : lo + _CHUNK] >> _TOP).astype(np.int64), minlength=1 << 16)
    upto = np.cumsum(counts)
    bucket = int(np.searchsorted(upto, k))
    below = int(upto[bucket - 1]) if bucket else 0
    inside = [c[(c >> _TOP) == bucket] for c in (hashes[lo : lo + _CHUNK] for lo in range(0, len(hashes), _CHUNK))]
    values = np.sort(np.concatenate(inside))
    t = values[k - below - 1]
    return int(t), k - below - int(np.searchsorted(values, t, side="left"))


def _mark_first(hashes: np.ndarray, k: int, out: np.ndarray, value: int) -> None:
    """``out[i] = value`` for the first ``k`` records in (hash, position) order."""
    if k <= 0:
        return
    if k >= len(hashes):
        out[:] = value
        return
    t, ties = _kth(hashes, k)
    cut = np.uint64(t)
    for lo in range(0, len(hashes), _CHUNK):
        chunk, part = hashes[lo : lo + _CHUNK], out[lo : lo + _CHUNK]
        part[chunk < cut] = value
        equal = np.flatnonzero(chunk == cut)[:ties]
        part[equal] = value
        ties -= len(equal)


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
