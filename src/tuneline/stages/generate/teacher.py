"""The teacher: every call cached before it is paid for, bounded by a token budget.

A call is (messages, temperature, seed). Its cache key covers the teacher's identity, the token budget of one
answer and the call itself, so a killed run that is started again asks the teacher only for what it had not
received: the cache is SQLite, one committed row per answer (:class:`~tuneline.inference.cache.CallCache`).
Calls go out in rounds of a few times the concurrency; once the run's tokens reach ``generate.max_tokens`` no
new round starts, and the run ends cleanly with what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneline.config import TunelineConfig
from tuneline.inference.cache import CallCache, cache_key
from tuneline.inference.client import Completion, Endpoint, EndpointError, run_all
from tuneline.redact import redact_url
from tuneline.results import MODEL_MANIFEST
from tuneline.stages.generate.errors import GenerateError

log = logging.getLogger("tuneline")
ROUND = 4  # calls per round, per unit of concurrency


@dataclass(frozen=True)
class Call:
    messages: list[dict[str, str]]
    temperature: float = 0.0
    seed: int = 0


@dataclass
class Spend:
    """What this run asked and paid for."""

    requests: int = 0
    cache_hits: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    budget_exhausted: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Teacher:
    config: TunelineConfig
    cache: CallCache
    spend: Spend = field(default_factory=Spend)
    _local: Any = None

    @property
    def name(self) -> str:
        t = self.config.generate.teacher
        return f"{redact_url(t.endpoint)} ({t.served_model or 'first listed model'})" if t.endpoint else t.model

    def ask(self, calls: list[Call], tick: Callable[[int], None]) -> list[str | None]:
        """The teacher's answer to each call (None: failed, or not asked because the budget ran out)."""
        g = self.config.generate
        identity = f"endpoint:{g.teacher.endpoint}:{g.teacher.served_model}" if g.teacher.endpoint else g.teacher.model
        keys = [cache_key("teacher", identity, g.max_new_tokens, c.messages, c.temperature, c.seed) for c in calls]
        out: list[str | None] = [self.cache.get(k) for k in keys]
        self.spend.requests += len(calls)
        self.spend.cache_hits += sum(o is not None for o in out)
        tick(sum(o is not None for o in out))
        missing = [i for i, o in enumerate(out) if o is None]

        def keep(i: int, result: Completion | EndpointError) -> None:  # cached the moment it arrives
            if isinstance(result, EndpointError):
                self.spend.failed += 1
                log.warning("generate: teacher call failed: %s", result)
                return
            self.spend.prompt_tokens += result.prompt_tokens or 0
            self.spend.completion_tokens += result.completion_tokens or 0
            self.cache.put(keys[i], result.text)
            out[i] = result.text

        size = ROUND * g.teacher.concurrency
        for start in range(0, len(missing), size):
            if g.max_tokens is not None and self.spend.tokens >= g.max_tokens:
                self.spend.budget_exhausted = True
                log.warning("generate: budget of %d teacher tokens reached; stopping with what is done", g.max_tokens)
                break
            chunk = missing[start : start + size]
            self._complete([calls[i] for i in chunk], lambda j, result, chunk=chunk: keep(chunk[j], result), tick)
        return out

    def _complete(
        self, calls: list[Call], keep: Callable[[int, Completion | EndpointError], None], tick: Callable[[int], None]
    ) -> None:
        g = self.config.generate
        t = g.teacher
        if not t.endpoint:
            for j, call in enumerate(calls):
                keep(j, self._in_process(call, tick))
            return
        endpoint = Endpoint.from_config(t.endpoint, t, t.token_env, model=t.served_model)
        by_temperature: dict[float, list[int]] = {}
        for j, c in enumerate(calls):
            by_temperature.setdefault(c.temperature, []).append(j)
        for temperature, idx in by_temperature.items():
            run_all(
                endpoint, [calls[j].messages for j in idx], g.max_new_tokens, on_done=lambda: tick(1),
                temperature=temperature, seeds=[calls[j].seed for j in idx],
                on_result=lambda k, result, idx=idx: keep(idx[k], result),
            )  # fmt: skip

    def _in_process(self, call: Call, tick: Callable[[int], None]) -> Completion:
        from tuneline.models.trained import generate

        model, tokenizer = self._model()
        text = generate(
            model, tokenizer, [call.messages], self.config.generate.max_new_tokens, temperature=call.temperature,
            seed=call.seed,
        )[0]  # fmt: skip
        prompt = tokenizer.apply_chat_template(call.messages, add_generation_prompt=True, return_dict=True)
        tick(1)
        return Completion(text, len(prompt["input_ids"]), len(tokenizer(text)["input_ids"]))

    def _model(self) -> tuple[Any, Any]:
        if self._local is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from tuneline.models.trained import load_trained

            path = local_model_dir(self.config.generate.teacher.model, "generate.teacher.model")
            if (path / MODEL_MANIFEST).is_file():  # a tuneline model dir: its fine-tune (base + adapter)
                self._local = load_trained(path)
            else:
                self._local = (AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path))
        return self._local


def local_model_dir(name: str, key: str) -> Path:
    """A model directory for ``name`` (:func:`tuneline.models.resolve.local_model_dir`); anything else fails
    naming ``key``."""
    from tuneline.models.resolve import NotLocal
    from tuneline.models.resolve import local_model_dir as find

    try:
        return find(name)
    except NotLocal as exc:
        raise GenerateError(
            f"{key} {name!r} is neither a packaged built-in, a directory, nor in the local hub cache "
            f"({exc}); download it first or use an endpoint"
        ) from None
