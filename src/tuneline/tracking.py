"""MLflow tracking and lineage shared by training, evaluation and registration.

Lineage recorded on every run: the git commit of the code, the DVC hashes of the data
splits (DVC's md5 of each file, and of the split directory from ``dvc.lock`` when the
split came from ``dvc repro``), and a digest of the params that produced the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("tuneline")


def tracking_uri(configured: str) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def use_tracking_uri(uri: str) -> None:
    """Point MLflow's fluent API at ``uri`` without leaking it into ``MLFLOW_TRACKING_URI``.

    ``mlflow.set_tracking_uri`` also writes the environment variable, which would then
    override ``registry.tracking_uri`` for every later step in the same process.
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit(cwd: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def dvc_lock_hash(path: str | Path, lock: str | Path = "dvc.lock") -> str | None:
    """The md5 DVC recorded for output ``path`` in ``dvc.lock`` (None when not produced by dvc repro)."""
    try:
        stages = yaml.safe_load(Path(lock).read_text()).get("stages", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    want = Path(path).as_posix().rstrip("/")
    for stage in stages.values():
        for out in stage.get("outs", []):
            if Path(out.get("path", "")).as_posix().rstrip("/") == want:
                return out.get("md5")
    return None


def split_lineage(split_dir: str | Path) -> dict[str, str]:
    """DVC-compatible md5 of every split file (keys like ``sft/train.jsonl``), plus the directory hash."""
    split_dir = Path(split_dir)
    out = {p.relative_to(split_dir).as_posix(): file_md5(p) for p in sorted(split_dir.rglob("*.jsonl"))}
    dir_hash = dvc_lock_hash(split_dir)
    if dir_hash:
        out["dvc.lock"] = dir_hash
    return out


def digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def run_exists(run_id: str) -> bool:
    """Whether the current tracking store holds ``run_id``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


@contextmanager
def mlflow_run(
    uri: str, experiment: str, run_name: str, run_id: str | None = None, system_metrics: bool = True
) -> Iterator[Any]:
    """Start (or resume, given ``run_id``) an MLflow run; a run that raises is marked FAILED."""
    import mlflow

    use_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment)
    except Exception as exc:  # noqa: BLE001 - any backend error means tracking is unreachable
        raise ConnectionError(f"cannot reach the MLflow tracking server at {uri}: {exc}") from exc
    if run_id is not None and not run_exists(run_id):
        # a checkpoint can outlive its tracking store (another server, a wiped SQLite file): log afresh
        log.warning("MLflow run %s is not in %s; starting a new run", run_id, uri)
        run_id = None
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(2)
        mlflow.set_system_metrics_samples_before_logging(1)
    with mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, log_system_metrics=system_metrics
    ) as run:
        yield run
