"""GPU node pools: one definition, three readers.

Terraform (``infra/*/gpu_pools.auto.tfvars.json``), the KFP training step and the serving chart must
agree on pool names, labels and the GPU taint, or a pod waits forever for a node that never comes.
They all derive from ``params.yaml`` (``plan.gpus`` for the machine shape, ``infra`` for the pools)
through the functions here; tests check that the committed tfvars are what :func:`terraform_vars` says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneline.config.schema import GpuSpec, TunelineConfig
from tuneline.io.atomic import write_text_atomic

Cloud = Literal["eks", "gke"]
CLOUDS: tuple[Cloud, ...] = ("eks", "gke")
GPU_RESOURCE = "nvidia.com/gpu"
#: Kubernetes spells taint effects in CamelCase, both clouds' APIs in UPPER_SNAKE.
_API_EFFECT = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
TFVARS_NAME = "gpu_pools.auto.tfvars.json"


class UnknownGpuError(ValueError):
    """A GPU name that has no node pool in ``infra.gpu_pools``."""


@dataclass(frozen=True)
class Scheduling:
    """What a pod spec needs to land on one GPU pool."""

    pool: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    gpus_per_node: int

    def to_dict(self) -> dict:
        return {
            "pool": self.pool,
            "nodeSelector": self.node_selector,
            "tolerations": self.tolerations,
            "gpusPerNode": self.gpus_per_node,
        }


def pool_name(gpu: str) -> str:
    return f"gpu-{gpu}"


def _gpu(config: TunelineConfig, name: str) -> GpuSpec:
    pooled = {p.gpu for p in config.infra.gpu_pools}
    if name not in pooled:
        raise UnknownGpuError(f"GPU '{name}' has no node pool; infra.gpu_pools has: {', '.join(sorted(pooled))}")
    return next(g for g in config.plan.gpus if g.name == name)


def pool_labels(config: TunelineConfig, gpu: str) -> dict[str, str]:
    """Labels tuneline sets on a pool's nodes (on top of what the cloud sets itself)."""
    prefix = config.infra.label_prefix
    return {f"{prefix}/pool": pool_name(gpu), f"{prefix}/gpu": gpu}


def node_selector(gpu: GpuSpec, cloud: Cloud) -> dict[str, str]:
    """The cloud's own node label for this accelerator: set by the kubelet (EKS) or by GKE, never by hand."""
    if cloud == "eks":
        return {"node.kubernetes.io/instance-type": gpu.eks_instance_type} if gpu.eks_instance_type else {}
    return {"cloud.google.com/gke-accelerator": gpu.gke_accelerator} if gpu.gke_accelerator else {}


def tolerations(config: TunelineConfig) -> list[dict[str, str]]:
    taint = config.infra.gpu_taint
    return [{"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}]


def scheduling(config: TunelineConfig, gpu: str, cloud: Cloud | None = None) -> Scheduling:
    """Node selector and tolerations that put a pod on the ``gpu`` pool of ``cloud`` (default ``infra.cloud``)."""
    cloud = cloud or config.infra.cloud
    spec = _gpu(config, gpu)
    per_node = spec.eks_gpus_per_node if cloud == "eks" else spec.gke_gpus_per_node
    return Scheduling(pool_name(gpu), node_selector(spec, cloud), tolerations(config), per_node)


def terraform_vars(config: TunelineConfig, cloud: Cloud) -> dict:
    """The ``gpu_pools`` variable of ``infra/<cloud>``, shaped for that root's node-pool module."""
    taint = config.infra.gpu_taint
    api_taint = {"key": taint.key, "value": taint.value, "effect": _API_EFFECT[taint.effect]}
    pools = {}
    for pool in config.infra.gpu_pools:
        spec = _gpu(config, pool.gpu)
        common = {
            "labels": pool_labels(config, pool.gpu),
            "taint": api_taint,
            "spot": pool.spot,
            "disk_gib": pool.disk_gib,
            "min_nodes": 0,
            "max_nodes": pool.max_nodes,
        }
        if cloud == "eks":
            shape = {"instance_type": spec.eks_instance_type, "gpus_per_node": spec.eks_gpus_per_node}
        else:
            shape = {
                "machine_type": spec.gke_machine_type,
                "accelerator_type": spec.gke_accelerator,
                "gpus_per_node": spec.gke_gpus_per_node,
            }
        pools[pool_name(pool.gpu)] = {**shape, **common}
    namespaces = sorted({env.namespace for env in config.serve.environments.values()})
    return {"gpu_pools": pools, "serving_namespaces": namespaces, "gitops_repo_url": config.serve.repo_url}


def render_tfvars(config: TunelineConfig, cloud: Cloud) -> str:
    return json.dumps(terraform_vars(config, cloud), indent=2, sort_keys=True) + "\n"


def export_tfvars(config: TunelineConfig, infra_dir: Path) -> list[Path]:
    """Write ``<infra_dir>/<cloud>/gpu_pools.auto.tfvars.json`` for both clouds; return the paths written."""
    written = []
    for cloud in CLOUDS:
        path = Path(infra_dir) / cloud / TFVARS_NAME
        write_text_atomic(path, render_tfvars(config, cloud))
        written.append(path)
    return written


def stale_tfvars(config: TunelineConfig, infra_dir: Path) -> list[Path]:
    """Committed tfvars files that differ from what ``params.yaml`` says (missing counts as stale)."""
    stale = []
    for cloud in CLOUDS:
        path = Path(infra_dir) / cloud / TFVARS_NAME
        if not path.exists() or path.read_text() != render_tfvars(config, cloud):
            stale.append(path)
    return stale
