"""What each KFP component runs: parse the config it was handed, point the paths at the step's artifacts,
call the stage function, and describe the result for the KFP UI (Markdown, Metrics).

Every function takes paths and returns nothing but files, so a component body is one import and one call.
The config travels between steps as the validated JSON that :func:`resolve` produced once at the start of
the run, so a bad override fails the first step, naming the key, before anything is computed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuneline.config import ConfigError, TunelineConfig, apply_overrides
from tuneline.config.loader import validate_mapping, with_paths
from tuneline.io.atomic import write_text_atomic
from tuneline.pipeline.parameters import KNOBS
from tuneline.progress import setup_logging
from tuneline.results import CleanReport, IngestReport, SplitReport

log = logging.getLogger("tuneline")

#: Where the train step mounts ``kubeflow.checkpoint_pvc``.
CHECKPOINT_MOUNT = "/mnt/tuneline-checkpoints"


def resolve(config_json: str, overrides_json: str, knobs: Mapping[str, Any], out: str) -> None:
    """Apply the per-run knobs (empty = keep the compiled default) and a JSON override object, validate, write."""
    try:
        overrides = json.loads(overrides_json or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config_overrides is not JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ConfigError('config_overrides must be a JSON object of dotted keys, e.g. {"train.max_steps": 50}')
    pairs = {KNOBS[k]: v for k, v in knobs.items() if v not in ("", None) and k in KNOBS}
    if "data.sources" in pairs:
        pairs["data.sources"] = [pairs["data.sources"]]
    pairs.update(overrides)
    data = apply_overrides(json.loads(config_json), [f"{k}={json.dumps(v)}" for k, v in pairs.items()])
    config = validate_mapping(
        data, "pipeline config with overrides " + ", ".join(sorted(pairs)) if pairs else "pipeline config"
    )
    write_text_atomic(out, config.model_dump_json())


def load(config_json: str, **paths: str) -> TunelineConfig:
    """The resolved config with ``paths.<name>`` pointed at this step's artifact directories.

    Every step starts here, so its logs and standard streams are set up (and redacted) as the CLI's are.
    """
    setup_logging()
    return with_paths(config_json, **paths)


def _markdown(title: str, rows: Mapping[str, Any]) -> str:
    lines = [f"## {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def generate(config_json: str, generated: str, summary: str, run_id: str = "") -> None:
    """The teacher's records into ``generated``; its call cache on the checkpoint PVC when one is mounted, so a
    retried pod resumes without paying for a call twice."""
    from tuneline.stages.generate import run_generate

    config = load(config_json, generated=generated)
    if config.kubeflow.checkpoint_pvc:
        cache = Path(CHECKPOINT_MOUNT) / "generate" / f"{run_id or 'local'}.sqlite"
    else:
        cache = Path(generated).parent / "generate_cache.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    r = run_generate(config, generated, cache_path=cache)
    rows = {
        "method": r.method,
        "teacher": r.teacher,
        "kept": r.kept,
        **{f"dropped: {k}": v for k, v in r.dropped.items()},
    }
    rows |= {"teacher calls": r.requests, "tokens": r.prompt_tokens + r.completion_tokens}
    write_text_atomic(summary, _markdown("Generate", rows))


def ingest(config_json: str, ingested: str, summary: str, run_id: str = "", generated: str = "") -> None:
    """Ingest data.sources; ``generated`` is the generate step's output where the pipeline has that step."""
    from tuneline.launch.dispatch import run_data_stage

    config = load(config_json, ingested=ingested, **({"generated": generated} if generated else {}))
    if config.generate.enabled and not generated:
        log.warning("generate.enabled is set but this pipeline was compiled without the generate step: ignored")
        config = config.model_copy(update={"generate": config.generate.model_copy(update={"enabled": False})})
    report = run_data_stage(config, IngestReport, None, ingested, run_id)
    rows = {
        "SFT records": report.sft,
        "preference records": report.preference,
        "KTO records": report.kto,
        "quarantined (file, line, reason)": report.quarantined,
    }
    write_text_atomic(summary, _markdown("Ingest", rows))


def clean(config_json: str, ingested: str, cleaned: str, summary: str, run_id: str = "") -> None:
    from tuneline.launch.dispatch import run_data_stage

    config = load(config_json, ingested=ingested, cleaned=cleaned)
    report = run_data_stage(config, CleanReport, ingested, cleaned, run_id)
    rows = {
        **{f"kept {k}": v for k, v in report.output.items()},
        **{f"removed: {k}": v for k, v in report.removed.items()},
    }
    write_text_atomic(summary, _markdown("Clean", rows))


def split(config_json: str, cleaned: str, split_dir: str, summary: str, run_id: str = "") -> None:
    from tuneline.launch.dispatch import run_data_stage

    config = load(config_json, cleaned=cleaned, split=split_dir)
    report = run_data_stage(config, SplitReport, cleaned, split_dir, run_id)
    rows = {f"{kind} {name}": n for kind, counts in report.counts.items() for name, n in counts.items()}
    write_text_atomic(summary, _markdown("Split", {**rows, "leaked records handled": report.leakage.found}))


def checkpoint_mirror(config: TunelineConfig, run_id: str) -> str | None:
    """Where the train step keeps checkpoints that outlive its pod: ``train.checkpoint_uri``, else the mounted
    ``kubeflow.checkpoint_pvc`` (one node only: the nodes of a multi-node job do not mount it); per run."""
    root = config.train.checkpoint_uri
    if root is None and config.kubeflow.checkpoint_pvc and config.train.num_nodes == 1:
        root = f"file://{CHECKPOINT_MOUNT}"
    return f"{root.rstrip('/')}/{run_id}" if root and run_id else root


def train(config_json: str, split_dir: str, model: str, checkpoints: str, run_id: str) -> dict[str, float]:
    """Train into ``model``; checkpoints go to :func:`checkpoint_mirror` too, so a retried or preempted pod
    resumes instead of starting over. Returns the numeric summary for the Metrics artifact."""
    from tuneline.launch.training import launch_training

    config = load(config_json, split=split_dir, model=model, checkpoints=checkpoints)
    mirror = checkpoint_mirror(config, run_id)
    if mirror != config.train.checkpoint_uri:
        config = config.model_copy(update={"train": config.train.model_copy(update={"checkpoint_uri": mirror})})
    return launch_training(config, split_dir, model, checkpoints, run_id).numeric()


def evaluate(
    config_json: str, model: str, split_dir: str, evaluation: str, report_html: str, summary: str
) -> dict[str, float]:
    from tuneline.stages.evaluate import run_evaluate

    config = load(config_json, model=model, split=split_dir, eval=evaluation)
    cache = Path(evaluation).parent / "judge_cache.sqlite"  # per run; the SQLite cache only spares repeats within it
    result = run_evaluate(config, model, split_dir, evaluation, cache_path=cache)
    write_text_atomic(report_html, (Path(evaluation) / "report.html").read_text(encoding="utf-8"))
    write_text_atomic(summary, (Path(evaluation) / "report.md").read_text(encoding="utf-8"))
    return _numeric(result.metrics.model_dump())


def register(config_json: str, model: str, evaluation: str, split_dir: str, registration: str, summary: str) -> None:
    from tuneline.stages.register import run_register

    config = load(config_json, model=model, eval=evaluation, split=split_dir, registration=registration)
    record = run_register(config, model, evaluation, registration).record
    write_text_atomic(
        summary,
        _markdown(
            "Registered model",
            {
                "name": record.model_name,
                "version": record.version,
                "aliases": ", ".join(record.aliases) or "none",
                "gate": "PASS" if record.gate_passed else "FAIL: " + "; ".join(record.gate_reasons),
                "storage": record.storage_uri,
            },
        ),
    )


def _numeric(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_numeric(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out
