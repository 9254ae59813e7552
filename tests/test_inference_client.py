"""The TGI client: requests and read fields checked against TGI's OpenAPI spec; retries, limits, cache."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tgi_contract import TgiContractServer, chat_completion, generate_response, spec
from tuneline.inference.cache import CallCache, cache_key
from tuneline.inference.client import Endpoint, EndpointError, run_all

MESSAGES = [{"role": "user", "content": "Rate this answer."}]


def chat_reply(text: str = "Rating: [[7]]"):
    return lambda path, body: (200, chat_completion(text, body.get("model", "judge")))


def test_chat_requests_follow_tgis_chat_request_schema() -> None:
    with TgiContractServer(chat_reply()) as server:
        out = run_all(Endpoint(server.url), [MESSAGES, MESSAGES], max_new_tokens=32)
    assert [o.text for o in out] == ["Rating: [[7]]"] * 2
    assert (out[0].prompt_tokens, out[0].completion_tokens) == (11, 3)
    assert server.violations == []
    path, body, _ = server.requests[0]
    assert path == "/v1/chat/completions"
    assert body["messages"] == MESSAGES and body["max_tokens"] == 32
    assert body["model"] == "tgi-served-model"  # discovered from TGI's /v1/models ModelInfo


def test_generate_requests_follow_tgis_generate_request_schema() -> None:
    with TgiContractServer(lambda path, body: (200, generate_response("[[B]]"))) as server:
        out = run_all(Endpoint(server.url, api="generate"), [MESSAGES], max_new_tokens=8)
    assert out[0].text == "[[B]]" and out[0].completion_tokens == 3
    assert server.violations == []
    path, body, _ = server.requests[0]
    assert path == "/generate"
    assert body["inputs"] == "Rate this answer."
    assert body["parameters"]["max_new_tokens"] == 8 and body["parameters"]["do_sample"] is False


def test_fields_the_client_reads_exist_in_the_spec() -> None:
    schemas = spec()["components"]["schemas"]
    assert "message" in schemas["ChatCompletionComplete"]["required"]
    assert "content" in schemas["TextMessage"]["required"]
    assert {"prompt_tokens", "completion_tokens"} <= set(schemas["Usage"]["required"])
    assert "generated_text" in schemas["GenerateResponse"]["required"]
    assert "generated_tokens" in schemas["Details"]["required"]
    paths = spec()["paths"]
    assert {"/v1/chat/completions", "/generate", "/v1/models", "/health"} <= set(paths)


def test_a_contract_violation_is_visible() -> None:
    """The contract server is not an echo: a body TGI would reject is rejected here too."""
    import json
    import urllib.error
    import urllib.request

    with TgiContractServer(chat_reply()) as server:
        request = urllib.request.Request(
            f"{server.url}/v1/chat/completions",
            method="POST",
            data=json.dumps({"prompt": "hi"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)
    assert err.value.code == 422
    assert any("messages" in v for v in server.violations)
    assert any("undeclared field prompt" in v for v in server.violations)


def test_transient_errors_are_retried_with_backoff() -> None:
    calls = {"n": 0}

    def flaky(path: str, body: dict[str, Any]):
        calls["n"] += 1
        if calls["n"] <= 2:
            return 503, {"error": "model is loading", "error_type": "overloaded"}
        return 200, chat_completion("ok")

    with TgiContractServer(flaky) as server:
        out = run_all(Endpoint(server.url, max_retries=3, backoff_s=0.01), [MESSAGES], 8)
    assert out[0].text == "ok" and calls["n"] == 3


def test_client_errors_are_not_retried_and_say_what_happened() -> None:
    with TgiContractServer(lambda p, b: (422, {"error": "Input validation error", "error_type": "validation"})) as s:
        out = run_all(Endpoint(s.url, max_retries=3, backoff_s=0.01), [MESSAGES], 8)
    assert isinstance(out[0], EndpointError)
    assert "HTTP 422" in str(out[0]) and len(s.requests) == 1


def test_retries_give_up_after_max_retries() -> None:
    with TgiContractServer(lambda p, b: (429, {"error": "busy", "error_type": "overloaded"})) as s:
        out = run_all(Endpoint(s.url, max_retries=2, backoff_s=0.01), [MESSAGES], 8)
    assert isinstance(out[0], EndpointError) and len(s.requests) == 3


def test_timeouts_are_retried_then_reported() -> None:
    with TgiContractServer(chat_reply(), delay_s=1.0) as s:
        out = run_all(Endpoint(s.url, timeout_s=0.2, max_retries=1, backoff_s=0.01), [MESSAGES], 8)
    assert isinstance(out[0], EndpointError) and len(s.requests) == 2


def test_concurrency_is_bounded() -> None:
    with TgiContractServer(chat_reply(), delay_s=0.15) as s:
        out = run_all(Endpoint(s.url, concurrency=3), [MESSAGES] * 12, 8)
    assert all(o.text == "Rating: [[7]]" for o in out)
    assert s.max_in_flight == 3


def test_bearer_token_is_sent() -> None:
    with TgiContractServer(chat_reply()) as s:
        run_all(Endpoint(s.url, token="secret-token"), [MESSAGES], 8)
    headers = {k.lower(): v for k, v in s.requests[0][2].items()}
    assert headers.get("authorization") == "Bearer secret-token"


def test_hf_token_is_never_sent_to_an_endpoint_without_a_token_of_its_own(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_this_endpoint")
    for api in ("chat", "generate"):
        reply = chat_reply() if api == "chat" else (lambda p, b: (200, generate_response("[[A]]")))
        with TgiContractServer(reply) as s:
            run_all(Endpoint(s.url, api=api), [MESSAGES], max_new_tokens=4)
        assert s.requests and all("hf_not_for_this_endpoint" not in str(h) for _, _, h in s.requests), api


def test_a_token_over_plain_http_to_another_host_is_warned_about() -> None:
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("tuneline").addHandler(handler)
    try:
        Endpoint("http://judge.example.org:8080", token="tok-123456")
        Endpoint("https://judge.example.org", token="tok-123456")
        Endpoint("http://127.0.0.1:8080", token="tok-123456")
    finally:
        logging.getLogger("tuneline").removeHandler(handler)
    warned = [r.getMessage() for r in records if "plain http" in r.getMessage()]
    assert warned == ["sending a bearer token over plain http to http://judge.example.org:8080: use https"]


def test_unreachable_endpoint_is_a_clear_error() -> None:
    from tests.conftest import free_port

    out = run_all(Endpoint(f"http://127.0.0.1:{free_port()}", max_retries=1, backoff_s=0.01), [MESSAGES], 8)
    assert isinstance(out[0], EndpointError) and "127.0.0.1" in str(out[0])


OFFLINE_SCRIPT = """
import asyncio
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import OfflineModeIsEnabled
from tests.test_inference_client import MESSAGES, chat_reply
from tests.tgi_contract import TgiContractServer
from tuneline.inference.client import Endpoint, run_all

with TgiContractServer(chat_reply()) as s, TgiContractServer(chat_reply()) as other:
    [out] = run_all(Endpoint(s.url, max_retries=0), [MESSAGES], 8)
    print("endpoint:", out.text)
    async def not_an_endpoint():
        async with AsyncInferenceClient(base_url=other.url) as client:
            await client.chat_completion(MESSAGES, model="m", max_tokens=4)
    try:
        asyncio.run(not_an_endpoint())
        print("other: reached")
    except OfflineModeIsEnabled:
        print("other: refused")
"""


def test_hf_hub_offline_still_reaches_configured_endpoints_and_nothing_else() -> None:
    """Air-gapped users set HF_HUB_OFFLINE=1 globally: tuneline's endpoints work, the hub's guard stays for the rest."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "endpoint: Rating: [[7]]" in r.stdout and "other: refused" in r.stdout


def test_cache_survives_a_new_process_and_separates_keys(tmp_path) -> None:
    key = cache_key("judge-a", "chat", 16, MESSAGES)
    first = CallCache(tmp_path / "c.sqlite")
    assert first.get(key) is None
    first.put(key, "Rating: [[5]]")
    first.close()
    again = CallCache(tmp_path / "c.sqlite")
    assert again.get(key) == "Rating: [[5]]"
    assert again.get(cache_key("judge-b", "chat", 16, MESSAGES)) is None  # another judge is another entry
    assert (again.hits, again.misses) == (1, 1)
