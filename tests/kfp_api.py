"""A local HTTP server speaking the KFP v2beta1 REST API, as far as ``tuneline pipeline submit`` uses it.

It checks each request against the published API models of ``kfp-server-api`` (the OpenAPI-generated client
of the same version as the SDK): a run-creation body may only carry fields of ``V2beta1Run`` (and of
``V2beta1RuntimeConfig`` inside), must name an experiment that exists, and must hold a pipeline spec. It
keeps every request for the test to inspect and moves each run PENDING → RUNNING → SUCCEEDED on reads.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kfp_server_api.models import V2beta1Experiment, V2beta1Run, V2beta1RuntimeConfig

RUN_FIELDS = set(V2beta1Run.attribute_map.values())
RUNTIME_FIELDS = set(V2beta1RuntimeConfig.attribute_map.values())
EXPERIMENT_FIELDS = set(V2beta1Experiment.attribute_map.values())
STATES = ["PENDING", "RUNNING", "SUCCEEDED"]


class KfpApi:
    def __init__(self, token: str | None = None, final_state: str = "SUCCEEDED") -> None:
        self.token = token
        self.final_state = final_state
        self.requests: list[dict[str, Any]] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.reads: dict[str, int] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                api.requests.append(
                    {
                        "method": method,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._reply(401, {"error": "unauthenticated", "code": 16})
                code, payload = api.route(method, url.path, parse_qs(url.query), body)
                self._reply(code, payload)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KfpApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and path == "/apis/v2beta1/experiments":
            flt = json.loads(query.get("filter", ["{}"])[0] or "{}")
            wanted = {
                p.get("string_value", p.get("stringValue"))
                for p in flt.get("predicates", [])
                if p.get("key") == "display_name"
            }
            found = [e for e in self.experiments.values() if not wanted or e["display_name"] in wanted]
            return 200, {"experiments": found, "total_size": len(found)}
        if method == "POST" and path == "/apis/v2beta1/experiments":
            unknown = set(body) - EXPERIMENT_FIELDS
            if unknown or not body.get("display_name"):
                return 400, {"error": f"bad experiment: unknown {sorted(unknown)}", "code": 3}
            exp = {**body, "experiment_id": str(uuid.uuid4())}
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if method == "POST" and path == "/apis/v2beta1/runs":
            return self._create_run(body)
        if method == "GET" and path.startswith("/apis/v2beta1/runs/"):
            run_id = path.rsplit("/", 1)[-1]
            if run_id not in self.runs:
                return 404, {"error": "run not found", "code": 5}
            self.reads[run_id] = self.reads.get(run_id, 0) + 1
            states = [*STATES[:-1], self.final_state]
            self.runs[run_id]["state"] = states[min(self.reads[run_id], len(states) - 1)]
            return 200, self.runs[run_id]
        return 404, {"error": f"no route {method} {path}", "code": 5}

    def _create_run(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        problems = []
        if unknown := set(body) - RUN_FIELDS:
            problems.append(f"unknown run fields {sorted(unknown)}")
        if unknown := set(body.get("runtime_config") or {}) - RUNTIME_FIELDS:
            problems.append(f"unknown runtime_config fields {sorted(unknown)}")
        if not body.get("display_name"):
            problems.append("display_name is required")
        if body.get("experiment_id") not in self.experiments:
            problems.append("experiment_id does not exist")
        spec = body.get("pipeline_spec") or {}
        if "pipeline_spec" in spec:  # with Kubernetes settings the SDK sends {pipeline_spec, platform_spec}
            if set(spec) - {"pipeline_spec", "platform_spec"}:
                problems.append(f"unknown pipeline_spec wrapper keys {sorted(set(spec))}")
            spec = spec["pipeline_spec"]
        if not (spec.get("pipelineInfo", {}).get("name") and spec.get("root") and spec.get("deploymentSpec")):
            problems.append("pipeline_spec must be a compiled PipelineSpec")
        if problems:
            return 400, {"error": "; ".join(problems), "code": 3}
        run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": "2026-11-25T00:00:00Z"}
        self.runs[run["run_id"]] = run
        return 200, run
