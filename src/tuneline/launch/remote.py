"""The entrypoint of every job tuneline launches: ``python -m tuneline.launch.remote STEP STAGE_URI``.

The launching step staged the resolved config at ``STAGE_URI/config.json`` and its input under
``STAGE_URI/input``; this runs ``STEP`` from the table in :mod:`.stages` and uploads the output (rank 0 only,
where several processes run) to ``STAGE_URI/output``, where the step fetches it. Data stages read their input
and keep block scratch (``STAGE_URI/scratch``) on the stage URI itself, so every Ray worker reaches them;
training copies the split to the node first. (The ranks of a one-node torchrun run need none of this: they
run :mod:`tuneline.launch.training` itself, on local paths.)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tuneline.config.loader import validate_mapping
from tuneline.launch.stages import STAGES, Work, is_rank_zero
from tuneline.progress import setup_logging


def run_staged(step: str, stage: str) -> None:
    import fsspec

    if step not in STAGES:
        raise SystemExit(f"unknown step {step!r}: one of {', '.join(STAGES)}")
    fs, root = fsspec.core.url_to_fs(stage)
    config = validate_mapping(json.loads(fs.cat_file(f"{root}/config.json")), f"{stage}/config.json")
    with tempfile.TemporaryDirectory(prefix=f"tuneline-{step}-") as tmp:
        source = f"{stage.rstrip('/')}/input"
        if step == "train":  # torchrun's ranks read the split from local disk
            fs.get(f"{root}/input/", f"{tmp}/input/", recursive=True)
            source = f"{tmp}/input"
        out = Path(tmp) / "output"
        STAGES[step](Work(config, source if fs.exists(f"{root}/input") else None, out, f"{stage}/scratch"))
        if is_rank_zero():
            fs.put(str(out) + "/", f"{root}/output", recursive=True)


def main(argv: list[str]) -> int:
    setup_logging()
    run_staged(*argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
