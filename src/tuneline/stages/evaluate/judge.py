"""LLM-as-judge after MT-Bench (Zheng et al., 2023): single-answer grading and pairwise comparison.

Pairwise comparison runs in both orders to cancel position bias: the candidate wins only
when it wins in both orders, loses only when it loses in both; anything else (a tie or a
flip between orders) is a tie. A judge output without a readable verdict is a parse
failure: it is counted and reported, never guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

Outcome = Literal["win", "tie", "loss"]
Verdict = Literal["candidate", "baseline", "tie"]

_SCORE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_SCORE_LOOSE = re.compile(r"(?:rating|score)\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
TEMPLATES = ("single", "pairwise", "rubric")


@dataclass(frozen=True)
class Prompts:
    single: str
    pairwise: str
    rubric: str

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
        need = {
            "single": {"rubric", "question", "reference", "answer"},
            "pairwise": {"rubric", "question", "reference", "answer_a", "answer_b"},
        }
        for name, fields in need.items():
            found = set(re.findall(r"\{(\w+)\}", getattr(self, name)))
            if found != fields:
                raise ValueError(
                    f"judge prompt {name}.txt must use exactly the placeholders {sorted(fields)}; found {sorted(found)}"
                )

    def single_messages(self, question: str, reference: str, answer: str) -> list[dict[str, str]]:
        text = self.single.format(rubric=self.rubric, question=question, reference=reference, answer=answer)
        return [{"role": "user", "content": text}]

    def pairwise_messages(self, question: str, reference: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
        text = self.pairwise.format(
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


def agreement(judge: dict[str, Outcome | None], human: dict[str, Outcome]) -> dict[str, float | int | None]:
    """Accuracy and Cohen's kappa of the judge's pairwise outcomes against human labels, on shared ids."""
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

        kappa = float(cohen_kappa_score(ours, theirs, labels=["win", "tie", "loss"]))
    return {"n": len(ids), "accuracy": accuracy, "cohen_kappa": kappa}
