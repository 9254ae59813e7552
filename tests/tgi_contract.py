"""A local HTTP server that speaks TGI's published OpenAPI contract (../shared/reference/tgi/openapi.json).

TGI itself cannot run here. This server validates every request body against the spec's
request schema (and rejects fields the spec does not declare), and answers with a body
that it first validates against the spec's response schema, so a client that passes
against it sends what TGI accepts and reads only what TGI returns.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tgi" / "openapi.json"


def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def validator(name: str) -> Any:
    from openapi_schema_validator import OAS30Validator

    full = spec()
    return OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": full["components"]})


def undeclared(body: dict[str, Any], schema: str) -> set[str]:
    """Keys of ``body`` (and of GenerateRequest.parameters) that the spec's schema does not declare."""
    schemas = spec()["components"]["schemas"]
    extra = set(body) - set(schemas[schema]["properties"])
    if schema == "GenerateRequest" and isinstance(body.get("parameters"), dict):
        extra |= {f"parameters.{k}" for k in set(body["parameters"]) - set(schemas["GenerateParameters"]["properties"])}
    return extra


def chat_completion(text: str, model: str = "judge") -> dict[str, Any]:
    return {"id": "cmpl-1", "created": int(time.time()), "model": model, "system_fingerprint": "3.3.6-native",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}


def generate_response(text: str) -> dict[str, Any]:
    return {"generated_text": text,
            "details": {"finish_reason": "eos_token", "generated_tokens": 3, "prefill": [], "tokens": [],
                        "seed": None}}


class TgiContractServer:
    """``reply(path, body) -> (status, payload)`` decides each answer; requests are recorded."""

    def __init__(self, reply: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]],
                 delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.violations: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._validators = {"/v1/chat/completions": ("ChatRequest", "ChatCompletion"),
                            "/generate": ("GenerateRequest", "GenerateResponse")}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/v1/models":
                    info = {"id": "tgi-served-model", "object": "model", "created": 1, "owned_by": "tgi"}
                    validator("ModelInfo").validate(info)
                    self._send(200, info)
                else:
                    self._send(200 if self.path == "/health" else 404, {})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer._lock:
                    outer.requests.append((self.path, body, dict(self.headers)))
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    if self.path not in outer._validators:
                        outer.violations.append(f"POST {self.path} is not a TGI route")
                        self._send(404, {"error": "not found", "error_type": "not_found"})
                        return
                    request_schema, response_schema = outer._validators[self.path]
                    errors = [e.message for e in validator(request_schema).iter_errors(body)]
                    errors += [f"undeclared field {k}" for k in undeclared(body, request_schema)]
                    if errors:
                        outer.violations += errors
                        self._send(422, {"error": "; ".join(errors), "error_type": "validation"})
                        return
                    time.sleep(outer.delay_s)
                    status, payload = outer.reply(self.path, body)
                    if status == 200:
                        validator(response_schema).validate(payload)
                    else:
                        validator("ErrorResponse").validate(payload)
                    self._send(status, payload)
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TgiContractServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
