"""The split stage: each strategy, determinism, and the leakage audit."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import chat, read_jsonl, write_jsonl
from tuneline.stages.split import SplitError, run_split, split_path

SPLITS = ("train", "val", "test")
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
]


def unique_prompt(i: int) -> str:
    # 16 random words from 256 (seeded per record): no two prompts are near duplicates
    rng = random.Random(i)
    return " ".join(f"{rng.choice(WORDS)}{rng.randrange(16)}" for _ in range(16)) + f" number {i}"


def cleaned(tmp_path: Path, n: int = 200, **meta_fn) -> Path:
    recs = []
    for i in range(n):
        meta = {k: f(i) for k, f in meta_fn.items()}
        recs.append(dict(chat(unique_prompt(i), f"answer {i}"), id=f"r{i}", source=f"file{i % 10}.jsonl", meta=meta))
    write_jsonl(tmp_path / "cleaned/sft.jsonl", recs)
    return tmp_path / "cleaned"


def load(out: Path, kind: str = "sft") -> dict[str, list[dict]]:
    return {s: read_jsonl(split_path(out, kind, s)) for s in SPLITS}


def test_random_split_ratios_and_determinism(tmp_path: Path, make_config):
    src = cleaned(tmp_path)
    res = run_split(make_config(), src, tmp_path / "a")
    assert res.counts["sft"] == {"train": 160, "val": 20, "test": 20}
    run_split(make_config(), src, tmp_path / "b")
    run_split(make_config("split.seed=7"), src, tmp_path / "c")
    a, b, c = load(tmp_path / "a"), load(tmp_path / "b"), load(tmp_path / "c")
    assert a == b
    assert {r["id"] for r in a["test"]} != {r["id"] for r in c["test"]}
    ids = [r["id"] for s in SPLITS for r in a[s]]
    assert sorted(ids) == sorted(f"r{i}" for i in range(200))  # nothing lost, nothing doubled
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")) == [".tuneline-output.json"]


def test_stratified_keeps_each_category_in_proportion(tmp_path: Path, make_config):
    src = cleaned(tmp_path, category=lambda i: "rare" if i % 10 == 0 else "common")
    run_split(make_config("split.strategy=stratified", "split.field=meta.category"), src, tmp_path / "o")
    parts = load(tmp_path / "o")
    by = {s: Counter(r["meta"]["category"] for r in parts[s]) for s in SPLITS}
    assert by["train"] == {"common": 144, "rare": 16}
    assert by["val"] == {"common": 18, "rare": 2} and by["test"] == {"common": 18, "rare": 2}


def test_temporal_puts_the_newest_records_in_test(tmp_path: Path, make_config):
    src = cleaned(tmp_path, ts=lambda i: f"2026-01-01T00:00:{(i * 37) % 60:02d}Z" if i % 2 else (i * 37) % 60)
    run_split(make_config("split.strategy=temporal", "split.field=meta.ts"), src, tmp_path / "o")
    from tuneline.stages.split.assign import _timestamp

    parts = load(tmp_path / "o")
    newest_train = max(_timestamp(r["meta"]["ts"]) for r in parts["train"])
    oldest_test = min(_timestamp(r["meta"]["ts"]) for r in parts["test"])
    assert newest_train <= oldest_test


def test_temporal_without_timestamps_fails_clearly(tmp_path: Path, make_config):
    src = cleaned(tmp_path, ts=lambda i: "yesterday" if i == 3 else "2026-01-01")
    with pytest.raises(SplitError, match="meta.ts.*of record r3 is 'yesterday'"):
        run_split(make_config("split.strategy=temporal", "split.field=meta.ts"), src, tmp_path / "o")
    with pytest.raises(SplitError, match="missing in 200 of 200"):
        run_split(make_config("split.strategy=stratified", "split.field=meta.nope"), src, tmp_path / "o")


def test_group_split_keeps_sources_together(tmp_path: Path, make_config):
    src = cleaned(tmp_path)
    run_split(make_config("split.strategy=group"), src, tmp_path / "o")
    parts = load(tmp_path / "o")
    where: dict[str, set[str]] = {}
    for s in SPLITS:
        for r in parts[s]:
            where.setdefault(r["source"], set()).add(s)
    assert all(len(v) == 1 for v in where.values())
    assert len(parts["train"]) >= 140 and parts["test"]


def _with_leaks(tmp_path: Path) -> Path:
    src = cleaned(tmp_path, n=200)
    recs = read_jsonl(src / "sft.jsonl")
    # every record duplicated: exact copies and near copies (one extra word) of each prompt
    extra = [
        dict(
            r,
            id=r["id"] + "x",
            messages=[
                {"role": "user", "content": r["messages"][0]["content"]},
                {"role": "assistant", "content": "other"},
            ],
        )
        for r in recs[:100]
    ]
    extra += [
        dict(
            r,
            id=r["id"] + "n",
            messages=[
                {"role": "user", "content": r["messages"][0]["content"] + " please"},
                {"role": "assistant", "content": "other"},
            ],
        )
        for r in recs[100:]
    ]
    write_jsonl(src / "sft.jsonl", recs + extra)
    return src


def _pair(rid: str) -> str:
    return rid.rstrip("xn")


def test_leakage_is_found_with_high_recall_and_no_false_positives(tmp_path: Path, make_config):
    src = _with_leaks(tmp_path)
    res = run_split(make_config("split.leakage.action=report"), src, tmp_path / "r")
    parts = load(tmp_path / "r")
    split_of = {r["id"]: s for s in SPLITS for r in parts[s]}
    # planted pairs with one side in train and the other in val/test: what a perfect audit would flag
    expected = {
        rid
        for rid, s in split_of.items()
        if s != "train"
        and any(
            split_of.get(other) == "train" for other in (_pair(rid), _pair(rid) + "x", _pair(rid) + "n") if other != rid
        )
    }
    leaks = read_jsonl(tmp_path / "r/leakage.jsonl")
    flagged = {e["id"] for e in leaks}
    assert all(_pair(e["id"]) == _pair(e["train_id"]) for e in leaks)  # every match is a real pair: no false positives
    exact_expected = {r for r in expected if int(_pair(r)[1:]) < 100}
    near_expected = expected - exact_expected
    assert exact_expected <= flagged
    assert len(flagged & near_expected) >= 0.9 * len(near_expected) > 0  # MinHash LSH is probabilistic
    assert res.leakage.found == len(flagged)


def test_leaked_records_are_removed_from_val_and_test(tmp_path: Path, make_config):
    res = run_split(make_config(), _with_leaks(tmp_path), tmp_path / "o")
    leaks = read_jsonl(tmp_path / "o/leakage.jsonl")
    kept = {r["id"] for s in ("val", "test") for r in read_jsonl(split_path(tmp_path / "o", "sft", s))}
    assert leaks and not kept & {e["id"] for e in leaks}
    assert sum(res.counts["sft"].values()) == 400 - res.leakage.found


def test_leakage_report_only_and_fail(tmp_path: Path, make_config):
    src = _with_leaks(tmp_path)
    res = run_split(make_config("split.leakage.action=report"), src, tmp_path / "r")
    assert res.leakage.found > 0 and sum(res.counts["sft"].values()) == 400
    with pytest.raises(SplitError, match="share a prompt with train"):
        run_split(make_config("split.leakage.action=fail"), src, tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_per_turn_weights_survive_clean_and_split(make_config, tmp_path):
    from tuneline.config.schema import Source
    from tuneline.stages.clean import run_clean
    from tuneline.stages.ingest import run_ingest

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"hello {i}"},
                {"role": "assistant", "content": f"greeting number {i}", "weight": 0},
                {"role": "user", "content": f"what is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}.", "weight": 1},
            ]
        }
        for i in range(40)
    ]
    write_jsonl(tmp_path / "raw" / "weighted.jsonl", rows)
    config = make_config("split.leakage.check=false")
    run_ingest(config, [Source(uri=str(tmp_path / "raw"))], tmp_path / "i")
    run_clean(config, tmp_path / "i", tmp_path / "c")
    run_split(config, tmp_path / "c", tmp_path / "s")
    out = [r for s in ("train", "val", "test") for r in read_jsonl(tmp_path / "s" / "sft" / f"{s}.jsonl")]
    assert len(out) == 40
    assert all([m.get("weight") for m in r["messages"]] == [None, 0, None, None] for r in out)


@pytest.mark.parametrize("top", [2**64 - 1, 2**50, 5])  # spread out, one histogram bucket, nearly all ties
def test_random_assignment_without_sorting_equals_the_stable_sort(make_config, top: int):
    """assign_random finds each cut by a histogram; it must equal the stable sort by hash then the cuts, ties
    (equal hashes) taken in input order, at every size, including the smallest."""
    import numpy as np

    from tuneline.stages.split.assign import assign_random

    cfg = make_config().split
    rng = np.random.default_rng(1)
    for n in (0, 1, 2, 3, 10, 997, 20_000):
        hashes = rng.integers(0, top, n, dtype=np.uint64, endpoint=True)
        n_train = round(n * cfg.ratios.train)
        n_val = round(n * (cfg.ratios.train + cfg.ratios.val)) - n_train
        order = np.argsort(hashes, kind="stable")
        expected = np.full(n, 2, dtype=np.uint8)
        expected[order[:n_train]], expected[order[n_train : n_train + n_val]] = 0, 1
        assert np.array_equal(assign_random(hashes, cfg), expected), n
        # as the split stage gives them: chunk by chunk (its blocks), the ties running across chunk ends
        cuts = np.sort(rng.integers(0, n + 1, 5))
        chunks = np.split(hashes, cuts)
        assert np.array_equal(assign_random(lambda c=chunks: iter(c), cfg), expected), n
