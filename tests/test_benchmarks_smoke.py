"""The benchmarks run end to end at a tiny size on CPU (the QLoRA one's GPU numbers come from a GPU machine)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_qlora_throughput_benchmark_smoke():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/qlora_throughput.py"),
            "--size",
            "tiny",
            "--steps",
            "2",
            "--seq-len",
            "64",
            "--batch",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| recipe") or line.startswith("| tuneline")]
    assert len(rows) == 2
    for row in rows:
        tokens_per_second = float(row.split("|")[2].replace(",", ""))
        assert tokens_per_second > 0


@pytest.mark.slow
def test_engine_scaling_benchmark_smoke():
    """The scaling table runs both engines on one corpus and prints equal removal counts for them."""
    pytest.importorskip("ray", reason="the scaling table needs Ray (pip install 'tuneline[ray]')")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/data_prep.py"), "--scaling", "--sizes", "3000", "--ray-workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith(("| local", "| ray"))]
    assert [r[1].strip() for r in rows] == ["local, 2 processes", "ray, 1 worker"]
    assert rows[0][-2] == rows[1][-2] and "exact_dedup" in rows[0][-2]  # the same removals by both engines
    for r in rows:
        assert float(r[4].replace(",", "")) > 0 and float(r[7].replace(",", "")) > 0  # records/min, memory
