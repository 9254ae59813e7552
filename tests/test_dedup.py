"""The batched MinHash equals datasketch's MinHash; the verified LSH index finds near duplicates only."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash

from tuneline.dedup import (
    _P,
    _WEIGHTS,
    _WORD_BYTE,
    batch_near_keys,
    batch_shingles,
    batch_signatures,
    lsh_params,
    permutations,
    word_hashes,
)
from tuneline.textscan import runs

TEXTS = [
    "Hello, world! hello world",
    "a",
    "",
    "...",
    "x y",
    "the quick brown fox jumps over the lazy dog",
    "Ünïcödé wörds — here too",
    "tab\tseparated\nlines and  spaces",
    # longer than one permutation step (4,096 grams), between short ones: the step's buffer grows for it
    " ".join(f"w{i % 5000}" for i in range(9000)),
    "after the long one",
]


@pytest.mark.parametrize("num_perm", [16, 64, 128])
def test_batch_signatures_equal_datasketch_minhash(num_perm: int):
    hashes, docs = batch_shingles(TEXTS, 3)
    sigs = batch_signatures(TEXTS, num_perm, 3)
    for i in range(len(TEXTS)):
        m = MinHash(num_perm=num_perm, hashfunc=int, permutations=permutations(num_perm), scheme="affine32")
        m.update_batch(hashes[docs == i].tolist())
        assert np.array_equal(m.hashvalues, sigs[i])


@pytest.mark.parametrize("num_perm", [1, 16, 64, 128, 256])
def test_permutations_are_datasketchs(num_perm: int):
    ours = permutations(num_perm)
    theirs = MinHash(num_perm=num_perm, seed=1, scheme="affine32").permutations
    assert all(p.dtype == np.uint32 for p in ours)
    assert np.array_equal(np.array(ours), theirs)


def test_lsh_params_are_datasketchs_optimum():
    """The band/row split equals datasketch's optimizer's (scipy quadrature) on a grid of thresholds and sizes."""
    from datasketch.lsh import _optimal_param

    for num_perm in (2, 16, 64, 128):
        for threshold in np.round(np.arange(0.05, 1.0, 0.05), 2).tolist():
            assert lsh_params(threshold, num_perm) == _optimal_param(threshold, num_perm, *_WEIGHTS), (
                threshold,
                num_perm,
            )


def test_the_data_stages_do_not_import_scipy():
    """datasketch imports scipy (0.27 s per stage process); the stages make what they used of it themselves."""
    import subprocess
    import sys

    code = (
        "import sys, tuneline.cli, tuneline.stages.ingest.run, tuneline.stages.clean.run, tuneline.stages.split.run;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'datasketch'}))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_word_hashes_are_the_polynomial_of_each_word():
    """Each word's hash is sum(byte * P**offset) + length modulo 2**64, words at the array's very start and end
    included (the reduceat that computes it runs to the array's end)."""
    rng = random.Random(11)
    for _ in range(200):
        raw = bytes(rng.choice(b"ab_9 .\x00\xc3\xa9") for _ in range(rng.randrange(0, 40)))
        starts, ends = runs(_WORD_BYTE.mask(raw))
        got = word_hashes(np.frombuffer(raw, dtype=np.uint8), starts, ends).tolist()
        expected = [
            (sum(b * pow(int(_P), k, 2**64) for k, b in enumerate(raw[s:e])) + e - s) % 2**64
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        assert got == expected


def test_shingles_ignore_case_and_punctuation_and_respect_documents():
    h, d = batch_shingles(["Hello, World! again", "hello world AGAIN", "world again hello"], 2)
    assert h[d == 0].tolist() == h[d == 1].tolist()
    assert set(h[d == 2].tolist()) != set(h[d == 0].tolist())
    # signatures of one document do not depend on the batch it is computed in
    assert np.array_equal(batch_signatures(["x y z w"], 64, 3)[0], batch_signatures(["a b c", "x y z w"], 64, 3)[1])


def test_similarity_estimate_tracks_jaccard():
    rng = random.Random(0)
    base = [f"w{rng.randrange(10_000)}" for _ in range(200)]
    edited = base[:180] + [f"z{i}" for i in range(20)]  # 178 of 216 distinct 3-grams shared: J ~ 0.82
    a, b = batch_signatures([" ".join(base), " ".join(edited)], 128, 3)
    assert abs(np.mean(a == b) - 178 / 218) < 0.1


def test_staged_clusters_find_near_duplicates_and_reject_unrelated():
    """Band keys grouped (star_edges) and verified (similar) pair each document with its edited copy only."""
    from tuneline.clusters import ROW, similar, star_edges, unique_pairs

    rng = random.Random(1)
    docs = [" ".join(f"w{rng.randrange(5000)}" for _ in range(40)) for _ in range(500)]
    others = [" ".join(f"v{rng.randrange(5000)}" for _ in range(40)) for _ in range(500)]
    texts = docs + [d + " extra" for d in docs] + others  # J(doc, copy) = 38/39
    sigs, bands = batch_near_keys(texts, 0.8, 64, 3)
    rows = np.zeros(bands.size, dtype=ROW)
    rows["key"], rows["rank"] = bands.reshape(-1), np.repeat(np.arange(len(texts)), bands.shape[1])
    a, b = unique_pairs(*star_edges(rows))
    ok = similar(sigs[a], sigs[b], 0.8)
    pairs = set(zip(a[ok].tolist(), b[ok].tolist(), strict=True))
    assert sum((i, i + 500) in pairs for i in range(500)) >= 495
    assert all(y == x + 500 for x, y in pairs)  # no unrelated pair survives verification
