"""Gate decisions: each check passes, fails or is skipped for the right reason."""

from __future__ import annotations

from typing import Any

import pytest

from tuneline.config.schema import EvalGate
from tuneline.results import EvalMetrics, GateDecision
from tuneline.stages.evaluate.gate import decide


def metrics(
    score: float | None = 7.0,
    failures: float = 0.0,
    win_rate: float | None = 0.6,
    baseline: dict[str, float] | None = None,
    pairwise: bool = True,
) -> EvalMetrics:
    cand = {"exact_match": 0.5, "rouge_l": 0.7, "token_f1": 0.6}
    nothing = {"ci_low": None, "ci_high": None, "n": 10}
    return EvalMetrics.model_validate(
        {
            "examples": 10,
            "candidate": cand,
            "baseline": baseline if baseline is not None else {"exact_match": 0.4, "rouge_l": 0.6, "token_f1": 0.5},
            "judge": {
                "candidate_score": {"mean": score, **nothing},
                "baseline_score": None,
                "parse_failure_rate": failures,
                "pairwise": {"win": None, "tie": None, "loss": None, "win_rate": win_rate, "n": 10}
                if pairwise
                else None,
                "agreement": None,
                "requests": 20,
                "cache_hits": 0,
                "request_errors": 0,
            },
        }
    )


def checks(result: GateDecision) -> dict[str, bool | None]:
    return {c.name: c.passed for c in result.checks}


def test_a_good_candidate_passes() -> None:
    result = decide(EvalGate(), metrics())
    assert result.passed is True and result.reasons == []
    assert all(checks(result).values())


@pytest.mark.parametrize(
    ("kwargs", "failing", "reason"),
    [
        ({"score": 4.9}, "judge_score", "mean judge score 4.900 (minimum 5)"),
        ({"score": None}, "judge_score", "no readable judge score"),
        ({"failures": 0.25}, "judge_parse_failures", "25% of judge outputs"),
        ({"win_rate": 0.49}, "win_rate", "win rate 0.490"),
        ({"win_rate": None}, "win_rate", "no readable pairwise verdict"),
        ({"baseline": {"exact_match": 0.6, "rouge_l": 0.6, "token_f1": 0.5}}, "regression.exact_match", "drop +0.100"),
    ],
)
def test_each_check_fails_with_its_reason(kwargs: dict[str, Any], failing: str, reason: str) -> None:
    result = decide(EvalGate(), metrics(**kwargs))
    assert result.passed is False
    assert [name for name, ok in checks(result).items() if ok is False] == [failing]
    assert any(reason in r for r in result.reasons), result.reasons


def test_regression_within_tolerance_passes_and_beyond_fails() -> None:
    gate = EvalGate(max_regression=0.02)
    within = decide(gate, metrics(baseline={"exact_match": 0.52, "rouge_l": 0.7, "token_f1": 0.6}))
    beyond = decide(gate, metrics(baseline={"exact_match": 0.53, "rouge_l": 0.7, "token_f1": 0.6}))
    assert within.passed and not beyond.passed


def test_only_configured_regression_metrics_are_checked() -> None:
    gate = EvalGate(regression_metrics=["rouge_l"])
    result = decide(gate, metrics(baseline={"exact_match": 0.9, "rouge_l": 0.6, "token_f1": 0.9}))
    assert result.passed and "regression.exact_match" not in checks(result)


def test_no_baseline_skips_comparisons_but_still_gates_the_judge_score() -> None:
    result = decide(EvalGate(), metrics(baseline={}, pairwise=False))
    c = checks(result)
    assert c["win_rate"] is None and c["regression.rouge_l"] is None
    assert result.passed
    assert not decide(EvalGate(), metrics(score=2.0, baseline={}, pairwise=False)).passed
