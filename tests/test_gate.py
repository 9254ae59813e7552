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
    fields: tuple[float, float] | None = None,
    truth: dict[str, Any] | None = None,
) -> EvalMetrics:
    """Metrics of a text task; ``fields`` (candidate, baseline) adds field accuracy, ``truth`` the judge vs truth."""
    cand: dict[str, float] = {"exact_match": 0.5, "rouge_l": 0.7, "token_f1": 0.6}
    nothing = {"ci_low": None, "ci_high": None, "n": 10}
    if fields is not None:
        cand["field_accuracy"] = fields[0]
        baseline = {**(baseline or {"exact_match": 0.4, "rouge_l": 0.6, "token_f1": 0.5}), "field_accuracy": fields[1]}
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
                "truth": truth,
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
    # a text task: no JSON answers, so no truth to check the judge against and no field accuracy to improve on
    skipped = {name for name, ok in checks(result).items() if ok is None}
    # no tool records, no benchmarks run: their checks are skipped
    assert skipped == {
        "judge_trust", "improvement.field_accuracy", "regression.tool_call_accuracy", "regression.bfcl_accuracy",
        "regression.lm_eval_score",
    }  # fmt: skip
    assert all(ok for name, ok in checks(result).items() if name not in skipped)


def _truth(kappa: float | None, accuracy: float) -> dict[str, Any]:
    agreement = {"n": 20, "accuracy": accuracy, "cohen_kappa": kappa}
    return {"truth_metric": "field_accuracy", "single": agreement, "pairwise": agreement}


def test_the_candidate_must_beat_the_baseline_on_the_primary_metric() -> None:
    better = decide(EvalGate(), metrics(fields=(0.95, 0.9)))
    same = decide(EvalGate(), metrics(fields=(0.9, 0.9)))
    assert better.passed and checks(better)["improvement.field_accuracy"] is True
    assert not same.passed and same.reasons == ["field_accuracy 0.900 vs baseline 0.900 (gain +0.000, must exceed 0)"]
    assert not decide(EvalGate(min_improvement=0.1), metrics(fields=(0.95, 0.9))).passed
    assert checks(decide(EvalGate(primary_metric=None), metrics(fields=(0.9, 0.9))))["improvement"] is None


def test_a_judge_that_disagrees_with_the_truth_is_not_believed() -> None:
    bad_judge = metrics(score=9.0, win_rate=1.0, fields=(0.95, 0.5), truth=_truth(0.05, 0.4))
    ignored = decide(EvalGate(), bad_judge)  # untrusted_judge: reference_only
    assert ignored.passed
    c = checks(ignored)
    assert c["judge_trust"] is None and c["judge_score"] is None and c["win_rate"] is None
    assert "kappa 0.050" in next(x.detail for x in ignored.checks if x.name == "judge_trust")
    # the same judge with a low score cannot fail the gate either: its verdicts are not evidence
    assert decide(EvalGate(), metrics(score=2.0, win_rate=0.0, fields=(0.95, 0.5), truth=_truth(0.05, 0.4))).passed
    strict = decide(EvalGate(untrusted_judge="fail"), bad_judge)
    assert not strict.passed and checks(strict)["judge_trust"] is False


def test_a_trusted_judge_decides_and_undefined_kappa_falls_back_to_accuracy() -> None:
    trusted = decide(EvalGate(), metrics(score=2.0, fields=(0.95, 0.5), truth=_truth(0.8, 0.9)))
    assert not trusted.passed and checks(trusted)["judge_trust"] is True and checks(trusted)["judge_score"] is False
    one_label = decide(EvalGate(), metrics(fields=(0.95, 0.5), truth=_truth(None, 0.9)))
    assert checks(one_label)["judge_trust"] is True and one_label.passed
    assert checks(decide(EvalGate(), metrics(fields=(0.95, 0.5), truth=_truth(None, 0.5))))["judge_trust"] is None


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


def test_a_fine_tune_that_loses_tool_calling_fails_the_gate() -> None:
    """Tool-call accuracy is a default regression check; it can also be the metric to improve on."""
    tools = {"tool_call_accuracy": 0.5, "tool_irrelevance_accuracy": 1.0}
    m = metrics().model_copy(deep=True)
    m.candidate.update(tools)
    m.baseline.update({"tool_call_accuracy": 0.8, "tool_irrelevance_accuracy": 0.9})
    result = decide(EvalGate(), m)
    assert checks(result)["regression.tool_call_accuracy"] is False and not result.passed
    assert any("tool_call_accuracy 0.500 vs baseline 0.800" in r for r in result.reasons)
    improve = decide(EvalGate(primary_metric="tool_irrelevance_accuracy", regression_metrics=[]), m)
    assert checks(improve)["improvement.tool_irrelevance_accuracy"] is True
    with pytest.raises(ValueError):
        EvalGate(primary_metric="tool_parse_failure_rate")  # lower is better: not a metric to beat the baseline on


def test_a_fine_tune_that_lowers_a_benchmark_fails_the_gate() -> None:
    """BFCL and lm-eval summaries are default regression checks: a fine-tune that breaks general tool calling or a
    benchmark task is caught even when the split's own metrics improved."""
    m = metrics().model_copy(deep=True)
    m.candidate.update({"bfcl_accuracy": 0.2, "lm_eval_score": 0.41})
    m.baseline.update({"bfcl_accuracy": 0.3, "lm_eval_score": 0.4})
    result = decide(EvalGate(), m)
    assert checks(result)["regression.bfcl_accuracy"] is False and checks(result)["regression.lm_eval_score"] is True
    assert not result.passed and any("bfcl_accuracy 0.200 vs baseline 0.300" in r for r in result.reasons)
    assert decide(EvalGate(max_regression=0.15), m).passed
