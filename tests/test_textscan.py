"""The chunk-wide primitives the data stages' speed rests on, against the plain Python they replace.

Each answer of :mod:`tuneline.textscan` is checked against ``bytes.find`` or a regex on random text built to sit
on the edges (runs of digits broken by one separator too many, needles at the ends of texts); the local
executor's bounded window against the order and laziness its callers rely on; the pair merge against
``np.unique`` over stacked rows.
"""

from __future__ import annotations

import random
import re
import threading

import numpy as np
import pytest

from tuneline.engine.cluster_tasks import _concat
from tuneline.engine.executors import LocalExecutor
from tuneline.textscan import ByteClass, Needles, TextScan, runs

_DIGIT = ByteClass(b"0123456789")


def _texts(alphabet: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(n)]


def _owners(scan: TextScan, positions: np.ndarray) -> set[int]:
    return set(np.flatnonzero(scan.answer([positions]) & scan.ascii).tolist())


@pytest.mark.parametrize(("count", "gap", "links"), [(7, 2, " .-"), (13, 1, " -"), (9, 1, "-"), (3, 0, "-")])
def test_runs_of_digits_are_the_regex_runs(count: int, gap: int, links: str):
    texts = _texts([*"0123456789", *links, "a", "(", "é"], 4000, seed=count)
    scan = TextScan(texts)
    pattern = re.compile("[0-9](?:[" + re.escape(links) + "]{0," + str(gap) + "}[0-9]){" + str(count - 1) + "}")
    expected = {i for i, t in enumerate(texts) if t.isascii() and pattern.search(t)}
    assert _owners(scan, scan.runs_of(_DIGIT, ByteClass(links.encode()), count, gap)) == expected
    assert 0 < len(expected) < len(texts)


def test_runs_are_the_maximal_runs_of_true():
    rng = random.Random(5)
    for size in (0, 1, 2, 3, 17, 1000):
        for density in (0.0, 0.3, 0.9, 1.0):
            mask = np.array([rng.random() < density for _ in range(size)], dtype=bool)
            starts, ends = runs(mask)
            text = "".join("x" if v else "." for v in mask.tolist())
            expected = [(m.start(), m.end()) for m in re.finditer("x+", text)]
            assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == expected


def test_needles_are_found_where_bytes_find_finds_them():
    needles = (b"sk-", b"ghp_", b"PRIVATE KEY", b"eyJ", b"xox")
    texts = _texts(["s", "k", "-", "g", "h", "p", "_", "e", "y", "J", "x", "o", "PRIVATE KEY", " ", "\n"], 3000, 5)
    scan = TextScan(texts)
    expected = {i for i, t in enumerate(texts) if any(n.decode() in t for n in needles)}
    found = scan.find_any(Needles(needles))
    assert _owners(scan, found) == expected and len(expected) > 100
    raw = scan.raw
    assert sorted(found.tolist()) == sorted(p for p in range(len(raw)) if any(raw.startswith(n, p) for n in needles))


def test_sequences_and_flanks():
    texts = _texts(["A", "B", "1", "2", ".", ":", "f", " "], 3000, 9)
    scan = TextScan(texts)
    upper = ByteClass(b"AB")
    assert _owners(scan, scan.sequence((upper, upper, _DIGIT, _DIGIT))) == {
        i for i, t in enumerate(texts) if re.search(r"[AB]{2}[0-9]{2}", t)
    }
    assert _owners(scan, scan.flanked(b".", _DIGIT)) == {i for i, t in enumerate(texts) if re.search(r"\d\.\d", t)}


def test_non_ascii_texts_always_take_the_exact_path():
    scan = TextScan(["plain", "naïve ٣٣٣٣٣٣٣", "", "１２３４５６７"])
    assert scan.answer([]).tolist() == [False, True, False, True]


def _square(x: int) -> int:
    return x * x


def test_the_local_executor_keeps_order_and_takes_tasks_as_workers_free_up():
    taken, lock = [], threading.Lock()

    def tasks():
        for i in range(40):
            with lock:
                taken.append(i)
            yield i

    ex = LocalExecutor(2)
    try:
        results = ex.imap(_square, tasks())
        first = next(results)
        assert first == 0 and len(taken) <= 2 * 2 + 1, "the whole generator was submitted at once"
        assert [first, *results] == [i * i for i in range(40)]
    finally:
        ex.close()


def test_pair_merge_equals_unique_rows():
    rng = np.random.default_rng(2)
    parts = [(rng.integers(0, 50, 300), rng.integers(0, 50, 300)) for _ in range(30)]
    rows = np.unique(
        np.stack([np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])], 1), axis=0
    )
    a, b = _concat(iter(parts))
    assert np.array_equal(a, rows[:, 0]) and np.array_equal(b, rows[:, 1])
    assert [len(x) for x in _concat(iter([]))] == [0, 0]
