"""The stages a job can run, by name: the one table that the job entrypoint (:mod:`.remote`) and the KFP data
steps (:mod:`.dispatch`) both read, so a stage runs the same function wherever it runs.

Each entry takes the :class:`Work` a job was given and returns the stage's typed report. Stage packages are
imported when an entry runs, so a job pulls in only what its own stage needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneline.config import TunelineConfig
from tuneline.config.loader import with_paths
from tuneline.results import Result

#: The stages a RayJob can run (training runs as a TrainJob/PyTorchJob).
DATA_STEPS = ("ingest", "clean", "split")


@dataclass(frozen=True)
class Work:
    """What a stage is run on: the resolved config, its input (a local dir, or a URI every worker reaches; None
    for ingest, which reads ``data.sources``), the local output dir, and scratch shared by the workers (or None)."""

    config: TunelineConfig
    input: str | None
    out: Path
    scratch: str | None = None


def _ingest(work: Work) -> Result:
    from tuneline.stages.ingest import run_ingest

    return run_ingest(work.config, None, work.out)


def _clean(work: Work) -> Result:
    from tuneline.stages.clean import run_clean

    assert work.input is not None, "clean reads the ingest output"
    return run_clean(work.config, work.input, work.out, scratch=work.scratch)


def _split(work: Work) -> Result:
    from tuneline.stages.split import run_split

    assert work.input is not None, "split reads the clean output"
    return run_split(work.config, work.input, work.out, scratch=work.scratch)


def _train(work: Work) -> Result | None:
    """One torchrun process of a training job: the split must be local; checkpoints go beside the output."""
    from tuneline.stages.train import run_train

    assert work.input is not None and "://" not in work.input, "training reads a local split"
    checkpoints = work.out.parent / "checkpoints"
    paths = {"split": work.input, "model": str(work.out), "checkpoints": str(checkpoints)}
    config = with_paths(work.config.model_dump_json(), **paths)
    return run_train(config, work.input, work.out, checkpoints).summary  # None on ranks other than 0


STAGES: dict[str, Callable[[Work], Result | None]] = {
    "ingest": _ingest,
    "clean": _clean,
    "split": _split,
    "train": _train,
}


def is_rank_zero() -> bool:
    """Whether this process writes the output (the only process of a data job; rank 0 of a torchrun job)."""
    return int(os.environ.get("RANK", "0")) == 0
