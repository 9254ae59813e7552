"""What the generate stage asks the teacher and how it reads the answers: seeds, prompts, parsing, filters.

Seeds are records of a JSONL file: a conversation (``messages``; its first user turn and the assistant's answer
after it), or a ``prompt``/``instruction`` (+ ``input``) with an optional ``completion``/``output``/``response``.
A line that is none of these is reported with its file, line and reason, never silently skipped.

Filters: an instruction too similar to one already known (ROUGE-L F above ``generate.max_similarity``, Self-
Instruct's rule), an answer that does not have the seeds' structure (every seed answer a JSON object with the same
keys: then an answer must be one, with those keys), and duplicates by the clean stage's own rules (its canonical
text for exact duplicates; MinHash with its threshold, permutations and shingles for near ones), against each
other and against the existing data.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneline.config.schema import NearDedupRule
from tuneline.dedup import batch_near_keys
from tuneline.redact import redact_text, redact_url
from tuneline.stages.generate.errors import GenerateError

SELF_INSTRUCT = (
    "Here are examples of tasks a user gives an assistant:\n\n{examples}\n\n"
    "Write one new task of the same kind, different from all of them. Reply with the task only."
)
TEMPLATES = {"self_instruct": SELF_INSTRUCT}


def template_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Seed:
    id: str  # file:line
    prompt: str
    answer: str | None
    system: str | None = None  # a conversation's system prompt: new answers are asked under it too


def read_seeds(path: str | Path) -> tuple[list[Seed], list[dict[str, Any]]]:
    """(seeds, problems): each problem names the file, the line and the reason. ``path`` is a local file or an
    ``s3://``/``gs://``/``https://`` URI (a pipeline pod has no checkout), read as ingest reads sources."""
    seeds, problems, shown = [], [], redact_url(str(path))
    with _open_seeds(str(path)) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{shown}:{n}"
            try:
                record = json.loads(line)
                prompt, answer, system = _prompt_and_answer(record)
            except (ValueError, TypeError, AttributeError) as exc:
                problems.append({"file": shown, "line": n, "detail": f"not a seed: {exc}"[:200]})
                continue
            seeds.append(Seed(where, prompt, answer, system))
    if not seeds:
        raise GenerateError(f"generate.seeds: {path} holds no usable seed ({len(problems)} unreadable lines)")
    return seeds, problems


def _open_seeds(uri: str) -> Any:
    if "://" not in uri:
        if not Path(uri).is_file():
            raise GenerateError(f"generate.seeds: {uri} not found")
        return Path(uri).open(encoding="utf-8", errors="replace")
    import fsspec

    from tuneline.stages.ingest.sources import SourceError, refuse_insecure_url

    try:
        refuse_insecure_url(uri)
        return fsspec.open(uri, "rt", encoding="utf-8", errors="replace").open()
    except (OSError, ValueError, SourceError) as exc:
        raise GenerateError(
            f"generate.seeds: {redact_url(uri)} cannot be read: {redact_text(str(exc))[:200]}"
        ) from None


def _prompt_and_answer(record: Any) -> tuple[str, str | None, str | None]:
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    if isinstance(record.get("messages"), list):
        turns = [m for m in record["messages"] if isinstance(m, dict)]
        user = next((i for i, m in enumerate(turns) if m.get("role") == "user"), None)
        if user is None:
            raise ValueError("no user turn")
        after = turns[user + 1] if user + 1 < len(turns) and turns[user + 1].get("role") == "assistant" else None
        system = next((_text(m.get("content")) for m in turns[:user] if m.get("role") == "system"), None)
        return _text(turns[user].get("content")), _text(after.get("content")) if after else None, system
    prompt = record.get("prompt") or record.get("instruction")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("no messages, prompt or instruction")
    if isinstance(record.get("input"), str) and record["input"].strip():
        prompt = f"{prompt}\n{record['input']}"
    answer = next((record[k] for k in ("completion", "output", "response") if isinstance(record.get(k), str)), None)
    system = record.get("system") if isinstance(record.get("system"), str) else None
    return prompt, answer, system


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise ValueError("a turn's content is neither text nor content parts")


def self_instruct_messages(examples: list[str]) -> list[dict[str, str]]:
    listed = "\n".join(f"Task {i}: {e}" for i, e in enumerate(examples, 1))
    return [{"role": "user", "content": SELF_INSTRUCT.format(examples=listed)}]


_LEADING = re.compile(r"^\s*(?:(?:new\s+)?task\s*\d*\s*[:.)-]|instruction\s*:|\d+\s*[.)])\s*", re.IGNORECASE)


_NEXT_TASK = re.compile(r"^\s*(?:new\s+)?task\s*\d+\s*[:.)-]", re.IGNORECASE)


def parse_instruction(text: str) -> str | None:
    """The new task of a self-instruct answer: its first paragraph up to a line that starts another "Task N:"
    (a small teacher goes on listing), without its own label or quotes; None when nothing usable is left (empty,
    one word, or longer than 1,000 characters)."""
    lines = text.strip().split("\n\n")[0].strip().splitlines() or [""]
    own = [lines[0], *itertools.takewhile(lambda line: not _NEXT_TASK.match(line), lines[1:])]
    first = _LEADING.sub("", "\n".join(own).strip()).strip().strip('"').strip()
    if len(first.split()) < 2 or len(first) > 1000:
        return None
    return first


def answer_shape(seeds: list[Seed]) -> frozenset[str] | None:
    """The keys every seed answer has, when every seed answer is a JSON object with the same keys; else None."""
    keys: set[frozenset[str]] = set()
    for s in seeds:
        if s.answer is None:
            return None
        try:
            value = json.loads(s.answer)
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        keys.add(frozenset(value))
    return next(iter(keys)) if len(keys) == 1 else None


def fits_shape(answer: str, shape: frozenset[str] | None) -> bool:
    if shape is None:
        return bool(answer.strip())
    try:
        value = json.loads(answer)
    except ValueError:
        return False
    return isinstance(value, dict) and frozenset(value) == shape


class Similarity:
    """ROUGE-L F of a new instruction against every instruction known so far (Self-Instruct's filter)."""

    def __init__(self, known: list[str]) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.known = list(known)

    def closest(self, text: str) -> float:
        return max((self._scorer.score(k, text)["rougeL"].fmeasure for k in self.known), default=0.0)

    def add(self, text: str) -> None:
        self.known.append(text)


class Duplicates:
    """Exact and near duplicates by the clean stage's rules, against the existing data and what was kept."""

    def __init__(self, rule: NearDedupRule, existing: list[str]) -> None:
        self.rule = rule
        self.exact: set[str] = set()
        self.bands: set[int] = set()
        self.signatures: list[np.ndarray] = []
        for text in existing:
            self.add(text)

    def reason(self, text: str) -> str | None:
        """Why ``text`` duplicates something known ("duplicate_exact", "duplicate_near"), or None."""
        if canonical(text) in self.exact:
            return "duplicate_exact"
        if not self.rule.enabled or not text.split():
            return None
        sig, keys = self._near(text)
        # a shared band is a candidate; the estimated Jaccard (signature agreement) decides, as clean does
        shares_band = any(int(k) in self.bands for k in keys)
        if shares_band and any(float(np.mean(sig == other)) >= self.rule.threshold for other in self.signatures):
            return "duplicate_near"
        return None

    def add(self, text: str) -> None:
        self.exact.add(canonical(text))
        if self.rule.enabled and text.split():
            sig, keys = self._near(text)
            self.signatures.append(sig)
            self.bands.update(int(k) for k in keys)

    def _near(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        sigs, keys = batch_near_keys([text], self.rule.threshold, self.rule.num_perm, self.rule.shingle_words)
        return sigs[0], keys[0]


def canonical(text: str) -> str:
    return " ".join(text.casefold().split())
