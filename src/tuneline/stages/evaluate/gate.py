"""The quality gate: pass/fail with one line per check, read by registration and promotion.

A check whose input does not exist (no baseline, pairwise judging off) is reported as
skipped; a check whose input should exist but could not be measured (no readable judge
score) fails, because an unmeasured model must not pass.
"""

from __future__ import annotations

from tuneline.config.schema import EvalGate
from tuneline.results import EvalMetrics, GateCheck, GateDecision


def _check(name: str, passed: bool | None, value: float | None, threshold: float, detail: str) -> GateCheck:
    return GateCheck(name=name, passed=passed, value=value, threshold=threshold, detail=detail)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def decide(gate: EvalGate, metrics: EvalMetrics) -> GateDecision:
    """Apply ``gate`` to the evaluate stage's metrics: passed, one line per check, the reasons it failed."""
    checks: list[GateCheck] = []
    judge = metrics.judge
    score = judge.candidate_score.mean
    checks.append(
        _check(
            "judge_score",
            score is not None and score >= gate.min_judge_score,
            score,
            gate.min_judge_score,
            f"mean judge score {_fmt(score)} (minimum {gate.min_judge_score:g})"
            if score is not None
            else "no readable judge score for the candidate",
        )
    )

    failures = judge.parse_failure_rate
    checks.append(
        _check(
            "judge_parse_failures",
            failures is not None and failures <= gate.max_judge_parse_failures,
            failures,
            gate.max_judge_parse_failures,
            f"{'n/a' if failures is None else f'{failures:.0%}'} of judge outputs had no readable "
            f"verdict (maximum {gate.max_judge_parse_failures:.0%})",
        )
    )

    pairwise = judge.pairwise
    if pairwise is None:
        checks.append(_check("win_rate", None, None, gate.min_win_rate, "skipped: no pairwise comparison"))
    else:
        rate = pairwise.win_rate
        checks.append(
            _check(
                "win_rate",
                rate is not None and rate >= gate.min_win_rate,
                rate,
                gate.min_win_rate,
                f"win rate {_fmt(rate)} against the baseline (minimum {gate.min_win_rate:g})"
                if rate is not None
                else "no readable pairwise verdict",
            )
        )

    candidate, baseline = metrics.candidate, metrics.baseline
    for name in gate.regression_metrics:
        if not baseline:
            checks.append(_check(f"regression.{name}", None, None, gate.max_regression, "skipped: no baseline"))
            continue
        before, after = baseline.get(name), candidate.get(name)
        if before is None or after is None:
            checks.append(_check(f"regression.{name}", False, None, gate.max_regression, f"{name} was not measured"))
            continue
        drop = before - after
        checks.append(
            _check(
                f"regression.{name}",
                drop <= gate.max_regression + 1e-12,
                drop,
                gate.max_regression,
                f"{name} {after:.3f} vs baseline {before:.3f} (drop {drop:+.3f}, maximum {gate.max_regression:g})",
            )
        )

    passed = all(c.passed is not False for c in checks)
    return GateDecision(passed=passed, checks=checks, reasons=[c.detail for c in checks if c.passed is False])
