"""One KFP v2 component per stage, each a one-call shell over :mod:`tuneline.pipeline.steps`.

KFP ships a component's function *source* to the pod and runs it in the component's image, so each body
imports what it needs; the image already holds tuneline (no ``packages_to_install``: nothing is fetched at
run time). :func:`build` binds the functions to the images named in ``params.yaml`` (``images``).
"""

from dataclasses import dataclass
from typing import Any

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from tuneline.config import TunelineConfig
from tuneline.pipeline.parameters import resolve_config_component

#: One input per run parameter that overrides a config key (generated from tuneline.pipeline.parameters).
resolve_config = resolve_config_component()


def generate(
    config: str, generated: Output[Dataset], summary: Output[Markdown], run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER
) -> None:
    from tuneline.pipeline import steps

    steps.generate(config, generated.path, summary.path, run_id)


def ingest(
    config: str,
    ingested: Output[Dataset],
    summary: Output[Markdown],
    generated: Input[Dataset] = None,  # type: ignore[assignment]  # KFP's optional artifact input
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
) -> None:
    from tuneline.pipeline import steps

    steps.ingest(config, ingested.path, summary.path, run_id, generated.path if generated else "")


def clean(
    config: str,
    ingested: Input[Dataset],
    cleaned: Output[Dataset],
    summary: Output[Markdown],
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
) -> None:
    from tuneline.pipeline import steps

    steps.clean(config, ingested.path, cleaned.path, summary.path, run_id)


def split(
    config: str,
    cleaned: Input[Dataset],
    split: Output[Dataset],
    summary: Output[Markdown],
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
) -> None:
    from tuneline.pipeline import steps

    steps.split(config, cleaned.path, split.path, summary.path, run_id)


def train(
    config: str,
    split: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
) -> None:
    import os
    import tempfile

    from tuneline.pipeline import steps

    checkpoints = os.path.join(tempfile.gettempdir(), "tuneline-checkpoints", run_id or "local")
    for name, value in steps.train(config, split.path, model.path, checkpoints, run_id).items():
        metrics.log_metric(name, value)


def evaluate(
    config: str,
    model: Input[Model],
    split: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    summary: Output[Markdown],
) -> None:
    from tuneline.pipeline import steps

    for name, value in steps.evaluate(
        config, model.path, split.path, evaluation.path, report.path, summary.path
    ).items():
        metrics.log_metric(name, value)


def register(
    config: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    split: Input[Dataset],
    registration: Output[Artifact],
    summary: Output[Markdown],
) -> None:
    from tuneline.pipeline import steps

    steps.register(config, model.path, evaluation.path, split.path, registration.path, summary.path)


@dataclass(frozen=True)
class Components:
    resolve_config: Any
    generate: Any
    ingest: Any
    clean: Any
    split: Any
    train: Any
    evaluate: Any
    register: Any


def build(config: TunelineConfig) -> Components:
    """The components bound to the configured images (train, and generate with generate.gpu, to the CUDA one)."""

    def bind(func: Any, image: str) -> Any:
        return dsl.component(func, base_image=image, install_kfp_package=False)

    cpu, gpu = config.images.cpu, config.images.gpu
    return Components(
        resolve_config=bind(resolve_config, cpu),
        generate=bind(generate, gpu if config.generate.gpu else cpu),
        ingest=bind(ingest, cpu),
        clean=bind(clean, cpu),
        split=bind(split, cpu),
        train=bind(train, gpu),
        evaluate=bind(evaluate, cpu),
        register=bind(register, cpu),
    )
