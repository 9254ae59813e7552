"""``train.num_gpus > 1``: the KFP train step re-launches itself under torchrun. Run here for real with two CPU
processes (gloo instead of NCCL): the ranks shard the data, only rank 0 tracks and writes, and a retried step
whose pod lost its disk resumes from the mirrored checkpoints."""

from __future__ import annotations

import json
import shutil

from mlflow.tracking import MlflowClient

from tests.conftest import TINY_TRAIN
from tuneline.pipeline import steps


def _runs(tracking: str) -> list:
    client = MlflowClient(tracking)  # not mlflow.set_tracking_uri: it would leak into MLFLOW_TRACKING_URI
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_two_processes_train_one_model_under_torchrun_and_resume_from_the_mirror(make_config, split_dir, tmp_path):
    mirror = tmp_path / "mirror"
    config = make_config(*TINY_TRAIN, "train.num_gpus=2", f"train.checkpoint_uri=file://{mirror}")
    model, ckpts = tmp_path / "model", tmp_path / "pod" / "checkpoints"

    metrics = steps.train(config.model_dump_json(), str(split_dir), str(model), str(ckpts), run_id="")

    summary = json.loads((model / "train_summary.json").read_text())
    assert metrics["world_size"] == summary["world_size"] == 2
    # two ranks, each a batch per step: twice the records a single process would see in 16 steps
    records = sum(1 for _ in (split_dir / "sft" / "train.jsonl").open())
    assert summary["epochs"] == 16 * config.train.batch_size * 2 / records
    assert (model / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(tmp_path.glob(".model.*")), "a rank left a partial output dir"
    [run] = _runs(config.registry.tracking_uri)  # rank 1 opened no run of its own
    assert run.info.run_id == summary["mlflow_run_id"] and run.info.status == "FINISHED"
    # a finished run keeps its last checkpoint in the mirror (train.mirror_after_finish: last)
    assert sorted(p.name for p in mirror.iterdir()) == ["checkpoint-16"]

    # the retried step lands on a node without the old pod's disk: the ranks resume from the mirror
    shutil.rmtree(tmp_path / "pod")
    steps.train(config.model_dump_json(), str(split_dir), str(model), str(ckpts), run_id="")
    resumed = json.loads((model / "train_summary.json").read_text())
    assert resumed["resumed_from"] == "checkpoint-16" and resumed["steps"] == 16
    assert resumed["mlflow_run_id"] == summary["mlflow_run_id"]
    assert len(_runs(config.registry.tracking_uri)) == 1


def test_tuneline_train_takes_num_gpus_too(split_dir, tmp_path):
    """The CLI (and so `dvc repro`) launches the same torchrun path as the KFP step, not one process."""
    import subprocess
    import sys

    sets = [
        a
        for s in (
            *TINY_TRAIN,
            "train.max_steps=4",
            "train.num_gpus=2",
            f"registry.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}",
        )
        for a in ("--set", s)
    ]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneline",
            "train",
            str(split_dir),
            "--out",
            str(tmp_path / "model"),
            "--checkpoints",
            str(tmp_path / "ckpt"),
            *sets,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "model" / "train_summary.json").read_text())["world_size"] == 2
    assert "no CUDA device: running 2 CPU processes with gloo" in r.stderr


def test_more_gpus_than_the_machine_has_is_refused(monkeypatch, make_config):
    import pytest
    import torch

    from tuneline.launch.training import LaunchError, check_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(LaunchError, match=r"train.num_gpus=4, but this machine has 1 CUDA device"):
        check_devices(4)
