"""The register stage: one MLflow model version per distinct (model, evaluation), with full lineage.

Order of operations makes failure safe: the artifacts are uploaded to a run first; only
when every file is there is the version created, in one call that carries all its tags.
A failed upload therefore leaves a FAILED run and no version. Re-running on the same
inputs finds the version by its ``tuneline.input_digest`` tag instead of creating another.
The ``candidate`` alias is set only when the gate passed; ``champion`` is never touched here.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tuneline.config import TunelineConfig
from tuneline.errors import TunelineError
from tuneline.models.trained import ModelDirError, read_manifest
from tuneline.redact import redact_url
from tuneline.registry import CANDIDATE, MODEL_ARTIFACT, RegistryError, client, version_by_alias
from tuneline.results import (
    DATA_REPORT,
    EVAL_GATE,
    EVAL_METRICS,
    EVALUATION,
    TRAIN_SUMMARY,
    EvalMetrics,
    Evaluation,
    GateDecision,
    ModelManifest,
    Result,
    TrainSummary,
    VersionRecord,
)
from tuneline.tracking import file_md5, flatten, mlflow_run, tracking_uri

log = logging.getLogger("tuneline")
R = TypeVar("R", bound=Result)

TAG_VALUE_LIMIT = 5000  # MLflow's limit on a model version tag value
DIGEST_TAG = "tuneline.input_digest"


class RegisterError(TunelineError, RuntimeError):
    """Registration could not complete; the message says why and nothing half-registered remains."""


@dataclass(frozen=True)
class RegisterResult:
    record: VersionRecord


def input_digest(model_dir: Path, eval_dir: Path) -> str:
    """Identity of what is registered: every file of the model dir plus the evaluation's metrics and gate."""
    digest = hashlib.sha256()
    files = [(f"model/{p.relative_to(model_dir).as_posix()}", p) for p in sorted(model_dir.rglob("*")) if p.is_file()]
    files += [(f"eval/{name}", eval_dir / name) for name in (EVAL_METRICS, EVAL_GATE)]
    for rel, path in files:
        digest.update(f"{rel}:{file_md5(path)}\n".encode())
    return digest.hexdigest()[:32]


def _read(model: type[R], path: Path, what: str) -> R:
    if not path.is_file():
        raise RegisterError(f"{path} not found: {what}")
    try:
        return model.read(path)
    except ValueError as exc:
        raise RegisterError(f"{path} is not a valid {model.__name__}: {exc}") from None


def lineage_tags(
    manifest: ModelManifest,
    summary: TrainSummary,
    metrics: EvalMetrics,
    gate: GateDecision,
    evaluation: Evaluation,
    digest: str,
) -> dict[str, str]:
    tags: dict[str, Any] = {
        DIGEST_TAG: digest,
        "git_commit": manifest.git_commit or "unknown",
        "params_digest": manifest.params_digest,
        "base_model": manifest.base,
        "method": manifest.method,
        "train_run_id": manifest.mlflow_run_id or "",
        "eval_run_id": evaluation.mlflow_run_id or "",
        "eval.baseline": evaluation.baseline,
        "eval.judge": evaluation.judge,
        "gate.passed": str(gate.passed).lower(),
        "gate.reasons": "; ".join(gate.reasons) or "none",
        **{f"data.{k}": v for k, v in manifest.data.items()},
        **{f"base.{k}": v for k, v in (manifest.base_provenance or {}).items()},
        **flatten(summary.model_dump(exclude={"fingerprint"}), "train."),
        **flatten(metrics.model_dump(mode="json", exclude={"gate_passed", "benchmarks"}), "eval."),
        # one tag per benchmark score (eval.bench.bfcl.simple_python.accuracy.candidate): promotion PRs compare them
        **{f"eval.{b.key}.{who}": getattr(b, who) for b in metrics.benchmarks for who in ("candidate", "baseline")},
    }
    return {k: str(v)[:TAG_VALUE_LIMIT] for k, v in tags.items() if v is not None}


def _data_reports(config: TunelineConfig) -> list[Path]:
    paths = config.paths
    candidates = [
        Path(paths.ingested) / DATA_REPORT,
        Path(paths.cleaned) / DATA_REPORT,
        Path(paths.split) / DATA_REPORT,
        Path(paths.split) / "leakage.jsonl",
    ]
    return [p for p in candidates if p.is_file()]


def _ui_hint(config: TunelineConfig, name: str, version: str) -> str:
    uri = redact_url(tracking_uri(config.registry.tracking_uri))
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/models/{name}/versions/{version}"
    return f"mlflow ui --backend-store-uri {uri}  (or `tuneline mlflow up`), then Models → {name} → version {version}"


def run_register(
    config: TunelineConfig,
    model_dir: str | Path | None = None,
    eval_dir: str | Path | None = None,
    out: str | Path | None = None,
) -> RegisterResult:
    """Register the model dir with its evaluation as a new version (or find the version that already holds these
    exact inputs), set ``@candidate`` when the gate passed, and write the version's record to ``out``.

    The paths default to ``paths.model``, ``paths.eval`` and ``paths.registration``.
    """
    model_dir = Path(model_dir or config.paths.model)
    eval_dir = Path(eval_dir or config.paths.eval)
    out = Path(out or config.paths.registration)
    name = config.registry.model_name
    inputs = _read_inputs(model_dir, eval_dir)
    digest = input_digest(model_dir, eval_dir)
    mlc, existing = _registered(config, digest)
    if existing:
        version = max(existing, key=lambda v: int(v.version))
        log.info("register: %s v%s already holds these inputs (digest %s); not creating another", name,
                 version.version, digest)  # fmt: skip
    else:
        version = _create_version(config, mlc, inputs, model_dir, eval_dir, digest)
        log.info("register: created %s v%s", name, version.version)
    if inputs.gate.passed:
        mlc.set_registered_model_alias(name, CANDIDATE, version.version)
    else:
        reasons = "; ".join(inputs.gate.reasons)
        log.warning("register: gate failed, %s v%s registered without @%s: %s", name, version.version, CANDIDATE,
                    reasons)  # fmt: skip
    record = describe_version(config, version=str(version.version)).model_copy(update={"existing": bool(existing)})
    record.write(out)
    return RegisterResult(record=record)


@dataclass(frozen=True)
class _Inputs:
    manifest: ModelManifest
    gate: GateDecision
    metrics: EvalMetrics
    evaluation: Evaluation
    summary: TrainSummary


def _read_inputs(model_dir: Path, eval_dir: Path) -> _Inputs:
    """The model dir's and the evaluation's records, refusing an evaluation of another model."""
    try:
        manifest = read_manifest(model_dir)
    except ModelDirError as exc:
        raise RegisterError(str(exc)) from None
    inputs = _Inputs(
        manifest=manifest,
        gate=_read(GateDecision, eval_dir / EVAL_GATE, "run `tuneline evaluate` first"),
        metrics=_read(EvalMetrics, eval_dir / EVAL_METRICS, "run `tuneline evaluate` first"),
        evaluation=_read(Evaluation, eval_dir / EVALUATION, "run `tuneline evaluate` first"),
        summary=_read(TrainSummary, model_dir / TRAIN_SUMMARY, "the model dir is incomplete; re-run `tuneline train`"),
    )
    if inputs.evaluation.train_run_id != manifest.mlflow_run_id:
        # another model's evaluation would register this model with that model's gate (and set @candidate)
        raise RegisterError(
            f"{eval_dir} evaluated the model of training run {inputs.evaluation.train_run_id} "
            f"({inputs.evaluation.model_dir}), not {model_dir} (training run {manifest.mlflow_run_id}); "
            f"run `tuneline evaluate {model_dir}` first"
        )
    return inputs


def _registered(config: TunelineConfig, digest: str) -> tuple[Any, list[Any]]:
    """The registry client (the registered model created if new) and the versions holding these inputs."""
    from mlflow.exceptions import MlflowException

    name = config.registry.model_name
    where = redact_url(tracking_uri(config.registry.tracking_uri))
    try:
        mlc = client(config.registry.tracking_uri)
        try:
            mlc.create_registered_model(name, description="Fine-tuned by tuneline (see each version's tags).")
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        return mlc, mlc.search_model_versions(f"name = '{name}' and tags.`{DIGEST_TAG}` = '{digest}'")
    except MlflowException as exc:
        raise RegisterError(f"MLflow registry at {where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - unreachable servers raise many types
        raise RegisterError(f"cannot reach the MLflow registry at {where}: {exc}") from None


def _create_version(
    config: TunelineConfig, mlc: Any, inputs: _Inputs, model_dir: Path, eval_dir: Path, digest: str
) -> Any:
    """Upload the model dir, the evaluation and the data reports in a run, and register them as a version."""
    from mlflow.exceptions import MlflowException

    import mlflow

    m = inputs.manifest
    tags = lineage_tags(m, inputs.summary, inputs.metrics, inputs.gate, inputs.evaluation, digest)
    uri = tracking_uri(config.registry.tracking_uri)
    try:
        with mlflow_run(uri, config.registry.experiment, run_name="register", system_metrics=False) as run:
            mlflow.set_tags({"tuneline.stage": "register", DIGEST_TAG: digest})
            log.info("register: uploading %s", model_dir)
            mlflow.log_artifacts(str(model_dir), MODEL_ARTIFACT)
            mlflow.log_artifacts(str(eval_dir), "evaluation")
            for report in _data_reports(config):
                mlflow.log_artifact(str(report), f"data_reports/{report.parent.name}")
            tags["tuneline.storage_uri"] = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
            return mlc.create_model_version(
                config.registry.model_name,
                source=f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}",
                run_id=run.info.run_id,
                tags=tags,
                description=f"{m.method} on {m.base}; gate {'passed' if inputs.gate.passed else 'failed'}",
            )
    except ConnectionError as exc:
        raise RegisterError(str(exc)) from None
    except (MlflowException, OSError) as exc:
        raise RegisterError(f"registration failed, nothing was registered: {exc}") from None


def describe_version(config: TunelineConfig, version: str | None = None, alias: str | None = None) -> VersionRecord:
    """What a registered version is, read back from the registry (not from local files)."""
    from mlflow.exceptions import MlflowException

    name = config.registry.model_name
    mlc = client(config.registry.tracking_uri)
    try:
        if alias:
            mv = version_by_alias(config.registry.tracking_uri, name, alias)
            if mv is None:
                raise RegistryError(f"{name!r} has no version with alias @{alias}")
        elif version:
            mv = mlc.get_model_version(name, version)
        else:
            versions = mlc.search_model_versions(f"name = '{name}'")
            if not versions:
                raise RegistryError(
                    f"no registered versions of {name!r} at "
                    f"{redact_url(tracking_uri(config.registry.tracking_uri))}; run `tuneline register`"
                )
            mv = max(versions, key=lambda v: int(v.version))
        aliases = sorted(mlc.get_model_version(name, mv.version).aliases)
    except MlflowException as exc:
        raise RegistryError(f"{name!r}: {exc.message}") from None
    tags = dict(mv.tags)
    return VersionRecord(
        model_name=name,
        version=str(mv.version),
        aliases=aliases,
        gate_recorded="gate.passed" in tags,
        gate_passed=tags.get("gate.passed") == "true",
        gate_reasons=[r for r in tags.get("gate.reasons", "").split("; ") if r and r != "none"],
        storage_uri=redact_url(tags.get("tuneline.storage_uri") or mv.source),
        source=redact_url(mv.source),
        run_id=mv.run_id,
        input_digest=tags.get(DIGEST_TAG),
        base_model=tags.get("base_model"),
        metrics={
            k.removeprefix("eval."): _number(v)
            for k, v in sorted(tags.items())
            if k.startswith("eval.") and k not in ("eval.baseline", "eval.judge")
        },
        tracking_uri=redact_url(tracking_uri(config.registry.tracking_uri)),
        ui_hint=_ui_hint(config, name, str(mv.version)),
    )


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value
