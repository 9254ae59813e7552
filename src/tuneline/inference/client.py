"""One chat endpoint behind TGI's two APIs, with bounded concurrency, timeouts and retries.

Requests follow TGI's published OpenAPI contract (``/v1/chat/completions`` with a
``ChatRequest`` body, ``/generate`` with a ``GenerateRequest`` body); the only response
fields read are ``choices[0].message.content`` and ``usage`` (chat) and ``generated_text``
(generate). ``tests/test_inference_contract.py`` checks both against the spec.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from tuneline.errors import TunelineError
from tuneline.redact import redact_url, register_secret, secret_from_env

log = logging.getLogger("tuneline")
LOOPBACK = ("127.0.0.1", "localhost", "::1")

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
Api = Literal["chat", "generate"]


class EndpointError(TunelineError, RuntimeError):
    """The endpoint could not answer (unreachable, refused the request, or kept failing after retries)."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # logprob requests: the first generated token's alternatives, (token, logprob), most likely first
    top_logprobs: list[tuple[str, float]] | None = None
    # requests with tools: the calls the server parsed from the answer, as {"name", "arguments"}
    tool_calls: tuple[dict[str, Any], ...] | None = None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _retryable(exc: BaseException) -> bool:
    from huggingface_hub.errors import InferenceTimeoutError

    status = _status(exc)  # first: HTTP errors are OSError subclasses too
    if status is not None:
        return status in RETRY_STATUS
    if isinstance(exc, InferenceTimeoutError | asyncio.TimeoutError | ConnectionError | OSError):
        return True
    # transport errors (connection refused/reset, read timeouts) carry no response
    return type(exc).__name__.endswith(
        ("ConnectError", "ReadError", "TimeoutException", "ReadTimeout", "RemoteProtocolError", "WriteError")
    )


def messages_to_prompt(messages: list[dict[str, str]]) -> str:
    """Raw prompt for ``/generate``, which takes text: the turns' contents, system first."""
    return "\n\n".join(m["content"] for m in messages)


_ENDPOINT_ORIGINS: set[tuple[str, str | None, int | None]] = set()


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _let_endpoints_through_offline_mode(url: str) -> None:
    """Air-gapped users set ``HF_HUB_OFFLINE=1`` globally, and huggingface_hub then refuses every URL, even
    127.0.0.1. A configured endpoint is not the hub: its requests go through; every other request of
    huggingface_hub's async client still meets the hub's own checks, offline refusal included. Installed
    through huggingface_hub's public ``set_async_client_factory``."""
    if not _ENDPOINT_ORIGINS:
        import httpx2
        from huggingface_hub import set_async_client_factory
        from huggingface_hub.utils._http import async_hf_request_event_hook, async_hf_response_event_hook

        async def on_request(request: Any) -> None:
            if _origin(str(request.url)) not in _ENDPOINT_ORIGINS:
                await async_hf_request_event_hook(request)

        set_async_client_factory(
            lambda: httpx2.AsyncClient(
                event_hooks={"request": [on_request], "response": [async_hf_response_event_hook]},
                follow_redirects=True,
                timeout=None,
            )
        )
    _ENDPOINT_ORIGINS.add(_origin(url))


class Endpoint:
    """An inference server at ``url`` (its root, e.g. ``http://host:8080``).

    ``model`` is the id sent in chat requests; None asks ``/v1/models`` once (TGI, vLLM and
    ``transformers serve`` all list the served model there) and falls back to ``"tgi"``.
    """

    def __init__(
        self,
        url: str,
        api: Api = "chat",
        model: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        token: str | None = None,
        token_header: str = "authorization",
    ) -> None:
        self.url = url.rstrip("/")
        for suffix in ("/v1/chat/completions", "/v1", "/generate"):
            self.url = self.url.removesuffix(suffix)
        self.api = api
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.token = token
        self._models: tuple[str, str | None] | None = None
        # where the credential goes: a bearer token (TGI, vLLM, a JWT gateway) or an API-key header of its own
        self.token_header = token_header.lower()
        register_secret(token)
        if token and urlsplit(self.url).scheme == "http" and urlsplit(self.url).hostname not in LOOPBACK:
            log.warning("sending a bearer token over plain http to %s: use https", redact_url(self.url))
        self._concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._client: Any = None

    @classmethod
    def from_config(cls, url: str, judge: Any, token_env: str | None = None, **overrides: Any) -> Endpoint:
        """An endpoint with the judge's client settings; its bearer token comes from ``token_env`` (default: the
        judge's own variable), so each endpoint gets only its own credential."""
        kwargs = dict(
            api=judge.api,
            concurrency=judge.concurrency,
            timeout_s=judge.timeout_s,
            max_retries=judge.max_retries,
            backoff_s=judge.backoff_s,
            token=secret_from_env(token_env or judge.token_env),
        )
        return cls(url, **{**kwargs, **overrides})

    def _ensure_client(self) -> Any:
        if self._client is None:
            from huggingface_hub import AsyncInferenceClient

            _let_endpoints_through_offline_mode(self.url)

            base = f"{self.url}/generate" if self.api == "generate" else self.url
            # With no token of its own, huggingface_hub would send HF_TOKEN (or the saved hub login) to whatever
            # endpoint this is; a None header is dropped from the request instead.
            bearer = self.token if self.token_header == "authorization" else None
            headers = {} if bearer else {"authorization": None, **self.auth_headers()}
            self._client = AsyncInferenceClient(base_url=base, api_key=bearer, timeout=self.timeout_s, headers=headers)
        return self._client

    def auth_headers(self) -> dict[str, str]:
        """The credential as request headers (none without a token)."""
        if not self.token:
            return {}
        if self.token_header == "authorization":
            return {"Authorization": f"Bearer {self.token}"}
        return {self.token_header: self.token}

    async def served_model(self) -> str:
        if self.model is None:
            self.model = (await self._listing())[0]
        return self.model

    async def _listing(self) -> tuple[str, str | None]:
        if self._models is None:
            self._models = await asyncio.to_thread(self._discover_model)
        return self._models

    def _discover_model(self) -> tuple[str, str | None]:
        """(first served model id, its ``owned_by``) from ``/v1/models``: OpenAI-style ``{"data": [{"id"}]}``
        (vLLM says ``owned_by: vllm``; transformers) or TGI's ``ModelInfo`` (no owner)."""
        import json
        import urllib.request

        request = urllib.request.Request(f"{self.url}/v1/models", headers=self.auth_headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:  # noqa: S310 - configured URL
                body = json.load(resp)
        except (OSError, ValueError):
            return "tgi", None
        if isinstance(body, dict) and body.get("data"):
            first = body["data"][0]
            return str(first.get("id") or "tgi"), first.get("owned_by")
        return (str(body.get("id") or "tgi") if isinstance(body, dict) else "tgi"), None

    async def complete(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int,
        seed: int = 0,
        top_logprobs: int | None = None,
        labels: tuple[str, ...] | None = None,
        tools: list[dict[str, Any]] | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        """Completion of ``messages`` (offered ``tools``, where given), greedy unless ``temperature`` is set (then
        sampled with ``seed``); retried with exponential backoff on transient errors.

        ``top_logprobs=k`` asks for one token with its ``k`` most likely alternatives (chat API only:
        TGI's ``ChatRequest`` and vLLM/OpenAI take ``logprobs``/``top_logprobs``).
        """
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._concurrency)
        client = self._ensure_client()
        model = await self.served_model() if self.api == "chat" else None
        constrain = bool(top_logprobs and labels) and (await self._listing())[1] == "vllm"
        async with self._semaphore:
            for attempt in range(self.max_retries + 1):
                try:
                    return await self._request(
                        client, model, messages, max_new_tokens, seed, top_logprobs, labels if constrain else None,
                        tools, temperature,
                    )  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - classified below
                    if type(exc).__name__ == "OfflineModeIsEnabled":
                        raise EndpointError(str(exc)) from None
                    if attempt == self.max_retries or not _retryable(exc):
                        status = _status(exc)
                        detail = f"HTTP {status}" if status else type(exc).__name__
                        raise EndpointError(f"{self.url} ({self.api}): {detail}: {exc}") from None
                    delay = self.backoff_s * 2**attempt * (1 + 0.1 * random.random())  # noqa: S311 - jitter
                    log.warning(
                        "endpoint %s: %s, retry %d/%d in %.1fs",
                        self.url,
                        type(exc).__name__,
                        attempt + 1,
                        self.max_retries,
                        delay,
                    )
                    await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _request(
        self,
        client: Any,
        model: str | None,
        messages: list[dict[str, str]],
        max_new_tokens: int,
        seed: int,
        top_logprobs: int | None = None,
        labels: tuple[str, ...] | None = None,
        tools: list[dict[str, Any]] | None = None,
        temperature: float = 0.0,
    ) -> Completion:
        if tools:
            return await self._request_with_tools(client, model, messages, max_new_tokens, seed, tools)
        if top_logprobs:
            if self.api != "chat":
                raise EndpointError(f"{self.url}: logprob judging needs the chat API (eval.judge.api: chat)")
            # vLLM: the first token restricted to the labels (structured outputs' choice), whose logprobs are then
            # the judge's distribution over the labels alone, as in-process; all of them are asked for
            extra = {"structured_outputs": {"choice": list(labels)}} if labels else None
            out = await client.chat_completion(
                messages,
                model=model,
                max_tokens=1,
                temperature=0.0,
                seed=seed,
                logprobs=True,
                top_logprobs=max(top_logprobs, len(labels)) if labels else top_logprobs,
                extra_body=extra,
            )
            choice = out.choices[0]
            content = getattr(choice.logprobs, "content", None) or []
            alternatives = [(a.token, float(a.logprob)) for a in (content[0].top_logprobs or [])] if content else []
            if content and not alternatives:  # a server that returns the chosen token only
                alternatives = [(content[0].token, float(content[0].logprob))]
            return Completion(text=choice.message.content or "", top_logprobs=alternatives)
        if self.api == "generate":
            sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
            out = await client.text_generation(
                messages_to_prompt(messages), max_new_tokens=max_new_tokens, seed=seed, details=True, **sampling
            )
            tokens = getattr(getattr(out, "details", None), "generated_tokens", None)
            return Completion(text=out.generated_text, completion_tokens=tokens)
        out = await client.chat_completion(
            messages, model=model, max_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
        usage = out.usage
        return Completion(
            text=out.choices[0].message.content or "",
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
        )

    async def _request_with_tools(
        self, client: Any, model: str | None, messages: list[dict[str, Any]], max_new_tokens: int, seed: int,
        tools: list[dict[str, Any]],
    ) -> Completion:  # fmt: skip
        """A chat completion offered ``tools``: the server's parsed ``tool_calls`` where it has a tool parser (vLLM
        with ``--enable-auto-tool-choice``), and the text either way."""
        if self.api != "chat":
            raise EndpointError(f"{self.url}: tool-calling records need the chat API (eval.judge.api: chat)")
        out = await client.chat_completion(
            messages, model=model, max_tokens=max_new_tokens, temperature=0.0, seed=seed, tools=tools
        )
        message = out.choices[0].message
        calls = tuple(
            {"name": c.function.name, "arguments": _arguments(c.function.arguments)}
            for c in (getattr(message, "tool_calls", None) or [])
        )
        return Completion(text=message.content or "", tool_calls=calls or None)

    async def aclose(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            await self._client.close()
        self._client = None
        self._semaphore = None


def _arguments(raw: Any) -> dict[str, Any]:
    """A tool call's arguments as an object (servers send a JSON string); unreadable ones as ``{}``."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run_all(
    endpoint: Endpoint,
    requests: list[list[dict[str, str]]],
    max_new_tokens: int,
    on_done: Any = None,
    top_logprobs: int | None = None,
    labels: list[tuple[str, ...]] | None = None,
    tools: list[list[dict[str, Any]] | None] | None = None,
    temperature: float = 0.0,
    seeds: list[int] | None = None,
    on_result: Any = None,
) -> list[Completion | EndpointError]:
    """Complete every request concurrently (bounded by the endpoint); failures are returned, not raised.
    ``tools[i]``: the tools request ``i`` is offered (None: none); ``seeds[i]``: its sampling seed;
    ``on_result(i, result)`` is called as each one arrives (to keep it before the others are done)."""

    async def one(i: int, messages: list[dict[str, str]]) -> tuple[int, Completion | EndpointError]:
        try:
            result: Completion | EndpointError = await endpoint.complete(
                messages, max_new_tokens, seed=seeds[i] if seeds else 0, top_logprobs=top_logprobs,
                labels=labels[i] if labels else None, tools=tools[i] if tools else None, temperature=temperature,
            )  # fmt: skip
        except EndpointError as exc:
            result = exc
        if on_result:
            on_result(i, result)
        if on_done:
            on_done()
        return i, result

    endpoint._ensure_client()  # a misconfigured client fails the whole batch, not each request

    async def main() -> list[Completion | EndpointError]:
        try:
            done = await asyncio.gather(*(one(i, m) for i, m in enumerate(requests)))
        finally:
            await endpoint.aclose()
        return [r for _, r in sorted(done, key=lambda x: x[0])]

    return asyncio.run(main())
