"""Training beyond one GPU, for ``tuneline train``, ``dvc repro`` and the KFP train step alike (:func:`launch_training`).

* ``train.num_gpus > 1`` on one node: training re-launches itself under ``torchrun`` (DDP; the HF Trainer
  picks the ranks up from the environment). A machine with fewer CUDA devices is refused; one with none runs
  the processes on the CPU with gloo (how the tests show DDP here).
* ``train.num_nodes > 1``: the pod cannot hold the job, so the step stages the split and the resolved config
  under ``train.checkpoint_uri``/<run id>, creates a Kubeflow Trainer ``TrainJob`` (or a Training Operator
  ``PyTorchJob``) through the Kubernetes API, follows it to completion, and fetches the model rank 0 wrote.
  Every node runs ``torchrun -m tuneline.stages.train.node <stage URI>``. A retried step (its pod was preempted)
  finds the job its previous attempt created, by name: it follows a running or finished one, and replaces a
  failed one, whose nodes then resume from the mirrored checkpoints.

The manifests are plain dicts built here and validated in tests against the published CRD schemas.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneline.config import ConfigError, TunelineConfig
from tuneline.errors import TunelineError
from tuneline.platform.gpu_pools import GPU_RESOURCE, scheduling
from tuneline.results import TRAIN_SUMMARY, TrainSummary

log = logging.getLogger(__name__)
MANAGER = "tuneline.io/pipeline"
TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs")


class DistributedTrainingError(TunelineError, RuntimeError):
    """The multi-node job failed, timed out or could not be created."""


def torchrun_command(config_file: str, nproc: int, split_dir: str, model: str, checkpoints: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "tuneline.stages.train.node",
        "local",
        config_file,
        split_dir,
        model,
        checkpoints,
    ]


def launch_training(
    config: TunelineConfig, split_dir: str | Path, model: str | Path, checkpoints: str | Path, run_id: str = ""
) -> TrainSummary:
    """Train on as many processes and nodes as ``train.num_gpus``/``num_nodes`` say; returns the train summary.

    One process (or already a torchrun rank) trains here; ``num_gpus > 1`` re-launches under torchrun;
    ``num_nodes > 1`` runs the multi-node job (a cluster only: it needs the Kubernetes API).
    """
    from tuneline.stages.train.run import run_train

    split_dir, model, checkpoints = str(split_dir), str(model), str(checkpoints)
    if config.train.num_nodes > 1:
        run_multi_node(config, split_dir, model, run_id)
    elif config.train.num_gpus > 1 and not os.environ.get("LOCAL_RANK"):
        run_torchrun(config, split_dir, model, checkpoints)
    else:
        summary = run_train(config, split_dir, model, checkpoints).summary
        assert summary is not None, "one process is rank 0"
        return summary
    return TrainSummary.read(Path(model) / TRAIN_SUMMARY)


def check_devices(wanted: int) -> None:
    """Refuse ``train.num_gpus`` above the CUDA devices present; with none at all the ranks run on the CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() < wanted:
        raise DistributedTrainingError(
            f"train.num_gpus={wanted}, but this machine has {torch.cuda.device_count()} CUDA device(s): "
            f"set train.num_gpus to at most {torch.cuda.device_count()}"
        )
    if not torch.cuda.is_available():
        log.warning("train.num_gpus=%d and no CUDA device: running %d CPU processes with gloo", wanted, wanted)


def run_torchrun(config: TunelineConfig, split_dir: str, model: str, checkpoints: str) -> None:
    check_devices(config.train.num_gpus)
    config_file = Path(checkpoints).parent / "train_config.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config.model_dump_json())
    cmd = torchrun_command(str(config_file), config.train.num_gpus, split_dir, model, checkpoints)
    proc = subprocess.run(cmd, check=False)  # noqa: S603 - our own interpreter and module
    if proc.returncode:
        raise DistributedTrainingError(f"torchrun exited with {proc.returncode}")


def job_name(run_id: str) -> str:
    return f"tuneline-train-{run_id[:8].lower() or 'local'}"


def stage_uri(config: TunelineConfig, run_id: str) -> str:
    if not config.train.checkpoint_uri:
        raise ConfigError("train.num_nodes > 1 needs train.checkpoint_uri (an s3:// or gs:// prefix all nodes reach)")
    return f"{config.train.checkpoint_uri.rstrip('/')}/{run_id}"


def _node_command(config: TunelineConfig, run_id: str) -> list[str]:
    return ["torchrun", "-m", "tuneline.stages.train.node", stage_uri(config, run_id)]


def _node_pod(config: TunelineConfig) -> dict[str, Any]:
    sched = scheduling(config, config.kubeflow.train_gpu)
    return {
        "nodeSelector": sched.node_selector,
        "tolerations": sched.tolerations,
        "serviceAccountName": config.kubeflow.service_account,
    }


def _resources(config: TunelineConfig) -> dict[str, Any]:
    step = config.kubeflow.train_step
    gpus = str(config.train.num_gpus)
    return {
        "requests": {"cpu": step.cpu, "memory": step.memory, GPU_RESOURCE: gpus},
        "limits": {"memory": step.memory, GPU_RESOURCE: gpus},
    }


def trainjob_manifest(config: TunelineConfig, run_id: str, namespace: str) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob on the configured torch runtime, pinned to the train GPU pool."""
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": job_name(run_id),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tuneline", "tuneline.io/run-id": run_id[:63]},
        },
        "spec": {
            "runtimeRef": {"name": config.kubeflow.training_runtime},
            "trainer": {
                "image": config.images.gpu,
                "command": _node_command(config, run_id),
                "numNodes": config.train.num_nodes,
                "numProcPerNode": config.train.num_gpus,
                "resourcesPerNode": _resources(config),
            },
            "runtimePatches": [
                {
                    "manager": MANAGER,
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {"spec": {"template": {"spec": _node_pod(config)}}},
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def pytorchjob_manifest(config: TunelineConfig, run_id: str, namespace: str) -> dict[str, Any]:
    """The same job for clusters on the Training Operator v1 (PyTorchJob: one Master, num_nodes-1 Workers)."""

    def replica(n: int) -> dict[str, Any]:
        return {
            "replicas": n,
            "restartPolicy": "OnFailure",
            "template": {
                "spec": {
                    **_node_pod(config),
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": config.images.gpu,
                            "command": _node_command(config, run_id),
                            "resources": _resources(config),
                        }
                    ],
                }
            },
        }

    specs = {"Master": replica(1)}
    if config.train.num_nodes > 1:
        specs["Worker"] = replica(config.train.num_nodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": job_name(run_id),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "tuneline", "tuneline.io/run-id": run_id[:63]},
        },
        "spec": {
            "nprocPerNode": str(config.train.num_gpus),
            "runPolicy": {"backoffLimit": config.kubeflow.retries},
            "pytorchReplicaSpecs": specs,
        },
    }


def job_state(obj: dict[str, Any]) -> str | None:
    """'Complete' or 'Failed' once a TrainJob/PyTorchJob has finished (their conditions agree on these), else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Succeeded"):
            return "Complete"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "Failed"
    return None


def _refusal(exc: Any, kind: str, plural: str, namespace: str) -> str:
    if exc.status == 404:
        return (
            f"the cluster has no {kind} API: install Kubeflow Trainer (infra/ does) or, on the Training "
            "Operator, set kubeflow.multi_node_api=pytorchjob"
        )
    if exc.status == 403:
        return (
            f"the step's service account may not create {plural} in namespace {namespace}; grant it "
            "(infra/ binds tuneline-pipeline to the tuneline-train-jobs Role)"
        )
    return f"the Kubernetes API refused the {kind} ({exc.status} {exc.reason}): {exc.body or ''}".strip()


def launch(
    api: Any,
    group: str,
    version: str,
    plural: str,
    namespace: str,
    body: dict[str, Any],
    poll_s: float = 5.0,
    timeout_s: float = 600.0,
    state: Callable[[dict[str, Any]], str | None] = job_state,
    refusal: Callable[[Any, str, str, str], str] = _refusal,
) -> str:
    """Create the job, or take over the one a previous attempt of this step created (same name).

    Returns ``created``, ``attached`` (it is running or done: follow it) or ``replaced`` (it had failed: it was
    deleted and created afresh). ``api`` is a ``kubernetes.client.CustomObjectsApi``.
    """
    from kubernetes.client.exceptions import ApiException

    kind, name = body["kind"], body["metadata"]["name"]
    try:
        api.create_namespaced_custom_object(group, version, namespace, plural, body)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise DistributedTrainingError(refusal(exc, kind, plural, namespace)) from None
    existing = api.get_namespaced_custom_object(group, version, namespace, plural, name)
    if state(existing) != "Failed":
        log.info("%s %s/%s exists (an earlier attempt of this step): following it", kind, namespace, name)
        return "attached"
    log.warning("%s %s/%s failed in an earlier attempt: replacing it", kind, namespace, name)
    api.delete_namespaced_custom_object(group, version, namespace, plural, name, propagation_policy="Foreground")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            api.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                break
            raise
        if time.monotonic() > deadline:
            raise DistributedTrainingError(f"{kind} {name} was not deleted within {timeout_s:.0f}s")
        time.sleep(poll_s)
    try:
        api.create_namespaced_custom_object(group, version, namespace, plural, body)
    except ApiException as exc:
        raise DistributedTrainingError(refusal(exc, kind, plural, namespace)) from None
    return "replaced"


def failure_message(obj: dict[str, Any]) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c.get("message", "") for c in conditions if c.get("type") == "Failed"), "")


def follow(
    api: Any,
    group: str,
    version: str,
    plural: str,
    namespace: str,
    name: str,
    timeout_s: float,
    poll_s: float = 15.0,
    state: Callable[[dict[str, Any]], str | None] = job_state,
    message: Callable[[dict[str, Any]], str] = failure_message,
) -> dict[str, Any]:
    """Poll a custom object until it finishes; ``api`` is a ``kubernetes.client.CustomObjectsApi``."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = api.get_namespaced_custom_object(group, version, namespace, plural, name)
        done = state(obj)
        if done == "Complete":
            return obj
        if done == "Failed":
            raise DistributedTrainingError(f"{plural[:-1]} {name} failed: {message(obj)}")
        if time.monotonic() > deadline:
            raise DistributedTrainingError(f"{plural[:-1]} {name} did not finish within {timeout_s:.0f}s")
        time.sleep(poll_s)


NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def in_cluster(api: Any = None, namespace: str | None = None) -> tuple[Any, str]:
    """``api`` and ``namespace``, defaulting to a ``CustomObjectsApi`` of the pod's service account and its
    namespace (what a KFP step that launches a job runs with)."""
    if api is None:
        from kubernetes import client
        from kubernetes import config as kube_config

        kube_config.load_incluster_config()
        api = client.CustomObjectsApi()
    return api, namespace or NAMESPACE_FILE.read_text().strip()


def run_multi_node(
    config: TunelineConfig,
    split_dir: str,
    model: str,
    run_id: str,
    api: Any = None,
    namespace: str | None = None,
    poll_s: float = 15.0,
) -> str:
    """Stage, launch (or take over), follow, fetch. ``api``/``namespace`` default to the pod's in-cluster
    service account and namespace. Returns what :func:`launch` did."""
    import fsspec

    base = stage_uri(config, run_id)
    fs, root = fsspec.core.url_to_fs(base)
    fs.put(str(split_dir).rstrip("/") + "/", f"{root}/split", recursive=True)
    with fs.open(f"{root}/config.json", "w") as fh:
        fh.write(config.model_dump_json())
    api, namespace = in_cluster(api, namespace)
    if config.kubeflow.multi_node_api == "trainjob":
        group, version, plural = TRAINJOB
        body = trainjob_manifest(config, run_id, namespace)
    else:
        group, version, plural = PYTORCHJOB
        body = pytorchjob_manifest(config, run_id, namespace)
    how = launch(api, group, version, plural, namespace, body, poll_s=poll_s)
    log.info("%s %s %s/%s; following it", how, body["kind"], namespace, body["metadata"]["name"])
    follow(api, group, version, plural, namespace, body["metadata"]["name"], config.kubeflow.job_timeout_s, poll_s)
    fs.get(f"{root}/model/", str(model).rstrip("/") + "/", recursive=True)
    log.info("fetched the model rank 0 wrote: %s", json.dumps(sorted(p.name for p in Path(model).iterdir())))
    return how
