"""Clean: normalize, redact PII, filter by quality and length, exact and near dedup."""

from tuneline.stages.clean.run import CleanError, run_clean

__all__ = ["CleanError", "run_clean"]
