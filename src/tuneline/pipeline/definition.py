"""The tuneline pipeline: resolve config → (generate) → ingest → clean → split → train (GPU pool) → evaluate → register.

``build_pipeline(config)`` bakes params.yaml into the pipeline's defaults at compile time; the knobs a user
changes per run are pipeline parameters (visible and editable in the KFP UI), anything else goes through the
``config_overrides`` JSON object, validated by the first step. Scheduling of the train step (GPU pool node
selector, toleration, accelerator count, requests, retries) and the Secrets the steps read come from the
config too, through kfp-kubernetes.
"""

from typing import Any

from kfp import dsl, kubernetes

from tuneline.config import TunelineConfig
from tuneline.gpu_pools import GPU_RESOURCE, scheduling
from tuneline.pipeline.components import build
from tuneline.pipeline.parameters import KNOBS, PARAMETERS, args_doc, pipeline_signature
from tuneline.pipeline.steps import CHECKPOINT_MOUNT

#: Env var names each Secret is expected to hold, mounted with kfp-kubernetes (never pipeline parameters).
SECRET_KEYS = {
    "hub_token": ["HF_TOKEN"],
    "mlflow": ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"],
    "object_store": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS_JSON"],
}


def _secrets(task: Any, config: TunelineConfig, which: tuple[str, ...]) -> None:
    for kind in which:
        name = getattr(config.kubeflow.secrets, kind)
        keys = [config.generate.teacher.token_env] if kind == "teacher" else SECRET_KEYS[kind]
        if name:
            kubernetes.use_secret_as_env(task, secret_name=name, secret_key_to_env={k: k for k in keys}, optional=True)


def _cpu_step(task: Any, config: TunelineConfig, secrets: tuple[str, ...] = ("object_store",)) -> Any:
    res = config.kubeflow.cpu_step
    task.set_cpu_request(res.cpu).set_memory_request(res.memory).set_memory_limit(res.memory)
    _secrets(task, config, secrets)
    return task


def _gpu_step(task: Any, config: TunelineConfig, run: dict[str, Any]) -> Any:
    """On the GPU pool (node selector, tolerations, accelerators of the run), retried with backoff, with the
    checkpoint PVC mounted where one is configured (a retried pod resumes from it)."""
    kf, step = config.kubeflow, config.kubeflow.train_step
    (
        task.set_cpu_request(step.cpu)
        .set_memory_request(step.memory)
        .set_memory_limit(step.memory)
        .set_accelerator_type(GPU_RESOURCE)
        .set_accelerator_limit(run["num_gpus"])
        .set_retry(num_retries=kf.retries, backoff_duration=kf.retry_backoff, backoff_factor=2.0)
    )
    kubernetes.add_node_selector_json(task, run["gpu_node_selector"])
    kubernetes.add_toleration_json(task, scheduling(config, kf.train_gpu).tolerations)
    if kf.checkpoint_pvc:
        kubernetes.mount_pvc(task, pvc_name=kf.checkpoint_pvc, mount_path=CHECKPOINT_MOUNT)
    _secrets(task, config, ("hub_token", "mlflow", "object_store"))
    return task


def build_pipeline(config: TunelineConfig) -> Any:
    """A ``@dsl.pipeline`` function whose parameter defaults are this config's values."""
    c = build(config)
    kf = config.kubeflow
    signature = pipeline_signature(config)

    def tuneline(*args: Any, **kwargs: Any) -> None:
        run = signature.bind(*args, **kwargs).arguments  # the run parameters, by name
        resolved = c.resolve_config(
            config=run["config"],
            config_overrides=run["config_overrides"],
            **{k: run[k] for k in KNOBS},
        ).set_display_name("resolve config")
        _cpu_step(resolved, config, ())
        cfg = resolved.outputs["Output"]

        generated = {}
        if config.generate.enabled:  # compiled in or out: KFP has no optional step without a condition's noise
            gen = c.generate(config=cfg).set_display_name("generate").set_caching_options(False)
            if config.generate.gpu:
                _gpu_step(gen, config, run)
                _secrets(gen, config, ("teacher",))
            else:
                _cpu_step(gen, config, ("hub_token", "object_store", "teacher"))
                if kf.checkpoint_pvc:  # the teacher-call cache: a retried pod pays for no call twice
                    kubernetes.mount_pvc(gen, pvc_name=kf.checkpoint_pvc, mount_path=CHECKPOINT_MOUNT)
            generated = {"generated": gen.outputs["generated"]}
        ingest = _cpu_step(c.ingest(config=cfg, **generated).set_display_name("ingest"), config)
        clean = _cpu_step(c.clean(config=cfg, ingested=ingest.outputs["ingested"]).set_display_name("clean"), config)
        split = _cpu_step(c.split(config=cfg, cleaned=clean.outputs["cleaned"]).set_display_name("split"), config)
        for task in (ingest, clean, split):
            task.set_caching_options(kf.cache_data_steps)

        train = c.train(config=cfg, split=split.outputs["split"]).set_display_name("train (GPU)")
        _gpu_step(train.set_caching_options(False), config, run)

        evaluate = c.evaluate(config=cfg, model=train.outputs["model"], split=split.outputs["split"])
        _cpu_step(
            evaluate.set_display_name("evaluate").set_caching_options(False),
            config,
            ("hub_token", "mlflow", "object_store"),
        )
        register = c.register(
            config=cfg,
            model=train.outputs["model"],
            evaluation=evaluate.outputs["evaluation"],
            split=split.outputs["split"],
        )
        _cpu_step(register.set_display_name("register").set_caching_options(False), config, ("mlflow", "object_store"))

    tuneline.__signature__ = signature  # type: ignore[attr-defined]
    description = "Conversations → QLoRA fine-tune → LLM-as-judge eval → MLflow."
    tuneline.__doc__ = f"{description}\n\n{args_doc(PARAMETERS)}"
    return dsl.pipeline(name=kf.pipeline_name, description=description)(tuneline)
