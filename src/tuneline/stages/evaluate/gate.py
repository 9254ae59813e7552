"""The quality gate: pass/fail with one line per check, read by registration and promotion.

A check whose input does not exist (no baseline, pairwise judging off) is reported as
skipped; a check whose input should exist but could not be measured (no readable judge
score) fails, because an unmeasured model must not pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tuneline.config.schema import EvalGate


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: skipped
    value: float | None
    threshold: float
    detail: str


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def decide(gate: EvalGate, metrics: dict[str, Any]) -> dict[str, Any]:
    """Apply ``gate`` to the evaluate stage's metrics; returns ``{"passed", "checks", "reasons"}``."""
    checks: list[Check] = []
    judge = metrics.get("judge", {})
    score = judge.get("candidate_score", {}).get("mean")
    checks.append(Check("judge_score", score is not None and score >= gate.min_judge_score, score,
                        gate.min_judge_score,
                        f"mean judge score {_fmt(score)} (minimum {gate.min_judge_score:g})"
                        if score is not None else "no readable judge score for the candidate"))

    failures = judge.get("parse_failure_rate")
    checks.append(Check("judge_parse_failures", failures is not None and failures <= gate.max_judge_parse_failures,
                        failures, gate.max_judge_parse_failures,
                        f"{'n/a' if failures is None else f'{failures:.0%}'} of judge outputs had no readable "
                        f"verdict (maximum {gate.max_judge_parse_failures:.0%})"))

    pairwise = judge.get("pairwise")
    if pairwise is None:
        checks.append(Check("win_rate", None, None, gate.min_win_rate, "skipped: no pairwise comparison"))
    else:
        rate = pairwise.get("win_rate")
        checks.append(Check("win_rate", rate is not None and rate >= gate.min_win_rate, rate, gate.min_win_rate,
                            f"win rate {_fmt(rate)} against the baseline (minimum {gate.min_win_rate:g})"
                            if rate is not None else "no readable pairwise verdict"))

    candidate, baseline = metrics.get("candidate", {}), metrics.get("baseline")
    for name in gate.regression_metrics:
        if not baseline:
            checks.append(Check(f"regression.{name}", None, None, gate.max_regression, "skipped: no baseline"))
            continue
        drop = baseline[name] - candidate[name]
        checks.append(Check(f"regression.{name}", drop <= gate.max_regression + 1e-12, drop, gate.max_regression,
                            f"{name} {candidate[name]:.3f} vs baseline {baseline[name]:.3f} "
                            f"(drop {drop:+.3f}, maximum {gate.max_regression:g})"))

    passed = all(c.passed is not False for c in checks)
    return {"passed": passed, "checks": [asdict(c) for c in checks],
            "reasons": [c.detail for c in checks if c.passed is False]}
