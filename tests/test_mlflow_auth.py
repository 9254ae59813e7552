"""The in-cluster MLflow server's configuration, run for real: the container's own args and environment
(from mlflow/base/deployment.yaml) on a real PostgreSQL (Debian's `postgresql`) for both the tracking store
and the basic-auth user store. A request without credentials is refused, registration with them works, and
the database password never appears on any process's command line."""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
DB_PASSWORD = "canary-db-7Hq2"  # noqa: S105 - canaries: must never show up on a command line
ADMIN = ("admin", "canary-admin-Vx91")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PG_BIN, reason="PostgreSQL is absent (apt-get install postgresql)"),
]


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    pytest.importorskip("psycopg", reason="psycopg is absent (pip install 'psycopg[binary]')")
    # its own directory, not under pytest's (0700, root's): the server runs as the postgres user when we are root
    root = Path(tempfile.mkdtemp(prefix="tuneline-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    (root / "pwfile").write_text("pg-super\n")
    if os.geteuid() == 0:
        for p in (root, sock, root / "pwfile"):
            shutil.chown(p, "postgres")
    bin_ = Path(PG_BIN[-1])
    subprocess.run(_as_postgres([str(bin_ / "initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256",
                                 f"--pwfile={root / 'pwfile'}"]), check=True, capture_output=True,
                   timeout=120)  # fmt: skip
    port = free_port()
    subprocess.run(_as_postgres([str(bin_ / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                                 f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    import psycopg

    with (
        psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", password="pg-super", dbname="postgres", autocommit=True
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f"CREATE USER mlflow PASSWORD '{DB_PASSWORD}'")
        cur.execute("CREATE DATABASE mlflow OWNER mlflow")
        cur.execute("CREATE DATABASE mlflow_auth OWNER mlflow")
    yield f"postgresql://mlflow:{DB_PASSWORD}@127.0.0.1:{port}"
    subprocess.run(_as_postgres([str(bin_ / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                   capture_output=True, timeout=120)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


def container() -> dict:
    docs = list(yaml.safe_load_all((REPO / "mlflow" / "base" / "deployment.yaml").read_text()))
    [deployment] = [d for d in docs if d and d["kind"] == "Deployment"]
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """`mlflow server` with the container's args and env, the Secrets' values supplied as the cluster would."""
    work = tmp_path_factory.mktemp("mlflow")
    c = container()
    secrets = {
        ("mlflow-backend", "uri"): f"{postgres}/mlflow",
        ("mlflow-auth", "admin-username"): ADMIN[0],
        ("mlflow-auth", "admin-password"): ADMIN[1],
        ("mlflow-auth", "flask-secret-key"): "test-flask-key",
    }
    configmaps = {("mlflow", "artifacts-destination"): str(work / "artifacts")}
    ini = work / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {postgres}/mlflow_auth\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    for e in c["env"]:
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref:
            env[e["name"]] = secrets[(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])]
        elif "configMapKeyRef" in ref:
            env[e["name"]] = configmaps[(ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])]
        elif e["name"] == "MLFLOW_AUTH_CONFIG_PATH":
            mount = next(m for m in c["volumeMounts"] if e["value"].startswith(m["mountPath"]))
            assert mount["name"] == "auth-config" and e["value"].endswith("/basic_auth.ini")
            env[e["name"]] = str(ini)  # the Secret's basic_auth.ini, mounted
        else:
            env[e["name"]] = e["value"].replace("/tmp", str(work)) if e["name"] == "HOME" else e["value"]
    port = free_port()
    args = [a for a in c["args"] if not a.startswith(("--host=", "--port=", "--workers="))]
    args += ["--host=127.0.0.1", f"--port={port}", "--workers=1"]
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed below
    mlflow = str(Path(os.sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow, "server", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):  # noqa: S310
                break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(1)
    else:
        pass
    if proc.poll() is not None:
        log.close()
        pytest.fail(f"mlflow server exited: {(work / 'server.log').read_text()[-3000:]}")
    yield url, proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - the local test server
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_request_without_credentials_is_refused(server):
    url, _ = server
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert get(search) == 401
    assert get(search, ("admin", "wrong")) == 401
    assert get(search, ADMIN) == 200
    assert get(f"{url}/health") == 200, "the kubelet's probe needs no credentials"


def test_registration_with_credentials_works(server, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    url, _ = server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    client = MlflowClient(url)
    exp = client.create_experiment("auth-test")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "judge_score", 7.5)
    client.create_registered_model("tuneline-chat")
    version = client.create_model_version("tuneline-chat", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("tuneline-chat", "candidate", version.version)
    assert client.get_model_version_by_alias("tuneline-chat", "candidate").run_id == run.info.run_id
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(mlflow.exceptions.MlflowException):
        MlflowClient(url).get_registered_model("tuneline-chat")


def test_the_database_password_is_on_no_command_line(server):
    _, proc = server
    pids = [proc.pid]
    out = subprocess.run(["pgrep", "-g", str(os.getpgid(proc.pid))], capture_output=True, text=True)
    pids += [int(p) for p in out.stdout.split()]
    cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in set(pids)
                if Path(f"/proc/{pid}/cmdline").exists()}  # fmt: skip
    assert len(cmdlines) >= 2, "the server and its worker"
    for pid, cmdline in cmdlines.items():
        assert DB_PASSWORD not in cmdline and ADMIN[1] not in cmdline, (pid, cmdline)
    assert json.dumps(container()).count("postgresql://") == 0
