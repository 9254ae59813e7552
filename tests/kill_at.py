"""Run the tuneline CLI and SIGKILL it at the K-th filesystem write step (test helper).

``python -m tests.kill_at K [--no-exchange] -- ARGS...`` counts every call of the functions that change the
file system on the way to an output (directory creation, file writes through JsonlWriter and the atomic
helpers, renames, removals, the directory swap) and kills the process with SIGKILL just before the K-th.
It exits 0 if the command finished before reaching K (so a caller sweeps K = 1, 2, ... until it does). The
kill takes the process group (run it in a session of its own): the CLI and its worker processes.
``--no-exchange`` makes the swap take its two-rename fallback, as on a kernel without renameat2.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import tempfile


def arm(k: int, exchange: bool = True) -> None:
    import tuneline.io.atomic as atomic
    import tuneline.io.jsonl as jsonl

    count = [0]

    def step(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            count[0] += 1
            if count[0] == k:
                # the whole process group: a stage's worker processes count their own steps (they fork from
                # the CLI), and a worker reaching K takes the CLI down with it, as a killed machine would
                os.killpg(os.getpgid(0), signal.SIGKILL)
            return fn(*args, **kwargs)

        return wrapper

    for mod, name in [
        (os, "replace"),
        (os, "rename"),
        (os, "rmdir"),
        (os, "unlink"),
        (shutil, "rmtree"),
        (tempfile, "mkdtemp"),
    ]:
        setattr(mod, name, step(getattr(mod, name)))
    jsonl.JsonlWriter.flush = step(jsonl.JsonlWriter.flush)
    atomic.write_text_atomic = step(atomic.write_text_atomic)
    for mod in list(sys.modules.values()):  # names already imported from tuneline.io.atomic
        if getattr(mod, "__name__", "").startswith("tuneline.") and hasattr(mod, "write_json_atomic"):
            mod.write_json_atomic = step(mod.write_json_atomic)
    atomic._exchange = step(atomic._exchange) if exchange else (lambda a, b: False)


def main() -> None:
    k = int(sys.argv[1])
    rest = sys.argv[2:]
    exchange = "--no-exchange" not in rest
    args = rest[rest.index("--") + 1 :]
    import tuneline.cli
    import tuneline.stages.clean.run  # noqa: F401 - import the stages so their helpers are wrapped too
    import tuneline.stages.ingest.run  # noqa: F401
    import tuneline.stages.split.run  # noqa: F401

    arm(k, exchange)
    sys.argv = ["tuneline", *args]
    tuneline.cli.app()


if __name__ == "__main__":
    main()
