"""The KFP data steps on a KubeRay cluster: one ``RayJob`` (``ray.io/v1``) per step when ``data.engine`` is ``ray``.

The step stages its input and the resolved config under ``data.ray.cluster.stage_uri``/<run id>/<step>,
creates a RayJob whose head runs ``python -m tuneline.launch.remote <step> <stage URI>`` (the same stage
function, as Ray tasks, reading its input from the stage URI so every worker reaches it), follows it to the
end and fetches the output into its artifact. A retried step finds the RayJob its earlier attempt created, by
name: it follows a running or finished one and replaces a failed one, as the multi-node train step does with
its TrainJob. The manifest is a plain dict, validated in tests against the pinned KubeRay CRD.
"""

from __future__ import annotations

import logging
import shlex
from typing import Any

from tuneline.config import ConfigError, TunelineConfig
from tuneline.launch.kube import JobKind, job_name, run_staged, stage_uri

log = logging.getLogger(__name__)
#: Where spot capacity is, per cloud: the label the cloud puts on such nodes, and GKE's taint on them.
#: On every Ray pod of a tuneline RayJob: infra/'s NetworkPolicy admits Ray's ports only between such pods.
RAY_POD_LABEL = "tuneline.io/ray"
SPOT_LABEL = {"eks": ("eks.amazonaws.com/capacityType", "SPOT"), "gke": ("cloud.google.com/gke-spot", "true")}


def on_rayjob(config: TunelineConfig) -> bool:
    """A data step hands its stage to a KubeRay RayJob when ``data.engine`` is ``ray`` and no running Ray cluster
    is named to join (``data.ray.address``)."""
    return config.data.engine == "ray" and not config.data.ray.address


def ray_stage_uri(config: TunelineConfig, run_id: str, step: str) -> str:
    root = config.data.ray.cluster.stage_uri
    if not root:
        raise ConfigError(
            "data.engine=ray on Kubernetes needs data.ray.cluster.stage_uri (an s3:// or gs:// prefix the step "
            "and the Ray workers both reach), or data.ray.address to join a running Ray cluster"
        )
    return stage_uri(root, run_id, step)


def _container(name: str, image: str, cpu: int, memory: str, command: list[str] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": str(cpu), "memory": memory}, "limits": {"cpu": str(cpu), "memory": memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if command:
        c["command"] = command
    return c


def rayjob_manifest(config: TunelineConfig, run_id: str, step: str, namespace: str) -> dict[str, Any]:
    """A RayJob that runs ``step`` on a cluster sized by ``data.ray.cluster`` and is deleted when it finishes."""
    rc = config.data.ray.cluster
    image = config.images.cpu
    labels = {
        "app.kubernetes.io/part-of": "tuneline",
        RAY_POD_LABEL: "true",
        "tuneline.io/run-id": run_id[:63],
        "tuneline.io/step": step,
    }
    # Ray's own account: the pipeline's cloud identity to the bucket (workload identity), no Kubernetes role and no
    # API token, so code that reaches Ray cannot create jobs in the pipeline's name. infra/'s NetworkPolicy admits
    # the Ray ports only from the pods of tuneline's RayJobs (tuneline.io/ray) and the operator.
    base_pod = {
        "serviceAccountName": rc.service_account,
        "automountServiceAccountToken": False,
        "nodeSelector": dict(rc.node_selector),
    }
    worker_pod = dict(base_pod, nodeSelector=dict(rc.node_selector))
    if rc.spot:
        key, value = SPOT_LABEL[config.infra.cloud]
        worker_pod["nodeSelector"][key] = value
        worker_pod["tolerations"] = [{"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}]
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": job_name(step, run_id), "namespace": namespace, "labels": labels},
        "spec": {
            "entrypoint": shlex.join(
                ["python", "-m", "tuneline.launch.remote", step, ray_stage_uri(config, run_id, step)]
            ),
            # the submitter runs beside the head in its pod and reaches the job API over localhost: no submitter
            # pod needs a way in (KubeRay >= 1.5; the head pod must not restart)
            "submissionMode": "SidecarMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "activeDeadlineSeconds": rc.timeout_s,
            "backoffLimit": 0,  # KFP retries the step, which replaces a failed job (see launch)
            "rayClusterSpec": {
                "rayVersion": rc.ray_version,
                "headGroupSpec": {
                    # the head runs the driver only: block tasks go to the workers
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            **base_pod,
                            "restartPolicy": "Never",
                            "containers": [_container("ray-head", image, rc.head_cpu, rc.head_memory)],
                        },
                    },
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "cpu",
                        "replicas": rc.workers,
                        "minReplicas": rc.workers,
                        "maxReplicas": rc.workers,
                        "rayStartParams": {"num-cpus": str(rc.worker_cpu)},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                **worker_pod,
                                "containers": [_container("ray-worker", image, rc.worker_cpu, rc.worker_memory)],
                            },
                        },
                    }
                ],
            },
        },
    }


def rayjob_state(obj: dict[str, Any]) -> str | None:
    """'Complete' once the job succeeded, 'Failed' once it failed or was stopped, else None (still going)."""
    status = obj.get("status") or {}
    job, deployment = status.get("jobStatus"), status.get("jobDeploymentStatus")
    if job == "SUCCEEDED" and deployment in ("Complete", None):
        return "Complete"
    if job in ("FAILED", "STOPPED") or deployment in ("Failed", "ValidationFailed"):
        return "Failed"
    return None


def rayjob_message(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    return (
        status.get("message")
        or f"jobStatus={status.get('jobStatus')}, jobDeploymentStatus={status.get('jobDeploymentStatus')}"
    )


RAYJOB = JobKind(
    "ray.io", "v1", "rayjobs", "RayJob",
    install="install the KubeRay operator (infra/ does)", role="tuneline-ray-jobs",
    state=rayjob_state, message=rayjob_message,
)  # fmt: skip


def run_step_on_ray(
    config: TunelineConfig,
    step: str,
    run_id: str,
    input_dir: str | None,
    out: str,
    api: Any = None,
    namespace: str | None = None,
    poll_s: float = 15.0,
) -> str:
    """Stage, launch (or take over), follow, fetch. Returns what the launch did (created/attached/replaced)."""
    stage = ray_stage_uri(config, run_id, step)
    return run_staged(
        stage, config.model_dump_json(), input_dir, out, lambda ns: rayjob_manifest(config, run_id, step, ns),
        RAYJOB, config.data.ray.cluster.timeout_s, api, namespace, poll_s, remove=True,
    )  # fmt: skip
