"""The quality gate: pass/fail with one line per check, read by registration and promotion.

A check whose input does not exist (no baseline, pairwise judging off) is reported as
skipped; a check whose input should exist but could not be measured (no readable judge
score) fails, because an unmeasured model must not pass.

The judge is checked before it is believed: where reference correctness is known (JSON
answers), its verdicts are compared with it (``judge_trust``). A judge below
``min_judge_kappa`` either fails the gate or, with ``untrusted_judge: reference_only``, has
its own checks (score, win rate) skipped with the reason shown, so the decision rests on the
reference metrics: the candidate must beat the baseline on ``primary_metric`` and regress on
none of ``regression_metrics``.
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
    trust = _trust(gate, metrics)
    skip_judge = trust.passed is False and gate.untrusted_judge == "reference_only"
    if skip_judge:
        trust = trust.model_copy(update={"passed": None, "detail": trust.detail + "; judge checks skipped"})
    if metrics.examples == 0:  # only tool-calling records: nothing for the judge; their calls are gated below
        skip_judge = True
        trust = trust.model_copy(update={"passed": None, "detail": "no text answers to judge"})
    checks.append(trust)
    score = judge.candidate_score.mean
    checks.append(
        _check(
            "judge_score",
            None if skip_judge else score is not None and score >= gate.min_judge_score,
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
            None if metrics.examples == 0 else failures is not None and failures <= gate.max_judge_parse_failures,
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
                None if skip_judge else rate is not None and rate >= gate.min_win_rate,
                rate,
                gate.min_win_rate,
                f"win rate {_fmt(rate)} against the baseline (minimum {gate.min_win_rate:g})"
                if rate is not None
                else "no readable pairwise verdict",
            )
        )

    candidate, baseline = metrics.candidate, metrics.baseline
    checks.append(_improvement(gate, candidate, baseline))
    for name in gate.regression_metrics:
        if not baseline:
            checks.append(_check(f"regression.{name}", None, None, gate.max_regression, "skipped: no baseline"))
            continue
        before, after = baseline.get(name), candidate.get(name)
        if before is None and after is None:  # not on this split (e.g. tool calls where no record has tools)
            checks.append(_check(f"regression.{name}", None, None, gate.max_regression, f"skipped: no {name} here"))
            continue
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


def _trust(gate: EvalGate, metrics: EvalMetrics) -> GateCheck:
    """Whether the judge agrees with reference correctness well enough to be believed."""
    truth = metrics.judge.truth
    measured = None
    if truth is not None:
        measured = next((a for a in (truth.pairwise, truth.single) if a is not None and a.n > 0), None)
    threshold = gate.min_judge_kappa
    if threshold is None:
        return _check("judge_trust", None, None, 0.0, "skipped: min_judge_kappa is null (the judge is trusted)")
    if measured is None or truth is None:
        return _check("judge_trust", None, None, threshold, "skipped: reference correctness unknown on these answers")
    which = "pairwise" if measured is truth.pairwise else "single-grade"
    if measured.cohen_kappa is None:
        accuracy = measured.accuracy or 0.0
        return _check(
            "judge_trust",
            accuracy >= gate.min_judge_accuracy,
            accuracy,
            gate.min_judge_accuracy,
            f"judge {which} agreement with {truth.truth_metric}: accuracy {accuracy:.3f} on {measured.n} "
            f"(kappa undefined; minimum accuracy {gate.min_judge_accuracy:g})",
        )
    kappa = measured.cohen_kappa
    return _check(
        "judge_trust",
        kappa >= threshold,
        kappa,
        threshold,
        f"judge {which} agreement with {truth.truth_metric}: kappa {kappa:.3f}, accuracy {_fmt(measured.accuracy)} "
        f"on {measured.n} (minimum kappa {threshold:g})",
    )


def _improvement(
    gate: EvalGate, candidate: dict[str, float | None], baseline: dict[str, float | None] | None
) -> GateCheck:
    name = gate.primary_metric
    if name is None:
        return _check("improvement", None, None, gate.min_improvement, "skipped: primary_metric is null")
    if not baseline:
        return _check(f"improvement.{name}", None, None, gate.min_improvement, "skipped: no baseline")
    before, after = baseline.get(name), candidate.get(name)
    if before is None or after is None:
        return _check(
            f"improvement.{name}", None, None, gate.min_improvement, f"skipped: {name} does not apply to these answers"
        )
    gain = after - before
    return _check(
        f"improvement.{name}",
        gain > gate.min_improvement,
        gain,
        gate.min_improvement,
        f"{name} {after:.3f} vs baseline {before:.3f} (gain {gain:+.3f}, must exceed {gate.min_improvement:g})",
    )
