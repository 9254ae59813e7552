from tuneline.errors import TunelineError


class TrainError(TunelineError, RuntimeError):
    """An expected training failure (bad inputs, incoherent config, divergence); the message says what to change."""
