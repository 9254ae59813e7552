"""Run a data stage here or as a job, the way the KFP steps want it: one call, the same typed report back.

A KFP data step runs its stage in its own pod, unless ``data.engine`` is ``ray`` with no running cluster named
to join: then the stage runs as a KubeRay RayJob (:mod:`.rayjob`) and its report is read back from the output
it fetched. Training has its own launcher (:func:`tuneline.launch.training.launch_training`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from tuneline.config import TunelineConfig
from tuneline.launch.rayjob import on_rayjob, run_step_on_ray
from tuneline.launch.stages import STAGES, Work
from tuneline.results import DATA_REPORT, CleanReport, IngestReport, SplitReport

Report = TypeVar("Report", IngestReport, CleanReport, SplitReport)


def run_data_stage(
    config: TunelineConfig, report: type[Report], input_dir: str | None, out: str, run_id: str = ""
) -> Report:
    """Run the stage whose report type is ``report`` on ``input_dir`` (None for ingest) into ``out``."""
    step = report.model_fields["stage"].default
    if on_rayjob(config):
        run_step_on_ray(config, step, run_id, input_dir, out)
        return report.read(Path(out) / DATA_REPORT)
    found = STAGES[step](Work(config, input_dir, Path(out)))
    assert isinstance(found, report), f"{step} returned {type(found).__name__}"
    return found
