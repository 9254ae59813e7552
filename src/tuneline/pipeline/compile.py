"""Compile the pipeline (and each component) to the IR YAML that the KFP UI uploads.

The compiled files are committed: ``pipelines/tuneline.yaml`` and ``components/<stage>/component.yaml``.
Defaults come from params.yaml at compile time, so a config change shows up as a diff in review, and the
test suite fails while a committed file is stale.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tuneline.config import TunelineConfig
from tuneline.io.atomic import write_text_atomic

PIPELINE_FILE = Path("pipelines") / "tuneline.yaml"
COMPONENTS_DIR = Path("components")
STAGES = ("resolve_config", "generate", "ingest", "clean", "split", "train", "evaluate", "register")


def render(config: TunelineConfig) -> dict[Path, str]:
    """Relative path → compiled YAML text, for the pipeline and every component."""
    from kfp import compiler

    from tuneline.pipeline.components import build
    from tuneline.pipeline.definition import build_pipeline

    components = build(config)
    targets = {PIPELINE_FILE: build_pipeline(config)}
    targets.update({COMPONENTS_DIR / stage / "component.yaml": getattr(components, stage) for stage in STAGES})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rel, obj in targets.items():
            path = Path(tmp) / rel.name
            compiler.Compiler().compile(obj, str(path))
            out[rel] = path.read_text()
    return out


def compile_all(config: TunelineConfig, root: Path = Path()) -> list[Path]:
    written = []
    for rel, text in render(config).items():
        write_text_atomic(root / rel, text)
        written.append(root / rel)
    return written


def stale(config: TunelineConfig, root: Path = Path()) -> list[Path]:
    return [
        root / rel
        for rel, text in render(config).items()
        if not (root / rel).exists() or (root / rel).read_text() != text
    ]
