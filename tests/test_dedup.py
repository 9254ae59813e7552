"""The batched MinHash equals datasketch's MinHash; the verified LSH index finds near duplicates only."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datasketch import MinHash

from tuneline.dedup import NearDuplicateIndex, batch_near_keys, batch_shingles, batch_signatures, permutations

TEXTS = [
    "Hello, world! hello world",
    "a",
    "",
    "...",
    "x y",
    "the quick brown fox jumps over the lazy dog",
    "Ünïcödé wörds — here too",
    "tab\tseparated\nlines and  spaces",
]


@pytest.mark.parametrize("num_perm", [16, 64, 128])
def test_batch_signatures_equal_datasketch_minhash(num_perm: int):
    hashes, docs = batch_shingles(TEXTS, 3)
    sigs = batch_signatures(TEXTS, num_perm, 3)
    for i in range(len(TEXTS)):
        m = MinHash(num_perm=num_perm, hashfunc=int, permutations=permutations(num_perm), scheme="affine32")
        m.update_batch(hashes[docs == i].tolist())
        assert np.array_equal(m.hashvalues, sigs[i])


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


def test_index_finds_near_duplicates_and_rejects_unrelated():
    rng = random.Random(1)
    docs = [" ".join(f"w{rng.randrange(5000)}" for _ in range(40)) for _ in range(500)]
    index = NearDuplicateIndex(0.8, 64)
    sigs, bands = batch_near_keys(docs, 0.8, 64, 3)
    for i, (b, s) in enumerate(zip(bands.tolist(), sigs, strict=True)):
        index.add(b, s, f"d{i}")
    sigs, bands = batch_near_keys([d + " extra" for d in docs], 0.8, 64, 3)  # J = 38/39
    hits = [index.find(b, s) for b, s in zip(bands.tolist(), sigs, strict=True)]
    assert sum(h == f"d{i}" for i, h in enumerate(hits)) >= 495
    others = [" ".join(f"v{rng.randrange(5000)}" for _ in range(40)) for _ in range(500)]
    sigs, bands = batch_near_keys(others, 0.8, 64, 3)
    assert all(index.find(b, s) is None for b, s in zip(bands.tolist(), sigs, strict=True))
