"""Atomic outputs: a stage writes into a hidden sibling directory and renames it at the end.

A crash or kill leaves the previous complete output (or none) in place, never a half
written one, so DVC and KFP never see partial results and a re-run simply starts over.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, backup)
    os.replace(tmp, out)
    shutil.rmtree(backup, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write text to ``path`` through a temp file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temp file and rename."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
