"""Checkpoints that survive ``kill -9`` and lost nodes.

The HF Trainer writes ``checkpoint-N/`` non-atomically. After it finishes, a marker
(``tuneline_checkpoint.json``) records the step, the run fingerprint, the MLflow run that a
resume goes on logging to, and every file's size; only a checkpoint whose marker exists and
matches its files counts as complete. On start, incomplete or corrupt checkpoints, and those
of a different run (config or data changed), are moved aside to ``rejected/`` with a warning
(never deleted), and training resumes from the newest complete one.

With ``train.checkpoint_uri`` each complete checkpoint is mirrored to an object-store
prefix or a mounted volume (``file://``; marker written last), and missing ones are pulled back
before resuming, so a replacement node continues where a preempted one stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from tuneline.results import Result

log = logging.getLogger("tuneline.train")
MARKER = "tuneline_checkpoint.json"
PREFIX = "checkpoint-"


def _step(path: Path | str) -> int:
    try:
        return int(str(path).rstrip("/").rsplit(PREFIX, 1)[-1])
    except ValueError:
        return -1


def file_sizes(ckpt: Path) -> dict[str, int]:
    return {
        str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != MARKER
    }


class CompletionMark(Result):
    """Written last into a checkpoint: which run wrote it, and every file's size (a resume checks them)."""

    step: int
    fingerprint: str
    mlflow_run_id: str | None
    files: dict[str, int]


def mark_complete(ckpt: Path, step: int, fingerprint: str, mlflow_run_id: str | None = None) -> None:
    CompletionMark(step=step, fingerprint=fingerprint, mlflow_run_id=mlflow_run_id, files=file_sizes(ckpt)).write(
        ckpt / MARKER
    )


def _mark(ckpt: Path) -> CompletionMark | None:
    try:
        return CompletionMark.read(ckpt / MARKER)
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def mlflow_run_of(ckpt: Path) -> str | None:
    """The MLflow run that wrote a complete checkpoint (resuming continues it)."""
    mark = _mark(ckpt)
    return mark.mlflow_run_id if mark else None


def problem(ckpt: Path, fingerprint: str) -> str | None:
    """Why ``ckpt`` cannot be resumed from, or None when it is complete and belongs to this run."""
    marker = ckpt / MARKER
    if not marker.is_file():
        return "incomplete (no completion marker: the run stopped while saving)"
    meta = _mark(ckpt)
    if meta is None:
        return "corrupt completion marker"
    if meta.fingerprint != fingerprint:
        return "from a different run (config or data changed)"
    actual = file_sizes(ckpt)
    for name, size in meta.files.items():
        if actual.get(name) != size:
            return f"corrupt: {name} is {'missing' if name not in actual else 'truncated or changed'}"
    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "corrupt: unreadable trainer_state.json"
    return None


def checkpoints(ckpt_dir: Path) -> list[Path]:
    return sorted((p for p in ckpt_dir.glob(f"{PREFIX}*") if p.is_dir() and _step(p) >= 0), key=_step, reverse=True)


def latest_resumable(ckpt_dir: str | Path, fingerprint: str) -> Path | None:
    """Newest complete checkpoint of this run; every unusable one is set aside with a warning."""
    ckpt_dir = Path(ckpt_dir)
    found = None
    for ckpt in checkpoints(ckpt_dir):
        reason = problem(ckpt, fingerprint)
        if reason is None:
            found = found or ckpt
            continue
        rejected = ckpt_dir / "rejected" / f"{ckpt.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        rejected.parent.mkdir(parents=True, exist_ok=True)
        os.replace(ckpt, rejected)
        log.warning("skipping checkpoint %s: %s (moved to %s)", ckpt.name, reason, rejected)
    return found


def rotate(ckpt_dir: Path, keep: int) -> set[str]:
    """Delete complete checkpoints beyond the newest ``keep`` (never an incomplete one: the next start sets those
    aside); returns the names kept."""
    complete = [c for c in checkpoints(ckpt_dir) if (c / MARKER).is_file()]
    for old in complete[keep:]:
        shutil.rmtree(old)
    return {c.name for c in complete[:keep]}


def prune_rejected(ckpt_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints that were set aside in ``rejected/`` (all of them tuneline's)."""
    rejected = ckpt_dir / "rejected"
    if rejected.is_dir():
        entries = sorted((p for p in rejected.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[keep:]:
            shutil.rmtree(old)


def finish_mirror(uri: str, policy: str) -> None:
    """After a finished run: keep every mirrored checkpoint, only the newest, or none (``train.mirror_after_finish``)."""
    if policy == "keep":
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    if not fs.exists(root.rstrip("/")):
        return
    names = sorted((r.rstrip("/").rsplit("/", 1)[-1] for r in fs.ls(root.rstrip("/"), detail=False)), key=_step)
    keep = {n for n in names if n.startswith(PREFIX)}
    prune_remote(uri, {max(keep, key=_step)} if keep and policy == "last" else set())


# ------------------------------------------------------------------ object-store mirror
def push(ckpt: Path, uri: str) -> None:
    """Upload one complete checkpoint; the marker goes last so a partial upload is never complete."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    dest = f"{root.rstrip('/')}/{ckpt.name}"
    fs.makedirs(dest, exist_ok=True)  # object stores have no folders; a mounted volume (file://) does
    for path in sorted(ckpt.rglob("*")):
        if path.is_dir():
            fs.makedirs(f"{dest}/{path.relative_to(ckpt).as_posix()}", exist_ok=True)
        elif path.name != MARKER:
            fs.put_file(str(path), f"{dest}/{path.relative_to(ckpt).as_posix()}")
    fs.put_file(str(ckpt / MARKER), f"{dest}/{MARKER}")


def pull(uri: str, ckpt_dir: Path) -> int:
    """Download the remote checkpoints that are complete there and missing here; returns how many."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    if not fs.exists(root):
        return 0
    pulled = 0
    for remote in fs.ls(root, detail=False):
        name = remote.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith(PREFIX) or (ckpt_dir / name).exists() or not fs.exists(f"{remote}/{MARKER}"):
            continue
        tmp = ckpt_dir / f".{name}.pull"
        shutil.rmtree(tmp, ignore_errors=True)
        fs.get(remote.rstrip("/") + "/", str(tmp), recursive=True)
        os.replace(tmp, ckpt_dir / name)
        pulled += 1
    if pulled:
        log.info("pulled %d checkpoint(s) from %s", pulled, uri)
    return pulled


def prune_remote(uri: str, keep: set[str]) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    for remote in fs.ls(root.rstrip("/"), detail=False):
        name = remote.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(PREFIX) and name not in keep:
            fs.rm(remote, recursive=True)
