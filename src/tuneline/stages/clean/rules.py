"""The per-record part of cleaning, run in block tasks (:mod:`tuneline.stages.clean.blocks`).

:class:`RecordCleaner` applies normalization, PII redaction, the quality and token-length
filters, and computes the dedup keys for a chunk of records, as one :class:`CleanedChunk` of
serialized lines and numpy arrays; the dedup decisions are taken over all blocks afterwards
(:mod:`tuneline.clusters`), so results do not depend on the number of workers or the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import xxhash

from tuneline.config.schema import CleanConfig
from tuneline.dedup import batch_near_keys, near_keys
from tuneline.io.jsonl import parse_canonical
from tuneline.pii import ALL_SHAPES, Redactor
from tuneline.records import Kind
from tuneline.stages.clean.text import (
    canonical_text,
    folded_text,
    has_extras,
    map_texts,
    message_text,
    messages_of,
    normalize_candidates,
    normalize_text,
    turns_of,
    words_repetition_above,
)
from tuneline.stages.clean.words import PlainRecords
from tuneline.textscan import TextScan


@dataclass(slots=True)
class CleanedChunk:
    """Outcome of one chunk. ``lines`` are the cleaned records, serialized; index i is record i everywhere."""

    ids: list[str] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    removed: list[tuple[str, str] | None] = field(default_factory=list)
    pii: dict[int, tuple[dict[str, int], str]] = field(default_factory=dict)  # record index → (counts, example)
    normalized: int = 0
    changed: set[int] = field(default_factory=set)  # records whose text normalization or redaction changed
    exact: list[int] = field(default_factory=list)  # 0 when exact dedup is off or the record was removed
    near_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # row in sigs/bands, or -1
    sigs: np.ndarray | None = None
    bands: np.ndarray | None = None  # (rows, bands) uint64 LSH band keys


def _serialized(rec: dict[str, Any], line: bytes, changed: bool) -> bytes:
    """The record's output line: its input line when no rule changed it and the line is as ingest writes lines
    (orjson, one per line; orjson reads back what it wrote and writes it again byte for byte), else written
    anew. Most records pass unchanged, and serializing each again cost about 1 µs per record."""
    if not changed and line.endswith(b"}\n"):
        return line
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)


def _snippet(text: str, label_start: int, width: int = 40) -> str:
    lo, hi = max(0, label_start - width), min(len(text), label_start + width)
    return ("…" if lo else "") + text[lo:hi].replace("\n", " ") + ("…" if hi < len(text) else "")


class RecordCleaner:
    def __init__(self, config: CleanConfig, tokenizer_path: str | None = None) -> None:
        self.cfg = config
        self.redactor = Redactor(config.pii) if config.pii.enabled else None
        self.fast = True  # plain ASCII records through PlainRecords (tests turn it off to compare)
        self.tokenizer = None
        if config.token_length.enabled and tokenizer_path:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, local_files_only=True)

    def clean_many(self, lines: list[bytes], kind: Kind) -> CleanedChunk:
        """Clean a chunk. Normalization and PII screen the chunk's texts at once (:mod:`tuneline.textscan`), the
        words of its plain ASCII records are found at once (:mod:`tuneline.stages.clean.words`: they pass the
        quality filters, get their exact keys and MinHash from arrays) and near-dup signatures are computed for
        the whole chunk at once: per text, each cost more than the rules. The other records take the per-record
        path; both give the same results (tests/test_clean_words.py compares them)."""
        chunk = CleanedChunk()
        recs = [parse_canonical(line, i, kind) for i, line in enumerate(lines)]
        msgs = [list(messages_of(rec, kind)) for rec in recs]
        chunk.ids = [rec["id"] for rec in recs]
        plain = self._clean_texts(msgs, chunk)
        fast = PlainRecords.of(msgs, plain) if self.fast else None
        rows, passed = [-1] * len(recs), []  # record i's row among the plain ones; whether it passes quality
        if fast is not None:
            rows, passed = fast.row.tolist(), fast.passed(recs, kind, self.cfg.quality).tolist()
        folded = fast.words.folded() if fast is not None and self.cfg.exact_dedup.enabled else None
        cfg, texts, near_fast, near_slow = self.cfg, [], [], []
        for i, (rec, ms, f) in enumerate(zip(recs, msgs, rows, strict=True)):
            if f >= 0 and passed[f]:
                removed = self._tokens(ms)
            else:  # the per-record path: split once, the filters and the exact key read the words
                words = [m["content"].split() for m in ms]
                removed = self._filter(rec, ms, words)
            chunk.removed.append(removed)
            chunk.lines.append(_serialized(rec, lines[i], i in chunk.changed))
            if removed is not None:
                chunk.exact.append(0)
                continue
            if not cfg.exact_dedup.enabled:
                chunk.exact.append(0)
            elif f >= 0:
                chunk.exact.append(xxhash.xxh3_64_intdigest(fast.canonical(f, rec, ms, kind, folded)))
            else:
                fold = [folded_text(m, w) for m, w in zip(ms, words, strict=True)]
                chunk.exact.append(xxhash.xxh3_64_intdigest(canonical_text(rec, kind, fold).encode()))
            if cfg.near_dedup.enabled and f >= 0:
                near_fast.append(i)
            elif cfg.near_dedup.enabled:
                near_slow.append(i)
                texts.append(" ".join(message_text(m) for m in ms))
        self._near_keys(chunk, fast, near_fast, near_slow, texts)
        return chunk

    def _near_keys(
        self,
        chunk: CleanedChunk,
        fast: PlainRecords | None,
        near_fast: list[int],
        near_slow: list[int],
        texts: list[str],
    ) -> None:
        """Signatures and band keys of the kept records (those of plain records first); ``chunk.near_rows`` says
        which row is whose."""
        chunk.near_rows = np.full(len(chunk.removed), -1, dtype=np.int64)
        if not near_fast and not near_slow:
            return
        nd = self.cfg.near_dedup
        parts = []
        if near_fast:
            assert fast is not None
            raw, doc_start = fast.documents(fast.row[near_fast].tolist())
            parts.append(near_keys(raw, doc_start, nd.threshold, nd.num_perm, nd.shingle_words))
        if near_slow:
            parts.append(batch_near_keys(texts, nd.threshold, nd.num_perm, nd.shingle_words))
        chunk.near_rows[near_fast + near_slow] = np.arange(len(near_fast) + len(near_slow))
        chunk.sigs = np.concatenate([p[0] for p in parts])
        chunk.bands = np.concatenate([p[1] for p in parts])

    def _clean_texts(self, msgs: list[list[dict[str, Any]]], chunk: CleanedChunk) -> list[bool]:
        """Normalize, then redact, every text of the chunk, in place. Records whose messages hold only a content
        (plain ones: which, is returned) are screened as one batch and only the texts a step may change go
        through it; the rest (reasoning, tool calls) take the per-record path. Either way each text becomes
        redact(normalize(text))."""
        plain = [all("reasoning_content" not in m and not m.get("tool_calls") for m in ms) for ms in msgs]
        for i, ms in enumerate(msgs):
            if not plain[i]:
                if self.cfg.normalize.enabled and self._normalize(ms):
                    chunk.normalized += 1
                    chunk.changed.add(i)
                if self.redactor is not None:
                    self._redact(ms, i, chunk)
        owners = [(i, m) for i, ms in enumerate(msgs) if plain[i] for m in ms]
        if owners:
            scan = TextScan([m["content"] for _, m in owners])
            changed = self._normalize_screened(scan, owners, chunk)
            if self.redactor is not None:
                shapes = self.redactor.candidates(scan)
                shapes[changed] = ALL_SHAPES  # normalization changed these: what the screen saw is not them
                for t in np.flatnonzero(shapes).tolist():
                    i, m = owners[t]
                    self._redact([m], i, chunk, int(shapes[t]))
        return plain

    def _normalize_screened(
        self, scan: TextScan, owners: list[tuple[int, dict[str, Any]]], chunk: CleanedChunk
    ) -> np.ndarray:
        """Normalize the contents the screen passes; which texts changed (they are screened again for PII)."""
        changed = np.zeros(len(owners), dtype=bool)
        if not self.cfg.normalize.enabled:
            return changed
        form, normalized = self.cfg.normalize.form, set()
        for t in np.flatnonzero(normalize_candidates(scan)).tolist():
            i, m = owners[t]
            new = normalize_text(m["content"], form)
            if new != m["content"]:
                m["content"], changed[t] = new, True
                normalized.add(i)
        chunk.normalized += len(normalized)
        chunk.changed |= normalized
        return changed

    def _normalize(self, msgs: list[dict[str, Any]]) -> bool:
        form = self.cfg.normalize.form
        changed = False
        for m in msgs:
            changed |= map_texts(m, lambda text: normalize_text(text, form))
        return changed

    def _redact(self, msgs: list[dict[str, Any]], index: int, chunk: CleanedChunk, shapes: int = ALL_SHAPES) -> None:
        """Redact ``msgs`` (of record ``index``) in place; add their counts, and the first example, to the
        record's entry in ``chunk.pii`` (called once per record, or once per message in message order)."""
        assert self.redactor is not None
        total, example = chunk.pii.get(index, ({}, ""))
        redact = self.redactor.redact

        def one(text: str) -> str:
            nonlocal example
            new, counts = redact(text, shapes)
            if counts:
                for k, v in counts.items():
                    total[k] = total.get(k, 0) + v
                example = example or _snippet(new, new.find("["))
            return new

        for m in msgs:
            map_texts(m, one)
        if total:
            chunk.pii[index] = (total, example)
            chunk.changed.add(index)

    def _filter(
        self, rec: dict[str, Any], msgs: list[dict[str, str]], words: list[list[str]]
    ) -> tuple[str, str] | None:
        """The first rule the record breaks, as (rule, detail), or None to keep it (``words``: each message's
        ``content.split()``)."""
        if self.cfg.quality.enabled:
            broken = self._quality(rec, msgs, words)
            if broken:
                return broken
        return self._tokens(msgs)

    def _tokens(self, msgs: list[dict[str, str]]) -> tuple[str, str] | None:
        """The token-length rule, when a tokenizer is set: (rule, detail) when the record is too long."""
        if self.tokenizer is None:
            return None
        texts = [message_text(m) for m in msgs]
        n = sum(len(ids) + 4 for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"])
        limit = self.cfg.token_length.max_tokens
        if n > limit:
            return "token_length", f"{n} tokens > {limit}"
        return None

    def _quality(
        self, rec: dict[str, Any], msgs: list[dict[str, str]], words: list[list[str]]
    ) -> tuple[str, str] | None:
        """The first quality bound the record breaks, in this order: an empty message, characters, turns,
        repetition. A content is empty when it has no words (``str.strip`` and ``str.split`` share one
        whitespace)."""
        q = self.cfg.quality
        chars = 0
        for m, w in zip(msgs, words, strict=True):
            if not w and not m.get("tool_calls"):
                return "quality.empty_after_cleaning", "a message is empty after normalization"
            chars += len(message_text(m)) if has_extras(m) else len(m["content"])
        if chars < q.min_chars:
            return "quality.min_chars", f"{chars} characters < {q.min_chars}"
        if chars > q.max_chars:
            return "quality.max_chars", f"{chars} characters > {q.max_chars}"
        turns = turns_of(rec)
        if turns < q.min_turns:
            return "quality.min_turns", f"{turns} turns < {q.min_turns}"
        if turns > q.max_turns:
            return "quality.max_turns", f"{turns} turns > {q.max_turns}"
        for i, w in enumerate(words):
            ratio = words_repetition_above(w, q.max_repetition)
            if ratio is not None:
                return "quality.repetition", f"message {i}: {ratio:.0%} repeated 3-grams > {q.max_repetition:.0%}"
        return None


_CLEANERS: dict[str, RecordCleaner] = {}


def cleaner_for(config: CleanConfig, tokenizer_path: str | None) -> RecordCleaner:
    """One cleaner per worker process and config (the tokenizer and PII patterns load once, not per block)."""
    key = config.model_dump_json() + "\0" + (tokenizer_path or "")
    if key not in _CLEANERS:
        _CLEANERS.clear()
        _CLEANERS[key] = RecordCleaner(config, tokenizer_path)
    return _CLEANERS[key]
