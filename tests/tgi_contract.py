"""A local HTTP server that speaks TGI's published contract.

TGI itself cannot run here. This server validates every request body against the contract's
request schema (and rejects fields the contract does not declare), and answers with a body
that it first validates against the response schema, so a client that passes against it sends
what TGI accepts and reads only what TGI returns.

The contract is TGI's OpenAPI spec (``tgi/openapi.json``, pinned in contracts/manifest.json) where it is
present; otherwise the TGI-compatible task types that huggingface_hub generates from the same API
(``huggingface_hub.inference._generated.types``), which ship in a registry package: the same field names,
required fields and nesting, checked recursively.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import contracts

SPEC = "tgi/openapi.json"
# OpenAPI schema name → huggingface_hub's generated type of the same message (None: no generated type).
HF_TYPES = {
    "ChatRequest": ("chat_completion", "ChatCompletionInput"),
    "ChatCompletion": ("chat_completion", "ChatCompletionOutput"),
    "GenerateRequest": ("text_generation", "TextGenerationInput"),
    "GenerateResponse": ("text_generation", "TextGenerationOutput"),
    "ModelInfo": None,
    "ErrorResponse": None,
}


def spec() -> dict[str, Any]:
    """TGI's OpenAPI document; skips the calling test when it is absent."""
    return json.loads(contracts.require(SPEC).read_text())


def schema_errors(name: str, body: Any) -> list[str]:
    """Why ``body`` does not match contract schema ``name`` (undeclared fields included); empty when it does."""
    path = contracts.find(SPEC)
    if path is not None:
        return _openapi_errors(json.loads(path.read_text()), name, body)
    target = HF_TYPES[name]
    if target is None:
        return []
    import importlib

    module = importlib.import_module(f"huggingface_hub.inference._generated.types.{target[0]}")
    return _dataclass_errors(getattr(module, target[1]), body, "")


def _openapi_errors(full: dict[str, Any], name: str, body: Any) -> list[str]:
    from openapi_schema_validator import OAS30Validator

    errors = [
        e.message
        for e in OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": full["components"]}).iter_errors(
            body
        )
    ]
    schemas = full["components"]["schemas"]
    if isinstance(body, dict) and "properties" in schemas[name]:
        errors += [f"undeclared field {k}" for k in set(body) - set(schemas[name]["properties"])]
        if name == "GenerateRequest" and isinstance(body.get("parameters"), dict):
            errors += [
                f"undeclared field parameters.{k}"
                for k in set(body["parameters"]) - set(schemas["GenerateParameters"]["properties"])
            ]
    return errors


def _dataclass_errors(tp: Any, value: Any, where: str) -> list[str]:
    import dataclasses
    import types
    import typing

    if value is None:
        return []
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        results = [_dataclass_errors(a, value, where) for a in options]
        return [] if any(not r for r in results) else results[0]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        (item,) = typing.get_args(tp) or (Any,)
        return [e for i, v in enumerate(value) for e in _dataclass_errors(item, v, f"{where}[{i}]")]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        fields = {f.name: f for f in dataclasses.fields(tp)}
        hints = typing.get_type_hints(tp)
        at = f"{where}." if where else ""
        errors = [f"undeclared field {at}{k}" for k in set(value) - set(fields)]
        errors += [
            f"{k!r} is a required property" + (f" of {where}" if where else "")
            for k, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and k not in value
        ]
        for k, v in value.items():
            if k in fields:
                errors += _dataclass_errors(hints[k], v, f"{at}{k}")
        return errors
    if tp in (int, float) and not (isinstance(value, int | float) and not isinstance(value, bool)):
        return [f"{where}: {value!r} is not a number"]
    if tp is str and not isinstance(value, str):
        return [f"{where}: {value!r} is not of type 'string'"]
    if tp is bool and not isinstance(value, bool):
        return [f"{where}: {value!r} is not of type 'boolean'"]
    return []


def chat_completion(text: str, model: str = "judge") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "3.3.6-native",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def chat_completion_logprobs(alternatives: list[tuple[str, float]], model: str = "judge") -> dict[str, Any]:
    """A one-token chat completion with its top alternatives (``logprobs: true, top_logprobs: k``)."""
    top = sorted(alternatives, key=lambda a: -a[1])
    chosen, logprob = top[0]
    body = chat_completion(chosen, model)
    body["choices"][0]["finish_reason"] = "length"
    body["choices"][0]["logprobs"] = {
        "content": [
            {"token": chosen, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}
        ]
    }
    return body


def generate_response(text: str) -> dict[str, Any]:
    return {
        "generated_text": text,
        "details": {"finish_reason": "eos_token", "generated_tokens": 3, "prefill": [], "tokens": [], "seed": None},
    }


class TgiContractServer:
    """``reply(path, body) -> (status, payload)`` decides each answer; requests are recorded."""

    def __init__(
        self, reply: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]], delay_s: float = 0.0
    ) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.violations: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._validators = {
            "/v1/chat/completions": ("ChatRequest", "ChatCompletion"),
            "/generate": ("GenerateRequest", "GenerateResponse"),
        }
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
                    assert not schema_errors("ModelInfo", info)
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
                    errors = schema_errors(request_schema, body)
                    if errors:
                        outer.violations += errors
                        self._send(422, {"error": "; ".join(errors), "error_type": "validation"})
                        return
                    time.sleep(outer.delay_s)
                    status, payload = outer.reply(self.path, body)
                    answer_errors = schema_errors(response_schema if status == 200 else "ErrorResponse", payload)
                    assert not answer_errors, f"the test's own reply breaks the contract: {answer_errors}"
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
