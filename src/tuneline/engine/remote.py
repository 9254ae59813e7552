"""The entrypoint of a data step's RayJob: ``python -m tuneline.engine.remote <stage URI> <step>``.

It runs on the Ray head, which the job's driver joins through ``RAY_ADDRESS`` (set by Ray's job supervisor),
with the config the step staged. Inputs are read from ``<stage URI>/input`` and block scratch goes to
``<stage URI>/scratch``, both reachable by every worker; the output is written locally by the stage (atomically,
as always) and then uploaded to ``<stage URI>/output``, where the step fetches it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import fsspec

from tuneline.config.loader import validate_mapping
from tuneline.progress import setup_logging


def main(argv: list[str]) -> int:
    import json

    stage, step = argv
    setup_logging()
    fs, root = fsspec.core.url_to_fs(stage)
    with fs.open(f"{root}/config.json") as fh:
        config = validate_mapping(json.load(fh), f"{stage}/config.json")
    with tempfile.TemporaryDirectory(prefix="tuneline-rayjob-") as tmp:
        out = Path(tmp) / "output"
        if step == "ingest":
            from tuneline.stages.ingest import run_ingest
            from tuneline.stages.ingest.run import default_sources

            run_ingest(config, default_sources(config), out)
        elif step == "clean":
            from tuneline.stages.clean import run_clean

            run_clean(config, f"{stage}/input", out, scratch=f"{stage}/scratch")
        elif step == "split":
            from tuneline.stages.split import run_split

            run_split(config, f"{stage}/input", out, scratch=f"{stage}/scratch")
        else:
            raise SystemExit(f"unknown step {step!r}: ingest, clean or split")
        fs.put(str(out) + "/", f"{root}/output", recursive=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
