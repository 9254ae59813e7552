"""The chart's metrics sidecar (charts/tuneline/files/metrics_proxy.py), run as the pod runs it.

Prometheus's NetworkPolicy admits only the sidecar's port, so what the sidecar answers is all Prometheus's
namespace can reach: /metrics passes, the inference API does not. Here it fronts a stand-in server with both
(tests/test_serve_vllm.py runs it in front of the real vLLM), and the rendered chart is checked to run this file.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import free_port
from tests.test_chart import CHART, pod_containers, render

PROXY = CHART / "files" / "metrics_proxy.py"
SCRAPE = b'# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} 0.0\n'


class _Server(http.server.BaseHTTPRequestHandler):
    """A model server's two faces: /metrics and an API that must stay out of Prometheus's reach."""

    calls: list[str] = []

    def do_GET(self) -> None:
        self.calls.append(f"GET {self.path}")
        body = SCRAPE if self.path == "/metrics" else b'{"data": [{"id": "secret-model"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4" if self.path == "/metrics" else "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.calls.append(f"POST {self.path}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def proxy_in_front_of(upstream: str) -> Iterator[str]:
    """The sidecar as the chart starts it, on a free port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(PROXY), f"--port={port}", "--host=127.0.0.1", f"--upstream={upstream}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2)  # noqa: S310 - 127.0.0.1
            except urllib.error.HTTPError:
                break  # answering (with a refusal): up
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def status(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310 - 127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - 127.0.0.1
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    _Server.calls = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_only_metrics_pass_and_the_api_is_never_called(upstream: str) -> None:
    with proxy_in_front_of(f"{upstream}/metrics") as url:
        assert status(f"{url}/metrics") == (200, SCRAPE)
        assert status(f"{url}/metrics?name[]=x")[0] == 200
        for path in ("/v1/models", "/metrics/../v1/models", "/health", "/", "/metricsx"):
            code, body = status(f"{url}{path}")
            assert code == 404 and b"secret-model" not in body, path
        for method in ("POST", "PUT", "DELETE"):
            assert status(f"{url}/v1/chat/completions", method, b"{}")[0] == 405
            assert status(f"{url}/metrics", method, b"{}")[0] == 405
    assert _Server.calls == ["GET /metrics", "GET /metrics"], "nothing but the scrape reached the server"


def test_an_unreachable_server_is_a_502_not_a_hang() -> None:
    with proxy_in_front_of(f"http://127.0.0.1:{free_port()}/metrics") as url:
        started = time.monotonic()
        code, body = status(f"{url}/metrics")
        assert code == 502 and b"unavailable" in body and time.monotonic() - started < 10


@pytest.mark.parametrize("values", [None, CHART / "ci" / "llmisvc-values.yaml"], ids=["isvc", "llmisvc"])
def test_the_chart_runs_this_file_and_prometheus_reaches_only_its_port(values) -> None:
    docs = render(*(v for v in [values] if v))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-metrics-proxy"))
    assert config_map["data"]["metrics_proxy.py"] == PROXY.read_text()
    [sidecar] = [c for c in pod_containers(docs) if c["name"] == "metrics"]
    assert sidecar["command"] == ["python3", "/etc/tuneline/metrics_proxy.py"]
    [port] = [p["containerPort"] for p in sidecar["ports"]]
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    predictor = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-predictor"))
    [from_prometheus] = [
        rule
        for rule in predictor["spec"]["ingress"]
        if any(
            peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
            for peer in rule["from"]
        )
    ]
    assert from_prometheus["ports"] == [{"protocol": "TCP", "port": port}], "Prometheus reaches the sidecar only"
    off = render(*(v for v in [values] if v), sets=("serviceMonitor.enabled=false",))
    assert not [c for c in pod_containers(off) if c["name"] == "metrics"]
