from tuneline.errors import TunelineError


class GenerateError(TunelineError, RuntimeError):
    """An expected generate failure (no usable seeds, an unknown teacher model, every call failed)."""
