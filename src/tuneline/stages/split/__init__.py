"""Split: deterministic train/val/test with a leakage audit."""

from tuneline.stages.split.assign import SplitError
from tuneline.stages.split.run import SplitResult, run_split, split_path

__all__ = ["SplitError", "SplitResult", "run_split", "split_path"]
