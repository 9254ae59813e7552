"""`tuneline smoke` against a real OpenAI-compatible server (`transformers serve` on 127.0.0.1), as the
chart's helm test pod runs it, plus the two ways it must fail: unreachable and unhealthy."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from tests.conftest import free_port
from tests.test_chart import one, render
from tuneline.cli import app
from tuneline.inference.local_server import LocalServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(eval_assets):
    with LocalServer(eval_assets.judge_dir) as url:
        yield url


def test_smoke_checks_health_and_one_chat_completion(server):
    result = CliRunner().invoke(app, ["smoke", "--url", server, "--max-tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["health_status"] == 200 and report["url"] == server
    assert report["reply"].strip() and report["chat_s"] > 0 and report["health_s"] > 0
    assert report["model"], "the served model id comes from /v1/models"


def test_the_helm_test_pods_command_runs_against_a_server(server):
    """The chart's test pod command line, pointed at this server, is one the CLI accepts and passes."""
    [container] = one(render(), "Pod")["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["tuneline", "smoke"]
    options = dict(arg.removeprefix("--").split("=", 1) for arg in command[2:])
    assert set(options) == {"url", "model", "prompt", "max-tokens", "timeout"}
    options["url"] = server
    del options["model"]  # the pod asks for the LoRA adapter by name; this server serves one model
    result = CliRunner().invoke(app, ["smoke", *[f"--{k}={v}" for k, v in options.items()]])
    assert result.exit_code == 0, result.output
    assert "smoke: OK" in result.output and "health: HTTP 200" in result.output


def test_unreachable_endpoint_fails_with_a_clear_message():
    result = CliRunner().invoke(app, ["smoke", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "5"])
    assert result.exit_code == 1 and "/health is unreachable" in " ".join(result.output.split())


def test_unhealthy_endpoint_fails_before_any_chat_request():
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            self.send_response(503)
            self.end_headers()

        do_POST = do_GET  # noqa: N815

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        result = CliRunner().invoke(app, ["smoke", "--url", f"http://127.0.0.1:{httpd.server_address[1]}"])
    finally:
        httpd.shutdown()
    assert result.exit_code == 1 and "answered HTTP 503" in result.output
    assert seen == ["/health"]
