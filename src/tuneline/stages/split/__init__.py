"""Split: deterministic train/val/test with a leakage audit."""

from tuneline.stages.split.assign import SplitError
from tuneline.stages.split.run import run_split, split_path

__all__ = ["SplitError", "run_split", "split_path"]
