"""data.engine=ray against data.engine=local, on a real local Ray cluster (2 CPUs, started in this process).

The engines run the same block functions; these tests show that they also take the same decisions: the same
records kept and removed (byte-identical outputs), the same reports, the same split and leakage, on the
bundled sample and on a corpus of planted duplicates cut into many blocks, and when a Ray worker is killed
in the middle of the clean stage (Ray re-runs its task; nothing is lost or written twice).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import chat, write_jsonl
from tuneline.records import KINDS
from tuneline.stages.clean import run_clean
from tuneline.stages.ingest import run_ingest
from tuneline.stages.split import run_split

ray = pytest.importorskip("ray", reason="data.engine=ray needs Ray (pip install 'tuneline[ray]')")
psutil = pytest.importorskip("psutil")
REPO = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "records_per_second", "engine", "workers")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _report(path: Path) -> dict:
    report = json.loads((path / "report.json").read_text())
    for key in TIMING:
        report.pop(key, None)
    report.get("rules", {}).pop("workers", None)  # the config it ran with, not a decision
    return report


def _same_outputs(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert _report(a) == _report(b)


def _run_all(make_config, raw: Path, root: Path, *overrides: str) -> Path:
    config = make_config(f"paths.raw={raw}", *overrides)
    run_ingest(config, None, root / "ingested")
    run_clean(config, root / "ingested", root / "cleaned")
    run_split(config, root / "cleaned", root / "split")
    return root


def _planted(path: Path, n: int, seed: int = 0) -> Path:
    """Chats with exact duplicates, near duplicates (chains of edits) and PII, in a random order."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    base: list[tuple[str, str]] = []
    rows = []
    for i in range(n):
        r = rng.random()
        if base and r < 0.1:
            rows.append(chat(*rng.choice(base)))
        elif base and r < 0.2:
            user, answer = rng.choice(base)
            rows.append(chat(user, answer + " " + rng.choice(words)))
        else:
            user = " ".join(rng.choices(words, k=25)) + f" q{i}"
            answer = " ".join(rng.choices(words, k=30))
            if rng.random() < 0.1:
                user += f" mail me at u{i}@example.com"
            base.append((user, answer))
            rows.append(chat(user, answer))
    return write_jsonl(path, rows)


def test_bundled_sample_same_records_reports_and_split_on_both_engines(ray_cluster, make_config, tmp_path):
    local = _run_all(make_config, REPO / "data" / "raw", tmp_path / "local", "clean.workers=2")
    on_ray = _run_all(make_config, REPO / "data" / "raw", tmp_path / "ray", "data.engine=ray")
    assert json.loads((on_ray / "cleaned/report.json").read_text())["engine"] == "ray"
    _same_outputs(local / "ingested", on_ray / "ingested", [f"{k}.jsonl" for k in KINDS] + ["quarantine.jsonl"])
    _same_outputs(local / "cleaned", on_ray / "cleaned", [f"{k}.jsonl" for k in KINDS] + ["removed.jsonl"])
    splits = [f"{k}/{s}.jsonl" for k in KINDS for s in ("train", "val", "test")]
    _same_outputs(local / "split", on_ray / "split", [*splits, "leakage.jsonl"])
    removed = _report(local / "cleaned")["removed"]
    assert removed.get("exact_dedup", 0) > 0  # the sample has duplicates: the comparison is not vacuous


def test_many_blocks_of_planted_duplicates_same_decisions(ray_cluster, make_config, tmp_path):
    raw = _planted(tmp_path / "raw" / "chats.jsonl", 6000)
    small = "data.block_records=1024"  # 6 blocks: clusters span blocks
    local = _run_all(make_config, raw.parent, tmp_path / "local", small, "clean.workers=2")
    one = _run_all(make_config, raw.parent, tmp_path / "one", small, "clean.workers=1")
    big = _run_all(make_config, raw.parent, tmp_path / "big", "clean.workers=2")
    on_ray = _run_all(make_config, raw.parent, tmp_path / "ray", small, "data.engine=ray")
    names = [f"{k}.jsonl" for k in KINDS] + ["removed.jsonl"]
    for other in (one, big, on_ray):  # nor the number of workers, nor the block size changes a decision
        _same_outputs(local / "cleaned", other / "cleaned", names)
    removed = _report(local / "cleaned")["removed"]
    assert removed["exact_dedup"] > 400 and removed["near_dedup"] > 400
    # one survivor per cluster, and it is the earliest record of its cluster
    removals = [json.loads(line) for line in (local / "cleaned/removed.jsonl").read_text().splitlines()]
    line_of = {
        json.loads(line)["id"]: i for i, line in enumerate((local / "ingested/sft.jsonl").read_text().splitlines())
    }
    kept = {json.loads(line)["id"] for line in (local / "cleaned/sft.jsonl").read_text().splitlines()}
    for r in removals:
        if r["rule"] in ("exact_dedup", "near_dedup"):
            first = r["detail"].rsplit(" ", 1)[1]
            assert first in kept and line_of[first] < line_of[r["id"]]


def _kill_one_worker_mid_stage(scratch_glob: tuple[Path, str], killed: list[int], stop: threading.Event) -> None:
    root, pattern = scratch_glob
    while not stop.is_set():
        if any(root.glob(pattern)):  # a block is written: the stage is under way
            for proc in psutil.process_iter(["pid", "cmdline"]):
                title = " ".join(proc.info["cmdline"] or [])
                if "ray::" in title and "run_task" in title:
                    proc.kill()
                    killed.append(proc.info["pid"])
                    return
        time.sleep(0.01)


def test_a_worker_killed_mid_clean_is_retried_and_nothing_is_lost_or_doubled(ray_cluster, make_config, tmp_path):
    raw = _planted(tmp_path / "raw" / "chats.jsonl", 20000, seed=3)
    small = "data.block_records=1024"
    local = tmp_path / "local"
    config = make_config(f"paths.raw={raw.parent}", small, "clean.workers=2")
    run_ingest(config, None, local / "ingested")
    run_clean(config, local / "ingested", local / "cleaned")

    on_ray = tmp_path / "ray"
    shutil.copytree(local / "ingested", on_ray / "ingested")
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_one_worker_mid_stage, args=((on_ray, ".cleaned.tmp-*/.blocks/sft/*.jsonl"), killed, stop)
    )
    killer.start()
    try:
        run_clean(make_config(small, "data.engine=ray"), on_ray / "ingested", on_ray / "cleaned")
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was running a block task to kill"
    _same_outputs(local / "cleaned", on_ray / "cleaned", [f"{k}.jsonl" for k in KINDS] + ["removed.jsonl"])
    ids = [json.loads(line)["id"] for line in (on_ray / "cleaned/sft.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids))


def test_cli_clean_with_data_engine_ray_matches_local(make_config, tmp_path):
    """``tuneline clean --set data.engine=ray`` as a user runs it: its own local Ray, then the same output."""
    config = make_config(f"paths.raw={REPO / 'data' / 'raw'}")
    run_ingest(config, None, tmp_path / "ingested")
    for engine in ("local", "ray"):
        proc = subprocess.run(
            [sys.executable, "-m", "tuneline", "clean", str(tmp_path / "ingested"), "--out", str(tmp_path / engine)]
            + ["--set", f"data.engine={engine}", "--set", "data.ray.num_cpus=2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    _same_outputs(tmp_path / "local", tmp_path / "ray", [f"{k}.jsonl" for k in KINDS] + ["removed.jsonl"])
