"""The staged duplicate clusters (tuneline.clusters): one survivor per cluster, chosen by rank alone."""

from __future__ import annotations

import numpy as np

from tuneline.clusters import BUCKET_ROWS, ROW, bucket_bits, components, partition, similar, star_edges


def _rows(keys: list[int], ranks: list[int]) -> np.ndarray:
    rows = np.zeros(len(keys), dtype=ROW)
    rows["key"], rows["rank"] = keys, ranks
    return rows


def test_star_edges_link_each_group_to_its_lowest_rank_whatever_the_row_order():
    keys, ranks = [7, 3, 7, 3, 9, 7], [40, 12, 5, 30, 1, 22]
    want = {(5, 22), (5, 40), (12, 30)}
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(len(keys))
        a, b = star_edges(_rows([keys[i] for i in order], [ranks[i] for i in order]))
        assert set(zip(a.tolist(), b.tolist(), strict=True)) == want


def test_a_record_repeated_in_its_own_group_is_not_its_own_duplicate():
    a, b = star_edges(_rows([1, 1, 1], [4, 4, 6]))
    assert set(zip(a.tolist(), b.tolist(), strict=True)) == {(4, 6)}


def test_components_are_transitive_and_rooted_at_the_lowest_rank():
    # chains 9-3-7 and 20-15, and 3 reached through 9: one cluster {3, 7, 9}, one {15, 20}
    member, root = components(np.array([9, 3, 20]), np.array([3, 7, 15]))
    assert dict(zip(member.tolist(), root.tolist(), strict=True)) == {7: 3, 9: 3, 20: 15}


def test_components_of_a_long_chain_in_reverse_order():
    n = 1000
    member, root = components(np.arange(n - 1, 0, -1), np.arange(n - 2, -1, -1))
    assert sorted(member.tolist()) == list(range(1, n)) and set(root.tolist()) == {0}


def test_partition_puts_every_row_in_the_bucket_of_its_key_top_bits():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 5000, dtype=np.uint64) * np.uint64(2)
    rows, offsets = partition(keys, np.arange(5000), 5)
    assert offsets[-1] == 5000 and len(offsets) == 33
    for b in range(32):
        part = rows[offsets[b] : offsets[b + 1]]
        assert np.all((part["key"] >> np.uint64(59)) == b)


def test_bucket_bits_grow_with_the_input_so_a_bucket_stays_bounded():
    assert bucket_bits(10) == bucket_bits(BUCKET_ROWS)
    for rows in (1 << 24, 1 << 28):
        assert rows / (1 << bucket_bits(rows)) <= BUCKET_ROWS


def test_bucket_membership_by_binary_search_equals_isin():
    """Bucket tasks leave out the excluded ranks by binary search in the sorted set, not np.isin."""
    from tuneline.engine.cluster_tasks import _members

    rng = np.random.default_rng(3)
    for n, m in ((0, 0), (5, 0), (0, 5), (1, 1), (1000, 300), (50_000, 40_000)):
        values = rng.integers(-2, 2 * n + 3, n)
        excluded = np.unique(rng.integers(0, 2 * n + 3, m))
        assert np.array_equal(_members(values, excluded), np.isin(values, excluded)), (n, m)


def test_similar_counts_equal_positions():
    a = np.zeros((2, 10), dtype=np.uint32)
    b = a.copy()
    b[0, :2] = 1  # 8 of 10 agree
    b[1, :3] = 1  # 7 of 10
    assert similar(a, b, 0.8).tolist() == [True, False]


def test_bucket_tasks_are_made_as_the_executor_takes_them():
    """A bucket task names a slice of every block: all of them at once are buckets x blocks slices, both growing
    with the corpus (14 MiB of tasks at 4M records), so they are made one at a time."""
    from collections.abc import Iterator

    from tuneline.engine.cluster_tasks import KeyedBlock, bucket_tasks

    offsets = {"bd": np.array([0, 2, 5, 5], dtype=np.int64)}
    blocks = [KeyedBlock(f"/scratch/{i:06d}", 10 * i, 10 * i + 10, offsets, 5) for i in range(3)]
    tasks = bucket_tasks(blocks, "bd")
    assert isinstance(tasks, Iterator)
    first = next(tasks)
    assert first.slices == tuple((f"/scratch/{i:06d}.bd", 0, 2) for i in range(3))
    assert [t.slices[0][1:] for t in tasks] == [(2, 5), (5, 5)]
