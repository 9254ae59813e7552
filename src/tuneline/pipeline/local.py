"""Run the whole pipeline on this machine with ``kfp.local`` (SubprocessRunner, no venv, no cluster).

Each component runs as a subprocess of this interpreter's environment, exchanging real artifacts under
``pipeline_root``: the same DAG, parameters and component code as on the cluster, minus Kubernetes
(scheduling and Secrets are cluster-only and ignored locally).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

from tuneline.config import TunelineConfig


def run_local(config: TunelineConfig, pipeline_root: Path, arguments: dict[str, Any] | None = None) -> Path:
    """Run it; returns the run's directory under ``pipeline_root`` (one folder per task, one per output)."""
    from kfp import local

    from tuneline.pipeline.definition import build_pipeline

    # the executor is started as `python3 -m kfp...`: make that this environment's interpreter
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    before = set(pipeline_root.iterdir())
    # kfp.local draws run ids from the global `random`, which training code seeds: without a reseed two
    # runs in one process share an id, and with it the train step's checkpoint folder
    random.seed()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    build_pipeline(config)(**(arguments or {}))
    [run_dir] = [p for p in pipeline_root.iterdir() if p not in before]
    return run_dir
