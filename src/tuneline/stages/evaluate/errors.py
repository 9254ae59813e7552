class EvaluateError(RuntimeError):
    """An expected evaluation failure (missing inputs, unreachable endpoint, bad labels); the message says what to do."""
