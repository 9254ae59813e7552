"""The QLoRA benchmark runs end to end at a tiny size on CPU (its GPU numbers come from a GPU machine)."""

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
