"""The one family of expected failures.

Every failure a user can cause or fix (bad data, a missing package, an unreachable server, a refused
output) is a ``TunelineError``: its message is the user's one line, ``exit_code`` what the CLI exits
with (1: the command failed, 2: it was refused or misconfigured). The CLI catches this one class, so it
needs to import no stage to report a stage's failure. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TunelineError(Exception):
    """An expected failure whose message is meant for the user."""

    exit_code: int = 1


class ServeError(TunelineError):
    """The model cannot be served: the engine is missing, the model dir is incomplete, the server failed."""
