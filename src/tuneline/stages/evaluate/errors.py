from tuneline.errors import TunelineError


class EvaluateError(TunelineError, RuntimeError):
    """An expected evaluation failure (missing inputs, unreachable endpoint, bad labels); the message says what to do."""
