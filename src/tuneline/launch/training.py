"""Training beyond one process, for ``tuneline train``, ``dvc repro`` and the KFP train step alike
(:func:`launch_training`).

* ``train.num_gpus > 1`` on one node: training re-launches itself under ``torchrun`` (DDP; the HF Trainer
  picks the ranks up from the environment). A machine with fewer CUDA devices is refused; one with none runs
  the processes on the CPU with gloo (how the tests show DDP here).
* ``train.num_nodes > 1``: the pod cannot hold the job, so the step stages the split and the resolved config
  under ``train.checkpoint_uri``/<run id>/train, creates a Kubeflow Trainer ``TrainJob`` (or a Training Operator
  ``PyTorchJob``), follows it to completion through :mod:`.kube` and fetches the model rank 0 wrote. Every node
  runs ``torchrun -m tuneline.launch.remote train <stage URI>``; a retried step takes over the job its earlier
  attempt created, whose nodes then resume from the mirrored checkpoints.

The manifests are plain dicts built here and validated in tests against the published CRD schemas.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuneline.config import ConfigError, TunelineConfig
from tuneline.gpu_pools import GPU_RESOURCE, scheduling
from tuneline.launch.kube import JobKind, LaunchError, job_name, run_staged, stage_uri
from tuneline.results import TRAIN_SUMMARY, TrainSummary

log = logging.getLogger(__name__)
MANAGER = "tuneline.io/pipeline"
TRAINJOB = JobKind(
    "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob",
    install="install Kubeflow Trainer (infra/ does) or, on the Training Operator, set kubeflow.multi_node_api=pytorchjob",
    role="tuneline-train-jobs",
)  # fmt: skip
PYTORCHJOB = JobKind(
    "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob",
    install="install the Training Operator, or set kubeflow.multi_node_api=trainjob for Kubeflow Trainer",
    role="tuneline-train-jobs",
)  # fmt: skip


def launch_training(
    config: TunelineConfig, split_dir: str | Path, model: str | Path, checkpoints: str | Path, run_id: str = ""
) -> TrainSummary:
    """Train on as many processes and nodes as ``train.num_gpus``/``num_nodes`` say; returns the train summary.

    One process (or already a torchrun rank) trains here; ``num_gpus > 1`` re-launches under torchrun;
    ``num_nodes > 1`` runs the multi-node job (a cluster only: it needs the Kubernetes API).
    """
    from tuneline.stages.train import run_train

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
        raise LaunchError(
            f"train.num_gpus={wanted}, but this machine has {torch.cuda.device_count()} CUDA device(s): "
            f"set train.num_gpus to at most {torch.cuda.device_count()}"
        )
    if not torch.cuda.is_available():
        log.warning("train.num_gpus=%d and no CUDA device: running %d CPU processes with gloo", wanted, wanted)


def torchrun_command(config_file: str, nproc: int, split_dir: str, model: str, checkpoints: str) -> list[str]:
    """Every rank runs this module (see the end of it) on the same local paths."""
    module = ["-m", "tuneline.launch.training", config_file, split_dir, model, checkpoints]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *module]


def run_torchrun(config: TunelineConfig, split_dir: str, model: str, checkpoints: str) -> None:
    check_devices(config.train.num_gpus)
    config_file = Path(checkpoints).parent / "train_config.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config.model_dump_json())
    cmd = torchrun_command(str(config_file), config.train.num_gpus, split_dir, model, checkpoints)
    proc = subprocess.run(cmd, check=False)  # noqa: S603 - our own interpreter and module
    if proc.returncode:
        raise LaunchError(f"torchrun exited with {proc.returncode}")


def train_stage_uri(config: TunelineConfig, run_id: str) -> str:
    if not config.train.checkpoint_uri:
        raise ConfigError("train.num_nodes > 1 needs train.checkpoint_uri (an s3:// or gs:// prefix all nodes reach)")
    return stage_uri(config.train.checkpoint_uri, run_id, "train")


def _node_command(config: TunelineConfig, run_id: str) -> list[str]:
    return ["torchrun", "-m", "tuneline.launch.remote", "train", train_stage_uri(config, run_id)]


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


def _metadata(run_id: str, namespace: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/part-of": "tuneline", "tuneline.io/run-id": run_id[:63]}
    return {"name": job_name("train", run_id), "namespace": namespace, "labels": labels}


def trainjob_manifest(config: TunelineConfig, run_id: str, namespace: str) -> dict[str, Any]:
    """A Kubeflow Trainer v2 TrainJob on the configured torch runtime, pinned to the train GPU pool."""
    node = {"name": "node", "template": {"spec": {"template": {"spec": _node_pod(config)}}}}
    patch = {"manager": MANAGER, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node]}}}}
    return {
        "apiVersion": f"{TRAINJOB.group}/{TRAINJOB.version}",
        "kind": TRAINJOB.kind,
        "metadata": _metadata(run_id, namespace),
        "spec": {
            "runtimeRef": {"name": config.kubeflow.training_runtime},
            "trainer": {
                "image": config.images.gpu,
                "command": _node_command(config, run_id),
                "numNodes": config.train.num_nodes,
                "numProcPerNode": config.train.num_gpus,
                "resourcesPerNode": _resources(config),
            },
            "runtimePatches": [patch],
        },
    }


def pytorchjob_manifest(config: TunelineConfig, run_id: str, namespace: str) -> dict[str, Any]:
    """The same job for clusters on the Training Operator v1 (PyTorchJob: one Master, num_nodes-1 Workers)."""
    container = {
        "name": "pytorch",
        "image": config.images.gpu,
        "command": _node_command(config, run_id),
        "resources": _resources(config),
    }

    def replica(n: int) -> dict[str, Any]:
        pod = {**_node_pod(config), "containers": [container]}
        return {"replicas": n, "restartPolicy": "OnFailure", "template": {"spec": pod}}

    specs = {"Master": replica(1)}
    if config.train.num_nodes > 1:
        specs["Worker"] = replica(config.train.num_nodes - 1)
    return {
        "apiVersion": f"{PYTORCHJOB.group}/{PYTORCHJOB.version}",
        "kind": PYTORCHJOB.kind,
        "metadata": _metadata(run_id, namespace),
        "spec": {
            "nprocPerNode": str(config.train.num_gpus),
            "runPolicy": {"backoffLimit": config.kubeflow.retries},
            "pytorchReplicaSpecs": specs,
        },
    }


def run_multi_node(
    config: TunelineConfig, split_dir: str, model: str, run_id: str, api: Any = None, namespace: str | None = None,
    poll_s: float = 15.0,
) -> str:  # fmt: skip
    """Stage, launch (or take over), follow, fetch. ``api``/``namespace`` default to the pod's in-cluster
    service account and namespace. Returns what the launch did (created/attached/replaced)."""
    manifest = trainjob_manifest if config.kubeflow.multi_node_api == "trainjob" else pytorchjob_manifest
    kind = TRAINJOB if config.kubeflow.multi_node_api == "trainjob" else PYTORCHJOB
    how = run_staged(
        train_stage_uri(config, run_id), config.model_dump_json(), split_dir, model,
        lambda ns: manifest(config, run_id, ns), kind, config.kubeflow.job_timeout_s, api, namespace, poll_s,
    )  # fmt: skip
    log.info("fetched the model rank 0 wrote: %s", ", ".join(sorted(p.name for p in Path(model).iterdir())))
    return how


def _rank_main(config_file: str, split_dir: str, model: str, checkpoints: str) -> None:
    """One rank of a one-node torchrun run: ``torchrun -m tuneline.launch.training CONFIG SPLIT MODEL CHECKPOINTS``."""
    from tuneline.config.loader import with_paths
    from tuneline.progress import setup_logging
    from tuneline.stages.train import run_train

    setup_logging()
    config = with_paths(Path(config_file).read_text(), split=split_dir, model=model, checkpoints=checkpoints)
    run_train(config, split_dir, model, checkpoints)


if __name__ == "__main__":
    _rank_main(*sys.argv[1:5])
