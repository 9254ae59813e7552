"""Evaluate: reference metrics and LLM-as-judge of the candidate against a baseline, a quality gate, a report."""

from tuneline.stages.evaluate.errors import EvaluateError
from tuneline.stages.evaluate.run import EvalResult, run_evaluate

__all__ = ["EvalResult", "EvaluateError", "run_evaluate"]
