"""Atomic, owned outputs: a stage writes into a hidden sibling directory and swaps it in at the end.

Contract of :func:`atomic_dir`:

* **It never deletes what it did not write.** The output directory must be absent, empty, or a previous
  output of the same writer (it holds the :data:`MARKER` file that writer put there). The current directory,
  an input, an ancestor of an input and a directory inside an input are refused before anything is written.
* **A kill at any point leaves the previous complete output or the new one**, never a mix: the new
  directory is swapped in with one ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it,
  with recovery of the previous output on the next run). Leftovers of a killed run (hidden ``.NAME.tmp-PID-*``
  siblings) are removed by the next run, only when they are ours (marker inside, or empty) and their
  process is gone.
* **A complete but rejected output is kept for inspection**: when the block raises :class:`OutputRejected`
  (too many quarantined records, leakage with ``action: fail``), the previous output stays and the new one
  is moved to ``NAME.failed`` beside it (see :func:`failed_path`).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneline.errors import TunelineError

MARKER = ".tuneline-output.json"


class OutputRefused(TunelineError, ValueError):
    """The output directory is not ours to replace (it would delete or mix with someone else's files)."""

    exit_code = 2


class OutputRejected(RuntimeError):
    """Raised inside :func:`atomic_dir` when the output is complete but must not replace the previous one."""


def failed_path(out: str | Path) -> Path:
    """Where a rejected output of ``out`` is kept for inspection."""
    out = Path(out)
    return out.with_name(f"{out.name}.failed")


def owner_of(path: Path) -> str | None:
    """The writer named by the marker in ``path``, or None when there is no readable marker."""
    try:
        return str(json.loads((path / MARKER).read_text())["writer"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_output(out: str | Path, writer: str, inputs: Iterable[str | Path] = ()) -> None:
    """Refuse an ``out`` that :func:`atomic_dir` may not replace; the message says why and what to do."""
    out = Path(out)
    real = out.resolve()
    if real == Path.cwd().resolve():
        raise OutputRefused(f"output {out} is the current directory: name a directory of its own")
    for item in inputs:
        src = Path(item).resolve()
        if real == src or real in src.parents:
            raise OutputRefused(f"output {out} is or contains the input {item}: it would be deleted")
        if src in real.parents and src.is_dir():
            raise OutputRefused(f"output {out} is inside the input directory {item}: write it elsewhere")
    if real.is_file():
        raise OutputRefused(f"output {out} is a file, not a directory")
    _check_place(out)
    if real.is_dir() and any(real.iterdir()):
        owner = owner_of(real)
        if owner != writer:
            what = f"the output of {owner}" if owner else "not empty and not written by tuneline"
            raise OutputRefused(
                f"output {out} is {what}; {writer} only replaces its own earlier output "
                f"(marked by {MARKER}): choose an empty or new directory, or remove it yourself"
            )


def _check_place(out: Path) -> None:
    """``out`` can be created: its nearest existing ancestor is a writable directory."""
    real = out.resolve()
    existing = next(p for p in (real, *real.parents) if p.exists())
    if not existing.is_dir():
        raise OutputRefused(f"output {out} would be inside {existing}, which is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputRefused(f"output {out} cannot be created: {existing} is not writable")


@contextmanager
def atomic_dir(out: str | Path, writer: str, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds (see the module doc)."""
    out = Path(out)
    inputs = list(inputs)
    _check_place(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _recover(out, writer)
    check_output(out, writer, inputs)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        (tmp / MARKER).write_text(json.dumps({"writer": writer}) + "\n")
        yield tmp
    except OutputRejected:
        _keep_rejected(tmp, failed_path(out), writer)
        raise
    except BaseException:
        _remove_owned(tmp)
        raise
    _swap_in(tmp, out)


def _swap_in(tmp: Path, out: Path) -> None:
    if out.exists() and _exchange(tmp, out):
        _remove_owned(tmp)  # now holds the previous output
        return
    backup = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, backup)
    os.replace(tmp, out)
    _remove_owned(backup)


def _remove_owned(path: Path) -> None:
    """Delete a directory of ours with its marker last, so a kill midway leaves it recognisably ours."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.name != MARKER:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (path / MARKER).unlink(missing_ok=True)
    path.rmdir()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _keep_rejected(tmp: Path, failed: Path, writer: str) -> None:
    if failed.exists() and owner_of(failed) == writer:
        _remove_owned(failed)
    if failed.exists():  # someone else's directory of that name: keep both
        failed = Path(tempfile.mkdtemp(prefix=f"{failed.name}-", dir=failed.parent))
        failed.rmdir()
    os.replace(tmp, failed)


_LITTER = re.compile(r"^\.(?P<name>.+)\.(?:tmp-(?P<pid>\d+)-.+|old-(?P<oldpid>\d+))$")


def _recover(out: Path, writer: str) -> None:
    """Undo what a killed run left: restore a previous output caught mid-swap, remove our stale temp dirs."""
    for entry in out.parent.iterdir():
        m = _LITTER.match(entry.name)
        if not m or m["name"] != out.name or not entry.is_dir():
            continue
        pid = int(m["pid"] or m["oldpid"])
        if pid != os.getpid() and _alive(pid):
            continue
        ours = owner_of(entry) == writer
        if m["oldpid"] and ours and not out.exists():
            os.replace(entry, out)  # killed between the two renames: the previous output comes back
        elif ours:
            _remove_owned(entry)
        elif not any(entry.iterdir()):
            entry.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
