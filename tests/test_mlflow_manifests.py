"""The in-cluster MLflow server manifests (mlflow/): build, validate against Kubernetes schemas, stay hardened."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

KUBECTL = shutil.which("kubectl")


def build(cloud: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [KUBECTL, "kustomize", str(REPO / "mlflow" / cloud)], capture_output=True, text=True, check=True, timeout=60
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (for kustomize) is not installed")
@pytest.mark.parametrize(
    ("cloud", "annotation", "scheme"),
    [
        ("eks", "eks.amazonaws.com/role-arn", "s3://"),
        ("gke", "iam.gke.io/gcp-service-account", "gs://"),
    ],
)
def test_overlay_builds_validates_and_uses_workload_identity(cloud: str, annotation: str, scheme: str) -> None:
    import kubernetes_validate

    docs = build(cloud)
    assert {d["kind"] for d in docs} == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)
        assert doc["metadata"].get("namespace", "mlflow") == "mlflow"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tuneline"
    assert annotation in by_kind(docs, "ServiceAccount")["metadata"]["annotations"]
    assert by_kind(docs, "ConfigMap")["data"]["artifacts-destination"].startswith(scheme)
    # the tracking server reaches the metadata server only where Workload Identity needs it (GKE), and only it
    metadata = [
        (r["to"][0]["ipBlock"]["cidr"], r["ports"][0]["port"])
        for d in docs
        if d["kind"] == "NetworkPolicy"
        for r in d["spec"].get("egress", [])
        if "ipBlock" in r["to"][0] and r["to"][0]["ipBlock"]["cidr"].startswith("169.254.")
    ]
    assert metadata == ([("169.254.169.254/32", 80), ("169.254.169.252/32", 988)] if cloud == "gke" else [])


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (for kustomize) is not installed")
def test_server_is_hardened_and_takes_credentials_only_from_secrets() -> None:
    docs = build("eks")
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    image = container["image"]
    assert ":" in image and not image.endswith(":latest")
    assert image.rsplit(":", 1)[1] == "3.17.2"  # the server matches the client mlflow pinned in pyproject
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-backend", "key": "uri"}
    assert "--serve-artifacts" in container["args"] and "--app-name=basic-auth" in container["args"]
    # the database URI is read from the environment, never expanded into the command line (ps shows that)
    assert not any("STORE_URI" in a or "postgresql" in a for a in container["args"])
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-auth"
    rendered = yaml.safe_dump_all(docs)
    assert "postgresql://" not in rendered and "AWS_SECRET_ACCESS_KEY" not in rendered
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.slow
def test_mlflow_up_serves_the_local_store(tmp_path) -> None:
    """`tuneline mlflow up` serves the configured SQLite store: a run logged locally is visible over HTTP."""
    import json
    import sys
    import time
    import urllib.request
    from pathlib import Path

    import mlflow
    from tests.conftest import free_port
    from tuneline.tracking import use_tracking_uri

    store = f"sqlite:///{tmp_path / 'mlruns.db'}"  # absolute: MLflow caches engines per URI string
    use_tracking_uri(store)
    experiment = mlflow.set_experiment("tuneline").experiment_id
    with mlflow.start_run(run_name="seen-over-http"):
        mlflow.log_metric("x", 1.0)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tuneline"),
            "mlflow",
            "up",
            "--port",
            str(port),
            "-S",
            f"registry.tracking_uri={store}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
                    method="POST",
                    data=json.dumps({"experiment_ids": [experiment]}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=2) as resp:
                    runs = json.load(resp)["runs"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
                time.sleep(0.5)
        assert [r["info"]["run_name"] for r in runs] == ["seen-over-http"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
