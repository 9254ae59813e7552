"""Registration against a real MLflow server (SQLite backend, artifact proxy): lineage, aliases, idempotency."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EvalAssets, write_jsonl
from tests.test_evaluate import perfect_candidate, rule_judge
from tests.tgi_contract import TgiContractServer
from tuneline.cli import app
from tuneline.models.trained import read_manifest
from tuneline.registry import CANDIDATE, CHAMPION
from tuneline.stages.evaluate import run_evaluate
from tuneline.stages.register import RegisterError, run_register
from tuneline.tracking import file_md5


@pytest.fixture
def cfg(make_config, mlflow_server: str):
    name = f"tl-{uuid.uuid4().hex[:8]}"  # one registered model per test on the shared server

    def make(*overrides: str):
        # generate mode: the rule judge's "Rating: [[9]]" reads as 9.0 exactly
        return make_config(
            f"registry.tracking_uri={mlflow_server}",
            f"registry.model_name={name}",
            "eval.judge.mode=generate",
            *overrides,
        )

    return make


def evaluate(config, assets: EvalAssets, out: Path) -> Path:
    """A real evaluate run (perfect candidate endpoint, rule judge) whose gate passes unless config says otherwise."""
    with TgiContractServer(perfect_candidate(assets.split_dir)) as cand, TgiContractServer(rule_judge) as judge:
        config = config.model_copy(
            update={
                "eval": config.eval.model_copy(
                    update={
                        "candidate_endpoint": cand.url,
                        "judge": config.eval.judge.model_copy(update={"endpoint": judge.url}),
                    }
                )
            }
        )
        run_evaluate(config, assets.model_dir, assets.split_dir, out, out.parent / "judge.sqlite")
    return out


def client(config):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=config.registry.tracking_uri, registry_uri=config.registry.tracking_uri)


@pytest.mark.slow
def test_a_passing_model_is_registered_with_its_lineage_and_the_candidate_alias(
    cfg, eval_assets: EvalAssets, tmp_path: Path
) -> None:
    config = cfg("eval.max_examples=3", "eval.baseline=none")
    write_jsonl(Path(config.paths.cleaned) / "removed.jsonl", [])
    (Path(config.paths.cleaned) / "report.json").write_text('{"stage": "clean"}')
    (Path(config.paths.split)).mkdir(parents=True)
    (Path(config.paths.split) / "report.json").write_text('{"stage": "split"}')
    eval_dir = evaluate(config, eval_assets, tmp_path / "eval")

    record = run_register(config, eval_assets.model_dir, eval_dir, tmp_path / "registration.json").record
    assert record.version == "1" and record.aliases == [CANDIDATE] and record.gate_passed
    assert (tmp_path / "registration.json").is_file()

    mv = client(config).get_model_version(config.registry.model_name, "1")
    tags, manifest = mv.tags, read_manifest(eval_assets.model_dir)
    assert tags["data.sft/train.jsonl"] == file_md5(eval_assets.split_dir / "sft" / "train.jsonl")
    assert tags["data.sft/test.jsonl"] == file_md5(eval_assets.split_dir / "sft" / "test.jsonl")
    assert tags["git_commit"] == (manifest.git_commit or "unknown")
    assert tags["params_digest"] == manifest.params_digest and tags["train_run_id"] == manifest.mlflow_run_id
    assert tags["train.steps"] == "40" and tags["method"] == "qlora"
    assert tags["eval.judge.candidate_score.mean"] == "9.0" and tags["eval.candidate.exact_match"] == "1.0"
    assert tags["gate.passed"] == "true" and tags["gate.reasons"] == "none"
    assert tags["tuneline.storage_uri"].startswith("mlflow-artifacts:/")  # served through the artifact proxy

    artifacts = {f.path for f in client(config).list_artifacts(mv.run_id, "model")}
    assert {"model/tuneline_model.json", "model/adapter", "model/base", "model/train_summary.json"} <= artifacts
    logged = {f.path for f in client(config).list_artifacts(mv.run_id, "evaluation")}
    assert {"evaluation/report.html", "evaluation/gate.json", "evaluation/metrics.json"} <= logged
    assert {f.path for f in client(config).list_artifacts(mv.run_id, "data_reports/cleaned")} == {
        "data_reports/cleaned/report.json"
    }

    # the version is a complete model dir: download it and it loads and generates like the local one
    from tuneline.models.trained import generate, load_trained
    from tuneline.registry import download_version

    local = download_version(config.registry.tracking_uri, config.registry.model_name, "1", tmp_path / "dl")
    assert file_md5(local / "adapter" / "adapter_model.safetensors") == file_md5(
        eval_assets.model_dir / "adapter" / "adapter_model.safetensors"
    )
    prompt = [[{"role": "user", "content": "To JSON:\n\nAna wants 3 lamp"}]]
    assert generate(*load_trained(local), prompt, 12) == generate(*load_trained(eval_assets.model_dir), prompt, 12)

    # idempotent: the same inputs again give the same version, not a second one
    again = run_register(config, eval_assets.model_dir, eval_dir, tmp_path / "registration.json").record
    assert again.version == "1" and again.existing is True
    assert len(client(config).search_model_versions(f"name = '{config.registry.model_name}'")) == 1


@pytest.mark.slow
def test_a_failed_gate_registers_without_candidate_and_champion_never_moves(
    cfg, eval_assets: EvalAssets, tmp_path: Path
) -> None:
    config = cfg("eval.max_examples=2", "eval.baseline=none")
    first = run_register(config, eval_assets.model_dir, evaluate(config, eval_assets, tmp_path / "e1")).record
    mlc = client(config)
    mlc.set_registered_model_alias(config.registry.model_name, CHAMPION, first.version)  # promotion did this

    strict = cfg("eval.max_examples=2", "eval.baseline=none", "eval.gate.min_judge_score=10")
    second = run_register(strict, eval_assets.model_dir, evaluate(strict, eval_assets, tmp_path / "e2")).record
    assert second.version == "2" and not second.gate_passed and second.aliases == []
    assert any("mean judge score 9.000 (minimum 10)" in r for r in second.gate_reasons)
    name = config.registry.model_name
    assert mlc.get_model_version_by_alias(name, CANDIDATE).version == first.version
    assert mlc.get_model_version_by_alias(name, CHAMPION).version == first.version
    assert mlc.get_model_version(name, "2").tags["gate.passed"] == "false"


@pytest.mark.slow
def test_a_failed_upload_leaves_no_version(
    cfg, eval_assets: EvalAssets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    config = cfg("eval.max_examples=2", "eval.baseline=none")
    eval_dir = evaluate(config, eval_assets, tmp_path / "eval")
    real = mlflow.log_artifacts

    def dies_midway(local_dir: str, artifact_path: str | None = None, **kwargs) -> None:
        mlflow.log_artifact(str(Path(local_dir) / "tuneline_model.json"), artifact_path)  # part of it got there
        raise OSError("connection reset by peer")

    monkeypatch.setattr(mlflow, "log_artifacts", dies_midway)
    with pytest.raises(RegisterError, match="nothing was registered.*connection reset"):
        run_register(config, eval_assets.model_dir, eval_dir)
    mlc = client(config)
    assert mlc.search_model_versions(f"name = '{config.registry.model_name}'") == []
    failed = mlc.search_runs(
        [mlc.get_experiment_by_name(config.registry.experiment).experiment_id],
        "tags.`tuneline.stage` = 'register'",
        order_by=["attributes.start_time DESC"],
    )
    assert failed[0].info.status == "FAILED"

    monkeypatch.setattr(mlflow, "log_artifacts", real)
    assert run_register(config, eval_assets.model_dir, eval_dir).record.version == "1"


@pytest.mark.slow
def test_the_champion_becomes_the_baseline(cfg, eval_assets: EvalAssets, tmp_path: Path) -> None:
    import json

    config = cfg("eval.max_examples=2", "eval.baseline=none")
    record = run_register(config, eval_assets.model_dir, evaluate(config, eval_assets, tmp_path / "e1")).record
    client(config).set_registered_model_alias(config.registry.model_name, CHAMPION, record.version)

    auto = cfg("eval.max_examples=2")  # baseline: auto
    out = evaluate(auto, eval_assets, tmp_path / "e2")
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["baseline_kind"] == "champion"
    assert evaluation["baseline"] == f"{config.registry.model_name} v1 (@champion)"
    # the champion is these very weights, downloaded from the registry: its answers are the local model's
    from tuneline.io.jsonl import read_jsonl
    from tuneline.models.trained import generate, load_trained

    rows = list(read_jsonl(out / "examples.jsonl"))
    prompts = [[{"role": "user", "content": r["question"]}] for r in rows]
    assert [r["baseline"]["text"] for r in rows] == generate(*load_trained(eval_assets.model_dir), prompts, 64)
    assert json.loads((out / "metrics.json").read_text())["baseline"]["eval_loss"] > 0


def test_register_needs_an_evaluation(cfg, eval_assets: EvalAssets, tmp_path: Path) -> None:
    with pytest.raises(RegisterError, match="gate.json not found: run `tuneline evaluate` first"):
        run_register(cfg(), eval_assets.model_dir, tmp_path / "none")


def test_an_evaluation_of_another_model_is_refused_and_nothing_is_registered(
    cfg, eval_assets: EvalAssets, tmp_path: Path
) -> None:
    config = cfg()
    evaluated = evaluate(config, eval_assets, tmp_path / "eval")  # the evaluation of the candidate
    other = eval_assets.judge_dir.parent  # another trained model dir (the judge), with its own training run
    with pytest.raises(RegisterError, match="evaluated the model of training run .* not .*judge"):
        run_register(config, other, evaluated, tmp_path / "registration.json")
    assert not client(config).search_model_versions(f"name = '{config.registry.model_name}'")
    assert not (tmp_path / "registration.json").exists()


def test_unreachable_registry_is_a_clear_error(
    make_config, eval_assets: EvalAssets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    eval_dir = evaluate(make_config(), eval_assets, tmp_path / "eval")
    config = make_config(f"registry.tracking_uri=http://127.0.0.1:{free_port()}")
    with pytest.raises(RegisterError, match=r"MLflow registry at http://127\.0\.0\.1:\d+.*Connection refused"):
        run_register(config, eval_assets.model_dir, eval_dir)


@pytest.mark.slow
def test_cli_register_and_registry_show(cfg, eval_assets: EvalAssets, tmp_path: Path, mlflow_server: str) -> None:
    config = cfg("eval.max_examples=2", "eval.baseline=none")
    eval_dir = evaluate(config, eval_assets, tmp_path / "eval")
    sets = ["-S", f"registry.tracking_uri={mlflow_server}", "-S", f"registry.model_name={config.registry.model_name}"]
    result = CliRunner().invoke(app, ["register", str(eval_assets.model_dir), "--eval", str(eval_dir), *sets])
    assert result.exit_code == 0, result.output
    assert f"registered: {config.registry.model_name} version 1" in result.output
    assert "aliases: @candidate" in result.output and "gate: PASS" in result.output
    shown = CliRunner().invoke(app, ["registry", "show", "--alias", "candidate", *sets])
    assert shown.exit_code == 0 and "version 1" in shown.output and f"{mlflow_server}/#/models/" in shown.output
    missing = CliRunner().invoke(app, ["registry", "show", "--alias", "champion", *sets])
    assert missing.exit_code == 1 and "has no version with alias @champion" in missing.output
