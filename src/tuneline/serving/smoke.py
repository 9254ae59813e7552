"""Smoke test of a deployed model: is it healthy, and does one chat completion come back, how fast.

Run by the chart's ``helm test`` pod against the cluster-local predictor and after a promotion against the
environment's URL. It speaks the same OpenAI-compatible Messages API (through huggingface_hub's
InferenceClient) that TGI, vLLM and ``transformers serve`` all serve, so one check fits every runtime.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

from tuneline.errors import TunelineError
from tuneline.inference.client import Endpoint, EndpointError


class SmokeError(TunelineError, RuntimeError):
    """The endpoint is unhealthy or did not answer a chat request."""


@dataclass(frozen=True)
class SmokeResult:
    url: str
    model: str
    health_status: int
    health_s: float
    chat_s: float
    reply: str
    completion_tokens: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def _health(url: str, timeout_s: float, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{url}/health", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - the URL under test
            return resp.status
    except urllib.error.HTTPError as exc:
        refused = " (refused: the credential is missing or wrong)" if exc.code in (401, 403) else ""
        raise SmokeError(f"{url}/health answered HTTP {exc.code}{refused}") from None
    except OSError as exc:
        raise SmokeError(f"{url}/health is unreachable: {exc}") from None


def smoke(
    url: str,
    model: str | None = None,
    prompt: str = "Say hello in five words.",
    max_tokens: int = 16,
    timeout_s: float = 120.0,
    token: str | None = None,
    token_header: str = "authorization",
) -> SmokeResult:
    """Health, then one greedy chat completion (no retries: a smoke test reports the first failure).

    ``token`` is sent as a bearer token, or in ``token_header`` (an API-key gateway's ``x-api-key``)."""
    endpoint = Endpoint(
        url,
        api="chat",
        model=model,
        concurrency=1,
        timeout_s=timeout_s,
        max_retries=0,
        token=token,
        token_header=token_header,
    )
    started = time.perf_counter()
    status = _health(endpoint.url, timeout_s, endpoint.auth_headers())
    health_s = time.perf_counter() - started
    messages = [{"role": "user", "content": prompt}]
    started = time.perf_counter()
    try:
        completion = asyncio.run(endpoint.complete(messages, max_new_tokens=max_tokens))
    except EndpointError as exc:
        raise SmokeError(f"chat completion failed: {exc}") from None
    chat_s = time.perf_counter() - started
    if not completion.text.strip():
        raise SmokeError(f"{endpoint.url} answered with an empty completion")
    return SmokeResult(
        url=endpoint.url,
        model=endpoint.model or "",
        health_status=status,
        health_s=health_s,
        chat_s=chat_s,
        reply=completion.text,
        completion_tokens=completion.completion_tokens,
    )
