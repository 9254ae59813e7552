"""Generate: synthetic training data from a teacher (self-instruct, distillation, judged preference pairs)."""

from tuneline.stages.generate.errors import GenerateError
from tuneline.stages.generate.run import run_generate, skip_generate

__all__ = ["GenerateError", "run_generate", "skip_generate"]
