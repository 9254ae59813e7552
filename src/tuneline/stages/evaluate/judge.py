"""LLM-as-judge after MT-Bench (Zheng et al., 2023): single-answer grading and pairwise comparison.

Pairwise comparison runs in both orders to cancel position bias: the candidate wins only
when it wins in both orders, loses only when it loses in both; anything else (a tie or a
flip between orders) is a tie. A judge output without a readable verdict is a parse
failure: it is counted and reported, never guessed.

Two ways to read a verdict (``eval.judge.mode``):

- ``generate``: the judge writes a short explanation and then ``Rating: [[N]]`` or
  ``[[A]]``/``[[B]]``/``[[C]]``, which is parsed from the text;
- ``logprobs``: the judge is asked for the verdict as its first token and one token is
  requested with its log-probabilities (G-Eval, Liu et al., 2023). The score is the
  probability-weighted mean over the digit tokens 1-9, rescaled linearly onto 1-10 so the
  gate's thresholds mean the same in both modes; the pairwise verdict is whichever of A and
  B is more probable. Every token whose text, stripped, is an allowed label counts towards
  it (" 7" and "7" are the same vote). There is no free text to misparse; a verdict is
  missing only when no allowed token is among the endpoint's top log-probabilities.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from tuneline.results import ExampleRow

Outcome = Literal["win", "tie", "loss"]
Verdict = Literal["candidate", "baseline", "tie"]

_SCORE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_SCORE_LOOSE = re.compile(r"(?:rating|score)\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
TEMPLATES = ("single", "pairwise", "rubric", "single_logprobs", "pairwise_logprobs")
SCORE_TOKENS = tuple(str(d) for d in range(1, 10))
VERDICT_TOKENS = ("A", "B")
Mode = Literal["logprobs", "generate"]


@dataclass(frozen=True)
class Prompts:
    single: str
    pairwise: str
    rubric: str
    single_logprobs: str
    pairwise_logprobs: str

    @classmethod
    def load(cls, prompts_dir: str | Path | None = None) -> Prompts:
        """Bundled templates, each replaced by ``<prompts_dir>/<name>.txt`` when that file exists."""
        bundled = resources.files("tuneline.stages.evaluate") / "prompts"
        texts = {}
        for name in TEMPLATES:
            override = Path(prompts_dir) / f"{name}.txt" if prompts_dir else None
            source = override if override and override.is_file() else bundled / f"{name}.txt"
            texts[name] = source.read_text(encoding="utf-8").strip()
        prompts = cls(**texts)
        prompts.check()
        return prompts

    def check(self) -> None:
        """Fail on a template that lacks (or misspells) a placeholder, before any request is sent."""
        single = {"rubric", "question", "reference", "answer"}
        pairwise = {"rubric", "question", "reference", "answer_a", "answer_b"}
        need = {"single": single, "pairwise": pairwise, "single_logprobs": single, "pairwise_logprobs": pairwise}
        for name, fields in need.items():
            found = set(re.findall(r"\{(\w+)\}", getattr(self, name)))
            if found != fields:
                raise ValueError(
                    f"judge prompt {name}.txt must use exactly the placeholders {sorted(fields)}; found {sorted(found)}"
                )

    def single_messages(
        self, question: str, reference: str, answer: str, mode: Mode = "generate"
    ) -> list[dict[str, str]]:
        template = self.single_logprobs if mode == "logprobs" else self.single
        text = template.format(rubric=self.rubric, question=question, reference=reference, answer=answer)
        return [{"role": "user", "content": text}]

    def pairwise_messages(
        self, question: str, reference: str, answer_a: str, answer_b: str, mode: Mode = "generate"
    ) -> list[dict[str, str]]:
        template = self.pairwise_logprobs if mode == "logprobs" else self.pairwise
        text = template.format(
            rubric=self.rubric, question=question, reference=reference, answer_a=answer_a, answer_b=answer_b
        )
        return [{"role": "user", "content": text}]


def render_question(prompt: list[dict[str, str]]) -> str:
    """The conversation before the judged answer, as the judge reads it."""
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def parse_score(text: str) -> float | None:
    """The 1-10 rating in a judge's output: ``[[N]]`` first, then ``Rating: N`` / ``N/10``; None if absent."""
    for pattern in (_SCORE, _SCORE_LOOSE):
        match = pattern.search(text or "")
        if match:
            value = float(match.group(1))
            return value if 1.0 <= value <= 10.0 else None
    return None


def parse_verdict(text: str) -> Literal["A", "B", "C"] | None:
    """``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie); None when absent or when the output names more than one."""
    found = set(_VERDICT.findall(text or ""))
    return found.pop() if len(found) == 1 else None  # type: ignore[return-value]


def label_probabilities(top: list[tuple[str, float]], labels: tuple[str, ...]) -> dict[str, float]:
    """Probability of each label among ``(token, logprob)`` alternatives, renormalised over the labels seen."""
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in top:
        label = token.strip()
        if label in mass and logprob is not None and math.isfinite(logprob):
            mass[label] += math.exp(logprob)
    total = sum(mass.values())
    return {k: v / total for k, v in mass.items()} if total > 0 else {}


def score_from_logprobs(top: list[tuple[str, float]]) -> float | None:
    """Expected rating over the digit tokens 1-9, mapped linearly onto 1-10; None when no digit is present."""
    probs = label_probabilities(top, SCORE_TOKENS)
    if not probs:
        return None
    expected = sum(int(k) * p for k, p in probs.items())
    return 1.0 + (expected - 1.0) * 9.0 / 8.0


def verdict_from_logprobs(top: list[tuple[str, float]]) -> Literal["A", "B", "C"] | None:
    """The more probable of A and B, C (tie) when they are equally likely; None when neither is present."""
    probs = label_probabilities(top, VERDICT_TOKENS)
    if not probs:
        return None
    if math.isclose(probs["A"], probs["B"], rel_tol=1e-9):
        return "C"
    return "A" if probs["A"] > probs["B"] else "B"


def encode_logprobs(top: list[tuple[str, float]]) -> str:
    """A logprob judgement as the text stored in the cache and shown in the report."""
    import json

    return json.dumps({"top_logprobs": [[t, round(lp, 6)] for t, lp in top]}, ensure_ascii=False)


def decode_logprobs(text: str | None) -> list[tuple[str, float]] | None:
    import json

    try:
        payload = json.loads(text or "")
        return [(str(t), float(lp)) for t, lp in payload["top_logprobs"]]
    except (ValueError, KeyError, TypeError):
        return None


def read_score(output: str | None, mode: Mode) -> float | None:
    if mode == "logprobs":
        top = decode_logprobs(output)
        return score_from_logprobs(top) if top is not None else None
    return parse_score(output or "")


def read_verdict(output: str | None, mode: Mode) -> Literal["A", "B", "C"] | None:
    if mode == "logprobs":
        top = decode_logprobs(output)
        return verdict_from_logprobs(top) if top is not None else None
    return parse_verdict(output or "")


def as_verdict(letter: str | None, candidate_is_a: bool) -> Verdict | None:
    if letter is None:
        return None
    if letter == "C":
        return "tie"
    return "candidate" if (letter == "A") == candidate_is_a else "baseline"


def combine(first: Verdict | None, second: Verdict | None) -> Outcome | None:
    """Outcome for the candidate from the two orders (candidate shown first, then second)."""
    if first is None or second is None:
        return None
    if first == second == "candidate":
        return "win"
    if first == second == "baseline":
        return "loss"
    return "tie"


def mean_ci(values: list[float], level: float = 0.95) -> dict[str, float | int | None]:
    """Mean with a Student-t confidence interval (None where undefined)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1}
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def pairwise_rates(outcomes: list[Outcome | None]) -> dict[str, float | int | None]:
    valid = [o for o in outcomes if o is not None]
    n = len(valid)
    if n == 0:
        return {"win": None, "tie": None, "loss": None, "win_rate": None, "n": 0}
    win, tie, loss = (valid.count(k) / n for k in ("win", "tie", "loss"))
    return {"win": win, "tie": tie, "loss": loss, "win_rate": win + tie / 2, "n": n}


def agreement(
    judge: dict[str, str | None], human: dict[str, str], labels: tuple[str, ...] = ("win", "tie", "loss")
) -> dict[str, float | int | None]:
    """Accuracy and Cohen's kappa of the judge's labels against true ones (human or reference), on shared ids."""
    ids = sorted(i for i in human if judge.get(i) is not None)
    if not ids:
        return {"n": 0, "accuracy": None, "cohen_kappa": None}
    ours, theirs = [judge[i] for i in ids], [human[i] for i in ids]
    accuracy = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ids)
    kappa: float | None
    if len(set(ours) | set(theirs)) < 2:
        kappa = None  # one label only: chance agreement is 1 and kappa is undefined
    else:
        from sklearn.metrics import cohen_kappa_score

        kappa = float(cohen_kappa_score(ours, theirs, labels=list(labels)))
    return {"n": len(ids), "accuracy": accuracy, "cohen_kappa": kappa}


PASS_MARK = 5.5  # a single grade at or above the middle of 1-10 calls the answer correct
TRUTH_METRIC = "field_accuracy"  # known exactly where the reference is a JSON object; absent elsewhere


def truth_agreement(rows: list[ExampleRow], truth_metric: str = TRUTH_METRIC) -> dict[str, Any]:
    """The judge measured against reference correctness, on examples where correctness is known.

    An answer is correct when ``truth_metric`` (field accuracy on JSON answers) is 1. Single
    grades agree when the grade is >= 5.5 exactly for correct answers; pairwise outcomes agree
    when they match the comparison of the two answers' ``truth_metric`` (higher wins, equal ties).
    """
    single_judge: dict[str, str | None] = {}
    single_truth: dict[str, str] = {}
    pair_judge: dict[str, str | None] = {}
    pair_truth: dict[str, str] = {}
    for row in rows:
        truths = {who: getattr(a.scores, truth_metric) for who, a in row.answers().items()}
        for who, answer in row.answers().items():
            if truths[who] is None:
                continue
            key = f"{row.id}:{who}"
            single_truth[key] = "correct" if truths[who] >= 1.0 else "wrong"
            score = answer.judge_score
            single_judge[key] = None if score is None else ("correct" if score >= PASS_MARK else "wrong")
        c, b = truths.get("candidate"), truths.get("baseline")
        if row.pairwise and c is not None and b is not None:
            pair_truth[row.id] = "win" if c > b else "loss" if c < b else "tie"
            pair_judge[row.id] = row.pairwise.outcome
    return {
        "truth_metric": truth_metric,
        "single": agreement(single_judge, single_truth, ("correct", "wrong")) if single_truth else None,
        "pairwise": agreement(pair_judge, pair_truth) if pair_truth else None,
    }
