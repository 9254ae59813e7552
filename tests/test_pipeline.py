"""The Kubeflow pipeline: compiled spec, scheduling from config, a full kfp.local run, multi-node manifests
against the Trainer/Training-Operator CRDs, and submission against a local server speaking KFP's v2 REST API."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, TINY_TRAIN
from tests.k8s_schemas import crd_errors
from tests.kfp_api import KfpApi
from tests.trainer_cluster import TrainerCluster
from tuneline.cli import app
from tuneline.config import ConfigError, load_config
from tuneline.gpu_pools import scheduling
from tuneline.launch import kube, training
from tuneline.pipeline import steps
from tuneline.pipeline.compile import PIPELINE_FILE, render, stale


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "params.yaml")


def compiled(config) -> tuple[dict, dict]:
    docs = list(yaml.safe_load_all(render(config)[PIPELINE_FILE]))
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


# --------------------------------------------------------------------------- compile
def test_compile_is_deterministic_and_matches_the_committed_files(cfg):
    first, second = render(cfg), render(cfg)
    assert first == second
    assert stale(cfg, REPO) == [], "run `tuneline pipeline compile`"
    assert len(first) == 9  # the pipeline and eight components


def test_the_generate_step_is_compiled_in_when_enabled_on_the_pool_the_config_names(cfg):
    assert "generate" not in compiled(cfg)[0]["root"]["dag"]["tasks"], "off in the demo"
    for gpu, image in ((False, cfg.images.cpu), (True, cfg.images.gpu)):
        config = load_config(
            REPO / "params.yaml", ["generate.enabled=true", f"generate.gpu={str(gpu).lower()}",
                                   "kubeflow.secrets.teacher=teacher-token", "kubeflow.checkpoint_pvc=ckpt"],
        )  # fmt: skip
        spec, k8s = compiled(config)
        tasks = spec["root"]["dag"]["tasks"]
        feed = tasks["ingest"]["inputs"]["artifacts"]["generated"]["taskOutputArtifact"]
        assert feed == {"outputArtifactKey": "generated", "producerTask": "generate"}
        container = spec["deploymentSpec"]["executors"]["exec-generate"]["container"]
        assert container["image"] == image and ("accelerator" in container["resources"]) is gpu
        assert ("nodeSelector" in k8s["exec-generate"]) is gpu
        teacher = [s for s in k8s["exec-generate"]["secretAsEnv"] if s["secretName"] == "teacher-token"]
        assert teacher[0]["keyToEnv"] == [{"envVar": "TUNELINE_TEACHER_TOKEN", "secretKey": "TUNELINE_TEACHER_TOKEN"}]
        assert k8s["exec-generate"]["pvcMount"][0]["mountPath"] == steps.CHECKPOINT_MOUNT, (
            "the call cache outlives a pod"
        )
        assert tasks["generate"]["cachingOptions"].get("enableCache", False) is False


def test_train_executor_carries_gpu_scheduling_resources_and_retries_from_config(cfg):
    spec, k8s = compiled(cfg)
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["image"] == cfg.images.gpu
    res = train["resources"]
    assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert res["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--num_gpus']}}"
    assert res["cpuRequest"] == float(cfg.kubeflow.train_step.cpu)
    assert res["memoryRequest"] == res["memoryLimit"] == 48 * 2**30 / 1e9  # 48Gi, in the spec's GB
    sched = scheduling(cfg, cfg.kubeflow.train_gpu)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["gpu_node_selector"]["defaultValue"] == sched.node_selector
    assert k8s["exec-train"]["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == "gpu_node_selector"
    assert k8s["exec-train"]["tolerations"] == sched.tolerations
    assert {s["secretName"] for s in k8s["exec-train"]["secretAsEnv"]} == {"hf-token", "mlflow-credentials"}
    task = spec["root"]["dag"]["tasks"]["train"]
    assert task["retryPolicy"]["maxRetryCount"] == cfg.kubeflow.retries
    assert task["retryPolicy"]["backoffDuration"] == cfg.kubeflow.retry_backoff
    # CPU steps get the CPU image, no accelerator and no GPU pool
    for name in ("ingest", "clean", "split", "evaluate", "register"):
        container = spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]
        assert container["image"] == cfg.images.cpu and "accelerator" not in container["resources"]
        assert "nodeSelector" not in k8s.get(f"exec-{name}", {})
        assert "pip install" not in " ".join(container["command"])  # nothing fetched at run time
    caching = {
        t: spec["root"]["dag"]["tasks"][t]["cachingOptions"].get("enableCache", False)
        for t in ("ingest", "clean", "split", "train", "evaluate", "register")
    }
    assert caching == {
        "ingest": True,
        "clean": True,
        "split": True,
        "train": False,
        "evaluate": False,
        "register": False,
    }


def test_checkpoints_can_live_on_a_mounted_volume_instead_of_object_storage(cfg):
    config = load_config(REPO / "params.yaml", ["kubeflow.checkpoint_pvc=train-checkpoints"])
    [mount] = compiled(config)[1]["exec-train"]["pvcMount"]
    assert mount["mountPath"] == steps.CHECKPOINT_MOUNT and mount["constant"] == "train-checkpoints"
    assert "pvcMount" not in compiled(cfg)[1]["exec-train"]
    assert steps.checkpoint_mirror(config, "run-7") == f"file://{steps.CHECKPOINT_MOUNT}/run-7"
    assert steps.checkpoint_mirror(cfg, "run-7") is None
    both = load_config(REPO / "params.yaml", ["kubeflow.checkpoint_pvc=x", "train.checkpoint_uri=s3://b/ckpt"])
    assert steps.checkpoint_mirror(both, "run-7") == "s3://b/ckpt/run-7"
    # the nodes of a multi-node job do not mount the claim: they need the object store
    multi = load_config(REPO / "params.yaml", ["kubeflow.checkpoint_pvc=x", "train.num_nodes=2"])
    assert steps.checkpoint_mirror(multi, "run-7") is None


def test_scheduling_follows_the_config_to_another_cloud_and_pool():
    other = load_config(
        REPO / "params.yaml",
        ["infra.cloud=gke", "kubeflow.train_gpu=a100-80gb", "kubeflow.retries=5", "images.gpu=registry.example/t:2"],
    )
    spec, k8s = compiled(other)
    defaults = spec["root"]["inputDefinitions"]["parameters"]["gpu_node_selector"]["defaultValue"]
    assert defaults == {"cloud.google.com/gke-accelerator": "nvidia-a100-80gb"}
    assert spec["root"]["dag"]["tasks"]["train"]["retryPolicy"]["maxRetryCount"] == 5
    assert spec["deploymentSpec"]["executors"]["exec-train"]["container"]["image"] == "registry.example/t:2"


def test_the_knobs_users_change_per_run_are_pipeline_parameters(cfg):
    spec, _ = compiled(cfg)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(steps.KNOBS) | {"gpu_node_selector", "config_overrides", "config"} == set(params)
    assert params["base_model"]["defaultValue"] == cfg.model.base
    assert params["learning_rate"]["defaultValue"] == cfg.train.learning_rate
    assert json.loads(params["config"]["defaultValue"]) == json.loads(cfg.model_dump_json())


def test_every_run_parameter_explains_itself_in_the_kfp_ui(cfg):
    """Declared once (tuneline.pipeline.parameters): the pipeline's and the first step's inputs carry the same
    descriptions, and every knob reaches the first step."""
    from tuneline.pipeline.parameters import PARAMETERS

    spec, _ = compiled(cfg)
    table = {p.name: " ".join(p.description.split()) for p in PARAMETERS}
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: " ".join(v["description"].split()) for k, v in root.items()} == table
    first = spec["components"]["comp-resolve-config"]["inputDefinitions"]["parameters"]
    assert set(first) == set(steps.KNOBS) | {"config", "config_overrides"}
    assert all(" ".join(first[k]["description"].split()) == table[k] for k in first)
    wired = spec["root"]["dag"]["tasks"]["resolve-config"]["inputs"]["parameters"]
    assert {k: v["componentInputParameter"] for k, v in wired.items()} == {k: k for k in first}


def test_bad_overrides_fail_the_first_step_naming_the_key(cfg, tmp_path):
    out = tmp_path / "resolved.json"
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        steps.resolve(cfg.model_dump_json(), '{"train.learning_rate": -1}', {}, str(out))
    with pytest.raises(ConfigError, match="not JSON"):
        steps.resolve(cfg.model_dump_json(), "{epochs: 2", {}, str(out))
    with pytest.raises(ConfigError, match=r"train\.bogus"):
        steps.resolve(cfg.model_dump_json(), '{"train.bogus": 1}', {}, str(out))
    steps.resolve(
        cfg.model_dump_json(), '{"train.max_steps": 7}', {"epochs": 2.0, "source_uri": "s3://b/raw/"}, str(out)
    )
    resolved = json.loads(out.read_text())
    assert resolved["train"]["max_steps"] == 7 and resolved["train"]["epochs"] == 2.0
    assert resolved["data"]["sources"] == [
        {"uri": "s3://b/raw/", "format": "auto", "kind": "auto", "hf_split": "train", "columns": {}}
        | {"role_key": None, "content_key": None, "roles": {}}
    ]


def test_cli_compile_check_reports_a_stale_pipeline(tmp_path, monkeypatch):
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    shutil.copytree(REPO / "components", tmp_path / "components")
    monkeypatch.chdir(tmp_path)
    params = str(REPO / "params.yaml")
    assert CliRunner().invoke(app, ["pipeline", "compile", "--check", "--config", params]).exit_code == 0
    changed = CliRunner().invoke(app, ["pipeline", "compile", "--check", "--config", params, "--set", "lora.r=16"])
    assert changed.exit_code == 1 and "stale: pipelines/tuneline.yaml" in changed.output


# --------------------------------------------------------------------------- kfp.local vs dvc repro
SHORT = [
    "model.base=builtin:tiny",  # the KFP mechanics, not the model: the DVC test runs params.yaml's SmolLM2
    "eval.judge.model=builtin:tiny",
    "train.max_steps=3",
    "train.logging_steps=1",
    "train.save_steps=3",
    "train.eval_steps=3",
    "eval.max_examples=3",
    "eval.judge.max_new_tokens=8",
    "eval.max_new_tokens=8",
]


@pytest.mark.slow
def test_run_local_runs_the_whole_pipeline_and_its_data_matches_dvc_repro(tmp_path):
    work = tmp_path / "repo"
    shutil.copytree(REPO / "data/raw", work / "data/raw")
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    shutil.copytree(REPO / "src/tuneline", work / "src/tuneline")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    os.chdir(work)
    # no retries: a failing step should fail the test now, not after 14 minutes of backoff
    sets = [*SHORT, "kubeflow.retries=0", f"registry.tracking_uri=sqlite:///{tmp_path / 'mlruns.db'}"]
    result = CliRunner().invoke(
        app,
        [
            "pipeline",
            "run-local",
            "--root",
            str(tmp_path / "kfp"),
            "--config",
            "params.yaml",
            *[a for s in sets for a in ("--set", s)],
        ],
    )
    assert result.exit_code == 0, result.output
    [run] = list((tmp_path / "kfp").iterdir())
    registration = json.loads((run / "register" / "registration").read_text())
    assert registration["model_name"] == "tuneline-chat" and registration["version"] == "1"
    assert (run / "train" / "model" / "adapter" / "adapter_model.safetensors").is_file()
    assert "<html" in (run / "evaluate" / "report").read_text().lower()
    metrics = json.loads((run / "evaluate" / "executor_output.json").read_text())["artifacts"]["metrics"]
    assert metrics["artifacts"][0]["metadata"]["examples"] == 3.0
    assert "Registered model" in result.output and "| SFT records |" in result.output

    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    dvc = str(bin_dir / "dvc")
    assert subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=work, env=env).returncode == 0
    repro = subprocess.run([dvc, "repro", "split"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    for task, artifact, local in (
        ("ingest", "ingested", "data/ingested"),
        ("clean", "cleaned", "data/cleaned"),
        ("split", "split", "data/split"),
    ):
        ours, theirs = run / task / artifact, work / local
        files = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
        data = [str(f) for f in files if f.name != "report.json"]
        match, mismatch, errors = filecmp.cmpfiles(theirs, ours, data, shallow=False)
        assert len(match) >= 2 and mismatch == [] and errors == [], f"{task}: {mismatch or errors}"
        # the stage report is equal but for its wall-clock figures
        assert untimed(json.loads((ours / "report.json").read_text())) == untimed(
            json.loads((theirs / "report.json").read_text())
        )


def untimed(report):
    if isinstance(report, dict):
        return {k: untimed(v) for k, v in report.items() if k not in ("seconds", "records_per_second")}
    return [untimed(v) for v in report] if isinstance(report, list) else report


# --------------------------------------------------------------------------- multi-node
@pytest.mark.parametrize("cloud", ["eks", "gke"])
def test_multi_node_manifests_validate_against_the_crds(cloud):
    config = load_config(
        REPO / "params.yaml",
        ["train.num_nodes=4", "train.num_gpus=8", "train.checkpoint_uri=s3://bucket/ckpt", f"infra.cloud={cloud}"],
    )
    job = training.trainjob_manifest(config, "4f1c2d3e-run", "kubeflow")
    assert crd_errors("kubeflow-trainer/trainer.kubeflow.org_trainjobs.yaml", "v1alpha1", job) == []
    assert job["spec"]["trainer"]["numNodes"] == 4
    assert job["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert job["spec"]["trainer"]["command"][-1] == "s3://bucket/ckpt/4f1c2d3e-run/train"
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["template"]["spec"]["template"]["spec"]["nodeSelector"] == scheduling(config, "l4").node_selector
    legacy = training.pytorchjob_manifest(config, "4f1c2d3e-run", "kubeflow")
    assert crd_errors("training-operator/kubeflow.org_pytorchjobs.yaml", "v1", legacy) == []
    assert legacy["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
    # the strict validator does catch a misspelt field
    job["spec"]["trainer"]["numNode"] = 4
    assert any(
        "numNode" in e for e in crd_errors("kubeflow-trainer/trainer.kubeflow.org_trainjobs.yaml", "v1alpha1", job)
    )


def test_multi_node_needs_a_shared_checkpoint_uri():
    config = load_config(REPO / "params.yaml", ["train.num_nodes=2"])
    with pytest.raises(ConfigError, match="train.checkpoint_uri"):
        training.trainjob_manifest(config, "run", "kubeflow")


class _Jobs:
    """Answers get_namespaced_custom_object with a scripted sequence of statuses."""

    def __init__(self, conditions: list[list[dict]]) -> None:
        self.conditions, self.calls = conditions, 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        cond = self.conditions[min(self.calls, len(self.conditions) - 1)]
        self.calls += 1
        return {"metadata": {"name": name}, "status": {"conditions": cond}}


def test_follow_waits_for_completion_and_reports_failure_or_timeout():
    running = [{"type": "Created", "status": "True"}]
    done = running + [{"type": "Complete", "status": "True"}]
    jobs = _Jobs([running, running, done])
    assert kube.follow(jobs, training.TRAINJOB, "ns", "j", timeout_s=5, poll_s=0)["metadata"]["name"] == "j"
    assert jobs.calls == 3
    failed = _Jobs([[{"type": "Failed", "status": "True", "message": "node 2 OOMKilled"}]])
    with pytest.raises(kube.LaunchError, match="OOMKilled"):
        kube.follow(failed, training.PYTORCHJOB, "ns", "j", timeout_s=5, poll_s=0)
    with pytest.raises(kube.LaunchError, match="did not finish"):
        kube.follow(_Jobs([running]), training.TRAINJOB, "ns", "j", timeout_s=0, poll_s=0)


def test_multi_node_step_stages_launches_follows_and_fetches_the_model_rank_0_wrote(make_config, split_dir, tmp_path):
    """Two nodes, each its own torchrun on its own disk, rendezvous over TCP as on a cluster (CPU, gloo)."""
    config = make_config(*TINY_TRAIN, "train.num_nodes=2", f"train.checkpoint_uri=file://{tmp_path / 'bucket'}")
    cluster = TrainerCluster(tmp_path / "cluster")
    how = training.run_multi_node(
        config, str(split_dir), str(tmp_path / "model"), "0f9e8d7c-run", api=cluster, namespace="kubeflow", poll_s=0
    )
    assert how == "created"
    summary = json.loads((tmp_path / "model" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 16
    assert (tmp_path / "model" / "adapter" / "adapter_model.safetensors").is_file()
    stage = tmp_path / "bucket" / "0f9e8d7c-run" / "train"
    assert sorted(p.name for p in stage.iterdir()) == ["config.json", "input", "output"]
    assert not list((tmp_path / "cluster" / "node-1").rglob("train_summary.json")), "only rank 0 writes the model"

    # the step is retried after the job finished (its pod was preempted while fetching): no second training
    again = training.run_multi_node(
        config, str(split_dir), str(tmp_path / "model2"), "0f9e8d7c-run", api=cluster, namespace="kubeflow", poll_s=0
    )
    assert (
        again == "attached"
        and [c for c in cluster.calls if c[0] == "create"] == [("create", "tuneline-train-0f9e8d7c")] * 2
    )
    assert json.loads((tmp_path / "model2" / "train_summary.json").read_text()) == summary


def test_a_retried_step_replaces_a_failed_job_and_refusals_say_what_to_do(make_config, tmp_path):
    from kubernetes.client.exceptions import ApiException

    config = make_config("train.num_nodes=2", "train.checkpoint_uri=s3://bucket/ckpt")
    body = training.trainjob_manifest(config, "run-1", "kubeflow")
    cluster = TrainerCluster(tmp_path, run_jobs=False)
    cluster.objects[("kubeflow", body["metadata"]["name"])] = {
        **body,
        "status": {"conditions": [{"type": "Failed", "status": "True", "message": "node 1 preempted"}]},
    }
    assert kube.launch(cluster, training.TRAINJOB, "kubeflow", body, poll_s=0) == "replaced"
    assert [c[0] for c in cluster.calls] == ["create", "get", "delete", "get", "create"]
    assert "status" not in cluster.objects[("kubeflow", body["metadata"]["name"])]
    # running: attach, do not touch it
    cluster.objects[("kubeflow", body["metadata"]["name"])]["status"] = {
        "conditions": [{"type": "Created", "status": "True"}]
    }
    assert kube.launch(cluster, training.TRAINJOB, "kubeflow", body, poll_s=0) == "attached"

    class NoTrainer(TrainerCluster):
        def create_namespaced_custom_object(self, *args):
            raise ApiException(status=404, reason="Not Found")

    with pytest.raises(kube.LaunchError, match="install Kubeflow Trainer"):
        kube.launch(NoTrainer(tmp_path), training.TRAINJOB, "kubeflow", body)
    bad = {**body, "spec": {**body["spec"], "trainer": {**body["spec"]["trainer"], "numNode": 2}}}
    with pytest.raises(kube.LaunchError, match="422"):
        kube.launch(TrainerCluster(tmp_path), training.TRAINJOB, "kubeflow", bad)


# --------------------------------------------------------------------------- submit
def test_submit_creates_a_run_through_the_v2_rest_api_and_follows_it(monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "s3cret")
    with KfpApi(token="s3cret") as api:
        args = [
            "pipeline",
            "submit",
            "--package",
            str(REPO / PIPELINE_FILE),
            "--host",
            api.url,
            "--run-name",
            "nightly",
            "--param",
            "epochs=2",
            "--param",
            'config_overrides={"train.max_steps": 50}',
            "--gpu",
            "a100-80gb",
            "--wait",
            "--config",
            str(REPO / "params.yaml"),
        ]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        [create] = [r for r in api.requests if r["method"] == "POST" and r["path"] == "/apis/v2beta1/runs"]
        assert all(
            {k.lower(): v for k, v in r["headers"].items()}["authorization"] == "Bearer s3cret" for r in api.requests
        )
    body = create["body"]
    assert body["display_name"] == "nightly" and body["service_account"] == "tuneline-pipeline"
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "tuneline"
    assert body["runtime_config"]["parameters"] == {
        "epochs": 2,
        "config_overrides": '{"train.max_steps": 50}',
        "gpu_node_selector": {"node.kubernetes.io/instance-type": "p4de.24xlarge"},
    }
    [exp] = api.experiments.values()
    assert exp["display_name"] == "tuneline" and body["experiment_id"] == exp["experiment_id"]
    run_id = body and next(iter(api.runs))
    assert f"{api.url}/#/runs/details/{run_id}" in result.output and "state: SUCCEEDED" in result.output


def test_submit_reports_a_failed_run_a_refusal_and_an_unreachable_endpoint(monkeypatch):
    params = ["--package", str(REPO / PIPELINE_FILE), "--config", str(REPO / "params.yaml")]
    with KfpApi(final_state="FAILED") as api:
        failed = CliRunner().invoke(app, ["pipeline", "submit", "--host", api.url, "--wait", *params])
    assert failed.exit_code == 1 and "state: FAILED" in failed.output
    with KfpApi(token="right") as api:
        monkeypatch.setenv("KFP_TOKEN", "wrong")
        refused = CliRunner().invoke(app, ["pipeline", "submit", "--host", api.url, *params])
    # the SDK probes healthz first; behind auth that is where a bad token surfaces
    assert refused.exit_code == 1 and "healthz" in refused.output and "$KFP_TOKEN was sent" in refused.output
    gone = CliRunner().invoke(app, ["pipeline", "submit", "--host", "http://127.0.0.1:9", *params])
    assert gone.exit_code == 1 and "cannot reach the KFP API" in gone.output
