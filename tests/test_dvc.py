"""`dvc repro` of the real dvc.yaml in a temporary repository: runs, then is a no-op, then reacts to params."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DVC = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1",
               HF_HUB_OFFLINE="1")
    return subprocess.run([DVC, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(DVC is None, reason="dvc is not installed")
def test_dvc_repro_runs_the_pipeline_then_is_a_noop(tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    # the real params.yaml, with a short training run to keep the test fast
    params = (REPO / "params.yaml").read_text()
    assert "  max_steps: -1\n" in params
    (repo / "params.yaml").write_text(params.replace("  max_steps: -1\n", "  max_steps: 10\n"))
    shutil.copytree(REPO / "data/raw", repo / "data/raw")
    shutil.copytree(REPO / "src/tuneline", repo / "src/tuneline")  # stage deps named in dvc.yaml
    assert dvc("init", "--no-scm", "-q", cwd=repo).returncode == 0

    first = dvc("repro", cwd=repo)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in ("ingest", "clean", "split", "train"):
        assert f"Running stage '{stage}'" in first.stdout
    report = json.loads((repo / "data/split/report.json").read_text())
    assert sum(report["counts"]["sft"].values()) > 400
    assert (repo / "data/split/preference/train.jsonl").stat().st_size > 0
    assert (repo / "models/candidate/adapter/adapter_model.safetensors").is_file()
    metrics = dvc("metrics", "show", "--json", cwd=repo)
    workspace = next(iter(json.loads(metrics.stdout).values()))  # keyed "workspace", or "" without git
    summary = workspace["data"]["models/candidate/train_summary.json"]["data"]
    assert summary["steps"] == 10 and summary["final_train_loss"] > 0
    plots = dvc("plots", "show", "--json", cwd=repo)
    assert plots.returncode == 0 and "train_loss.csv" in plots.stdout and "val_loss.csv" in plots.stdout

    second = dvc("repro", cwd=repo)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout and "up to date" in second.stdout

    # a split param change re-runs split and what depends on it (what `dvc exp run -S split.seed=7` does)
    params = (repo / "params.yaml").read_text().replace("  seed: 42\n  leakage:", "  seed: 7\n  leakage:")
    (repo / "params.yaml").write_text(params)
    third = dvc("repro", cwd=repo)
    assert third.returncode == 0, third.stderr
    assert "Running stage 'split'" in third.stdout and "Running stage 'clean'" not in third.stdout
    assert "Running stage 'train'" in third.stdout
