"""`tuneline serve` stops its servers on SIGINT and on SIGTERM, however it was started.

The served module (tests/test_serve_vllm.py) stops a real vLLM with SIGINT; this checks the handlers alone, fast:
a process started with SIGINT ignored (as a non-interactive shell's background job is) must still stop on it,
and `kill` (SIGTERM) must reach the same clean-up path instead of ending the process with the servers running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

_CHILD = """
import sys, time
from tuneline.cli import _stop_on_signals
_stop_on_signals()
print("ready", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    print("servers stopped", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_its_servers_on_sigint_and_sigterm_even_with_sigint_ignored(sig: int):
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", _CHILD],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509  # as `cmd &` starts it
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    started = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert "servers stopped" in out and proc.returncode == 0
    assert time.monotonic() - started < 30
