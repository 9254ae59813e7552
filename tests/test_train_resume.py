"""Interrupted training resumes: kill -9 mid-run, corrupt and partial checkpoints, checkpoints in object storage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import TINY_TRAIN
from tuneline.stages.train import TrainError, run_train
from tuneline.stages.train import checkpoints as ckpts
from tuneline.stages.train.callbacks import NanGuard

pytestmark = pytest.mark.slow
RUN = (*TINY_TRAIN, "train.max_steps=24")


def cli_train(split_dir: Path, out: Path, ckpt: Path, *overrides: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "tuneline", "train", str(split_dir), "--out", str(out), "--checkpoints", str(ckpt)]
    for o in overrides:
        args += ["--set", o]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "adapter" / "adapter_model.safetensors")


def test_kill_9_then_rerun_resumes_and_ends_with_the_same_adapter(make_config, split_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    proc = cli_train(split_dir, tmp_path / "killed", ckpt, *RUN)
    deadline = time.monotonic() + 300
    while not (ckpt / "checkpoint-8" / ckpts.MARKER).is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed").exists(), "a killed run leaves no partial model dir"
    survivors = [p.name for p in ckpts.checkpoints(ckpt)]
    assert "checkpoint-24" not in survivors
    run_id = ckpts.mlflow_run_of(ckpts.checkpoints(ckpt)[0])
    assert run_id

    # a checkpoint whose file was truncated and one cut off before its marker: both must be skipped
    newest = ckpts.checkpoints(ckpt)[0]
    corrupt = ckpt / "checkpoint-97"
    shutil.copytree(newest, corrupt)
    weights = corrupt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    partial = ckpt / "checkpoint-98"
    shutil.copytree(newest, partial)
    (partial / ckpts.MARKER).unlink()

    proc = cli_train(split_dir, tmp_path / "killed", ckpt, *RUN)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "skipping checkpoint checkpoint-98: incomplete" in stderr
    assert "skipping checkpoint checkpoint-97: corrupt: adapter_model.safetensors" in stderr
    assert sorted(p.name.split("-2")[0] for p in (ckpt / "rejected").iterdir()) == ["checkpoint-97", "checkpoint-98"]
    summary = json.loads((tmp_path / "killed" / "train_summary.json").read_text())
    assert summary["resumed_from"] == newest.name and summary["steps"] == 24
    assert summary["mlflow_run_id"] == run_id, "the resumed run continues the same MLflow run"

    uninterrupted = run_train(make_config(*RUN), split_dir, tmp_path / "straight", tmp_path / "ckpt2").out
    a, b = adapter(tmp_path / "killed"), adapter(uninterrupted)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_checkpoints_of_another_config_are_never_resumed(make_config, split_dir, tmp_path):
    run_train(make_config(*TINY_TRAIN, "train.max_steps=4"), split_dir, tmp_path / "m", tmp_path / "ckpt")
    result = run_train(
        make_config(*TINY_TRAIN, "train.max_steps=4", "lora.r=4"), split_dir, tmp_path / "m", tmp_path / "ckpt"
    )
    assert result.summary.resumed_from is None
    assert [p.name.split("-2")[0] for p in (tmp_path / "ckpt" / "rejected").iterdir()] == ["checkpoint-4"]


def test_a_checkpoint_whose_mlflow_run_is_gone_resumes_under_a_new_run(make_config, split_dir, tmp_path):
    """Checkpoints outlive tracking stores (a reused scratch folder, another server): resume, log afresh."""
    first = make_config(*TINY_TRAIN, "train.max_steps=4", f"registry.tracking_uri=sqlite:///{tmp_path / 'a.db'}")
    old = run_train(first, split_dir, tmp_path / "m1", tmp_path / "ckpt").summary.mlflow_run_id
    second = make_config(*TINY_TRAIN, "train.max_steps=4", f"registry.tracking_uri=sqlite:///{tmp_path / 'b.db'}")
    summary = run_train(second, split_dir, tmp_path / "m2", tmp_path / "ckpt").summary
    assert summary.resumed_from == "checkpoint-4"
    assert summary.mlflow_run_id != old
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path / 'b.db'}").get_run(summary.mlflow_run_id)
    assert run.data.params, "the new run carries the run's inputs"


def test_checkpoints_mirrored_to_s3_resume_on_a_fresh_machine(
    make_config, split_dir, tmp_path, s3_endpoint, monkeypatch
):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="ckpt")
    cfg = make_config(
        *TINY_TRAIN, "train.max_steps=8", "train.save_total_limit=1", "train.checkpoint_uri=s3://ckpt/runs/a"
    )
    first = run_train(cfg, split_dir, tmp_path / "m1", tmp_path / "node1")
    keys = [
        o["Key"]
        for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="ckpt", Prefix="runs/a/")[
            "Contents"
        ]
    ]
    assert f"runs/a/checkpoint-8/{ckpts.MARKER}" in keys
    assert not any(k.startswith("runs/a/checkpoint-4/") for k in keys), "remote pruned like local"

    # a new node with an empty local checkpoint dir picks up the mirrored checkpoint
    second = run_train(cfg, split_dir, tmp_path / "m2", tmp_path / "node2")
    assert second.summary.resumed_from == "checkpoint-8"
    a, b = adapter(first.out), adapter(second.out)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    (tmp_path / "checkpoint-8").mkdir()
    args = type("A", (), {"output_dir": str(tmp_path)})()
    state = type("S", (), {"global_step": 10})()
    NanGuard().on_log(args, state, None, logs={"loss": 1.5})
    with pytest.raises(TrainError, match=r"loss became nan at step 10.*checkpoint-8 is kept.*learning_rate"):
        NanGuard().on_log(args, state, None, logs={"loss": float("nan")})
    with pytest.raises(TrainError, match="eval_loss became inf"):
        NanGuard().on_log(args, state, None, logs={"eval_loss": float("inf")})


def test_diverging_run_fails_without_writing_a_model(make_config, split_dir, tmp_path):
    cfg = make_config(
        *TINY_TRAIN,
        "train.learning_rate=1e30",
        "train.max_grad_norm=1e30",
        "train.method=lora",
        "train.gradient_checkpointing=false",
    )
    with pytest.raises(TrainError, match="became (nan|inf)"):
        run_train(cfg, split_dir, tmp_path / "model", tmp_path / "ckpt")
    assert not (tmp_path / "model").exists()


def test_a_kill_before_the_newest_checkpoint_is_marked_leaves_the_previous_one(
    make_config, split_dir, tmp_path, monkeypatch
):
    """save_total_limit=1: the old checkpoint goes only after the new one is complete, never before."""
    calls = []
    real = ckpts.mark_complete

    def dies_before_the_second_marker(ckpt, *args, **kwargs):
        calls.append(ckpt.name)
        if len(calls) == 2:  # checkpoint-8 is on disk, its marker not yet: the process is killed here
            raise KeyboardInterrupt
        real(ckpt, *args, **kwargs)

    monkeypatch.setattr(ckpts, "mark_complete", dies_before_the_second_marker)
    cfg = make_config(*TINY_TRAIN, "train.max_steps=12", "train.save_total_limit=1")
    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, split_dir, tmp_path / "m", tmp_path / "ckpt")
    assert calls == ["checkpoint-4", "checkpoint-8"]
    fingerprint = json.loads((tmp_path / "ckpt/checkpoint-4" / ckpts.MARKER).read_text())["fingerprint"]
    assert ckpts.latest_resumable(tmp_path / "ckpt", fingerprint).name == "checkpoint-4"

    monkeypatch.setattr(ckpts, "mark_complete", real)
    result = run_train(cfg, split_dir, tmp_path / "m", tmp_path / "ckpt")
    assert result.summary.resumed_from == "checkpoint-4" and result.summary.steps == 12
    assert [p.name for p in ckpts.checkpoints(tmp_path / "ckpt")] == ["checkpoint-12"]


def test_rejected_checkpoints_and_a_finished_mirror_follow_the_retention_settings(make_config, split_dir, tmp_path):
    mirror = tmp_path / "mirror"
    cfg = make_config(
        *TINY_TRAIN,
        "train.max_steps=4",
        "train.keep_rejected=1",
        f"train.checkpoint_uri=file://{mirror}",
        "train.mirror_after_finish=delete",
    )
    rejected = tmp_path / "ckpt" / "rejected"
    for i in range(3):  # three broken checkpoints from earlier, killed runs
        broken = tmp_path / "ckpt" / f"checkpoint-{90 + i}"
        broken.mkdir(parents=True)
        (broken / "trainer_state.json").write_text("{")
        run_train(cfg, split_dir, tmp_path / "m", tmp_path / "ckpt")
        assert len(list(rejected.iterdir())) == 1, "only the newest set-aside checkpoint is kept"
    assert next(rejected.iterdir()).name.startswith("checkpoint-92")
    assert list(mirror.iterdir()) == [], "a finished run's mirror copies are deleted (mirror_after_finish: delete)"
