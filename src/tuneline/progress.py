"""Progress bars and per-step logs shared by the stages (rich).

Bars render on a terminal; under DVC/KFP (no TTY) the per-step log lines carry the same
information (records, rate), so long runs are never silent.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tuneline.redact import RedactingFilter, redact_standard_streams

console = Console(stderr=True)
log = logging.getLogger("tuneline")


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines to stderr, every line and both standard streams redacted (see tuneline.redact)."""
    redact_standard_streams()
    if not log.handlers:
        handler: logging.Handler
        if sys.stderr.isatty():
            handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:  # DVC, KFP, CI: plain one-line logs that survive in files
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler.addFilter(RedactingFilter())
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level)


@contextmanager
def stage_progress(stage: str) -> Iterator[Progress]:
    """A progress display for one stage; disabled when stderr is not a terminal."""
    progress = Progress(
        TextColumn(f"[bold]{stage}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not sys.stderr.isatty(),
        transient=False,
    )
    with progress:
        yield progress


class Rate:
    """Records/s since construction, for log lines and reports."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def per_second(self, n: int) -> float:
        return n / max(self.elapsed(), 1e-9)
