variable "project_id" {
  description = "GCP project."
  type        = string
}

variable "region" {
  description = "GCP region (the cluster is regional; GPU pools use the zones below)."
  type        = string
  default     = "us-central1"
}

variable "gpu_zones" {
  description = "Zones the GPU pools may use: pick ones that offer your accelerators."
  type        = list(string)
  default     = ["us-central1-a", "us-central1-c"]
}

variable "cluster_name" {
  description = "GKE cluster name; also the prefix of its service accounts and the bucket."
  type        = string
  default     = "tuneline"
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"
}

variable "system_pool" {
  description = "The always-on CPU pool for controllers, the KFP backend, MLflow and the data/eval steps."
  type = object({
    machine_type = string
    min_nodes    = number
    max_nodes    = number
  })
  default = {
    machine_type = "e2-standard-4"
    min_nodes    = 1
    max_nodes    = 4
  }
}

# Written by `tuneline infra export` from params.yaml (plan.gpus + infra.gpu_pools) into
# gpu_pools.auto.tfvars.json: do not edit the JSON, edit params.yaml.
variable "gpu_pools" {
  description = "GPU node pools by name (gpu-<gpu>): machine and accelerator, scale bounds, spot, labels and the GPU taint."
  type = map(object({
    machine_type     = string
    accelerator_type = string
    gpus_per_node    = number
    min_nodes        = number
    max_nodes        = number
    spot             = bool
    disk_gib         = number
    labels           = map(string)
    taint            = object({ key = string, value = string, effect = string })
  }))
  validation {
    condition     = alltrue([for p in values(var.gpu_pools) : p.min_nodes == 0 && p.max_nodes >= 1])
    error_message = "GPU pools scale from zero: min_nodes must be 0 and max_nodes at least 1."
  }
  validation {
    condition     = alltrue([for p in values(var.gpu_pools) : p.taint.key == "nvidia.com/gpu" && p.taint.effect == "NO_SCHEDULE"])
    error_message = "GPU pools carry the nvidia.com/gpu NoSchedule taint, or CPU pods would pin GPU nodes awake."
  }
}

variable "gitops_repo_url" {
  description = "Git URL of this repository (Argo CD syncs deploy/argocd from it); written from serve.repo_url by tuneline infra export."
  type        = string
}

variable "labels" {
  description = "Labels on every GCP resource that takes them."
  type        = map(string)
  default = {
    project    = "tuneline"
    managed-by = "terraform"
  }
}

# Also written by `tuneline infra export`, from serve.environments: each environment's namespace gets the
# serving identity, so the chart's tuneline-serving account reads the bucket wherever it is released.
variable "serving_namespaces" {
  description = "Namespaces of the serving chart's environments; the tuneline-serving account is bound in each."
  type        = list(string)
  default     = ["tuneline"]
}
