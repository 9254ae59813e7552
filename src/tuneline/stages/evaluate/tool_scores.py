"""The tool-calling test records scored: each model's calls against the record's (BFCL's rules, :mod:`.toolcalls`),
per record and as the metrics of :data:`tuneline.results.TOOL_METRICS`."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tuneline.results import TOOL_METRICS, ToolAnswer, ToolCallRow
from tuneline.stages.evaluate.answers import Answers, ToolExample
from tuneline.stages.evaluate.judge import render_question
from tuneline.stages.evaluate.toolcalls import ParsedAnswer, check_turn


def tool_rows(examples: list[ToolExample], candidate: Answers, baseline: Answers | None) -> list[ToolCallRow]:
    return [
        ToolCallRow(
            id=e.id,
            category=e.category,
            question=render_question(e.prompt),
            expected=e.reference,
            candidate=_verdict(e, candidate.tool_answers[i]),
            baseline=_verdict(e, baseline.tool_answers[i]) if baseline else None,
        )
        for i, e in enumerate(examples)
    ]


def _verdict(example: ToolExample, answer: ParsedAnswer) -> ToolAnswer:
    verdict = check_turn(example.tools, answer.calls, example.expected)
    return ToolAnswer(
        calls=answer.calls,
        valid=verdict.valid,
        error_type=verdict.error_type,
        error=verdict.error,
        parse_error=answer.parse_error,
    )


def tool_metrics(rows: list[ToolCallRow], who: str) -> dict[str, float | None]:
    """The :data:`TOOL_METRICS` of ``who`` (candidate or baseline) over the rows; None where nothing applies."""
    if not rows:
        return {}
    answers = [(r.expected, getattr(r, who)) for r in rows]
    calling = [(want, got) for want, got in answers if want]
    named = [(want, got) for want, got in calling if _names(got.calls) == _names(want)]
    quiet = [got for want, got in answers if not want]
    values = (
        _share([got.valid for _, got in calling]),
        _share([_names(got.calls) == _names(want) for want, got in calling]),
        _share([got.valid for _, got in named]),
        _share([got.valid for got in quiet]),
        _share([got.parse_error is not None for _, got in answers]),
    )
    return dict(zip(TOOL_METRICS, values, strict=True))


def _names(calls: list[dict[str, Any]]) -> Counter:
    return Counter(c.get("name") for c in calls)


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None
