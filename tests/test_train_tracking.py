"""Training against a real MLflow tracking server: params, per-step and system metrics, artifacts, lineage."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import TINY_TRAIN
from tuneline.stages.train import TrainError, run_train
from tuneline.tracking import file_md5

pytestmark = pytest.mark.slow


def test_training_run_is_fully_tracked_in_mlflow(make_config, split_dir, tmp_path, mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"], check=True
    )
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cfg = make_config(*TINY_TRAIN, "registry.experiment=train-test", "train.max_steps=12")
    result = run_train(cfg, split_dir, tmp_path / "model", tmp_path / "ckpt")

    client = MlflowClient(mlflow_server)
    run = client.get_run(result.summary.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "train-test"
    params = run.data.params
    assert params["train.method"] == "qlora" and params["lora.r"] == "8" and params["model.base"] == "builtin:tiny"
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == head
    assert tags["data.sft/train.jsonl"] == file_md5(split_dir / "sft/train.jsonl")
    assert tags["tuneline.fingerprint"] == result.summary.fingerprint

    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == [2, 4, 6, 8, 10, 12]
    assert losses[-1].value < losses[0].value
    assert client.get_metric_history(run.info.run_id, "eval_loss")
    assert client.get_metric_history(run.info.run_id, "tokens_per_second")[-1].value > 0
    assert any(k.startswith("system/") for k in run.data.metrics), "system metrics are logged"
    assert run.data.metrics["summary.steps"] == 12

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"train_summary.json", "loss_curve.png", "plan.json", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {
        "plots/train_loss.csv",
        "plots/val_loss.csv",
    }


def test_unreachable_tracking_server_fails_before_training(make_config, split_dir, tmp_path, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrainError, match="cannot reach the MLflow tracking server"):
        run_train(make_config(*TINY_TRAIN), split_dir, tmp_path / "model", tmp_path / "ckpt")
