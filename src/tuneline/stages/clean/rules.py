"""The per-record part of cleaning, run in worker processes.

:class:`RecordCleaner` applies normalization, PII redaction, the quality and token-length
filters, and computes the dedup keys; the ordered, stateful dedup decisions stay in the
parent process (:mod:`tuneline.stages.clean.run`) so results do not depend on the number
of workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import xxhash

from tuneline.config.schema import CleanConfig
from tuneline.dedup import NearKeys, batch_near_keys
from tuneline.stages.clean.pii import Redactor
from tuneline.stages.clean.text import canonical_text, messages_of, normalize_text, repetition_ratio


@dataclass(slots=True)
class Cleaned:
    """One record's outcome; ``line`` is the cleaned record already serialized (cheap to send between processes)."""

    rid: str
    line: bytes = b""
    removed: tuple[str, str] | None = None
    normalized: bool = False
    pii: dict[str, int] = field(default_factory=dict)
    pii_example: str = ""
    exact_key: int = 0
    near: NearKeys | None = None


def _snippet(text: str, label_start: int, width: int = 40) -> str:
    lo, hi = max(0, label_start - width), min(len(text), label_start + width)
    return ("…" if lo else "") + text[lo:hi].replace("\n", " ") + ("…" if hi < len(text) else "")


class RecordCleaner:
    def __init__(self, config: CleanConfig, tokenizer_path: str | None = None) -> None:
        self.cfg = config
        self.redactor = Redactor(config.pii) if config.pii.enabled else None
        self.tokenizer = None
        if config.token_length.enabled and tokenizer_path:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)

    def clean_many(self, lines: list[bytes]) -> list[Cleaned]:
        """Clean a chunk; near-dup signatures are computed for the whole chunk at once (much faster)."""
        results, texts = [], []
        for line in lines:
            c, text = self._clean_one(line)
            results.append(c)
            if text is not None:
                texts.append(text)
        if texts:
            nd = self.cfg.near_dedup
            keys = iter(batch_near_keys(texts, nd.threshold, nd.num_perm, nd.shingle_words))
            for c in results:
                if c.removed is None:
                    c.near = next(keys)
        return results

    def _clean_one(self, line: bytes) -> tuple[Cleaned, str | None]:
        rec = orjson.loads(line)
        out = Cleaned(rid=rec["id"])
        msgs = list(messages_of(rec))
        cfg = self.cfg
        if cfg.normalize.enabled:
            for m in msgs:
                new = normalize_text(m["content"], cfg.normalize.form)
                if new != m["content"]:
                    m["content"] = new
                    out.normalized = True
        if self.redactor is not None:
            for m in msgs:
                text, counts = self.redactor.redact(m["content"])
                if counts:
                    m["content"] = text
                    for k, v in counts.items():
                        out.pii[k] = out.pii.get(k, 0) + v
                    if not out.pii_example:
                        out.pii_example = _snippet(text, text.find("["))
        out.removed = self._filter(rec, msgs)
        out.line = orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
        if out.removed is not None:
            return out, None
        if cfg.exact_dedup.enabled:
            out.exact_key = xxhash.xxh3_64_intdigest(canonical_text(rec).encode())
        return out, " ".join(m["content"] for m in msgs) if cfg.near_dedup.enabled else None

    def _filter(self, rec: dict[str, Any], msgs: list[dict[str, str]]) -> tuple[str, str] | None:
        q = self.cfg.quality
        if q.enabled:
            if any(not m["content"].strip() for m in msgs):
                return "quality.empty_after_cleaning", "a message is empty after normalization"
            chars = sum(len(m["content"]) for m in msgs)
            if chars < q.min_chars:
                return "quality.min_chars", f"{chars} characters < {q.min_chars}"
            if chars > q.max_chars:
                return "quality.max_chars", f"{chars} characters > {q.max_chars}"
            turns = len(rec["messages"]) if "messages" in rec else len(rec["prompt"]) + len(rec["chosen"])
            if turns < q.min_turns:
                return "quality.min_turns", f"{turns} turns < {q.min_turns}"
            if turns > q.max_turns:
                return "quality.max_turns", f"{turns} turns > {q.max_turns}"
            for i, m in enumerate(msgs):
                ratio = repetition_ratio(m["content"])
                if ratio > q.max_repetition:
                    return "quality.repetition", f"message {i}: {ratio:.0%} repeated 3-grams > {q.max_repetition:.0%}"
        if self.tokenizer is not None:
            n = sum(len(ids) + 4 for ids in self.tokenizer([m["content"] for m in msgs],
                                                            add_special_tokens=False)["input_ids"])
            limit = self.cfg.token_length.max_tokens
            if n > limit:
                return "token_length", f"{n} tokens > {limit}"
        return None


_WORKER: RecordCleaner | None = None


def init_worker(config: CleanConfig, tokenizer_path: str | None) -> None:
    global _WORKER
    _WORKER = RecordCleaner(config, tokenizer_path)


def clean_chunk(lines: list[bytes]) -> list[Cleaned]:
    assert _WORKER is not None, "init_worker was not called"
    return _WORKER.clean_many(lines)
