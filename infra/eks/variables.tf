variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "EKS cluster name; also the prefix of its IAM roles and the bucket."
  type        = string
  default     = "tuneline"
}

variable "kubernetes_version" {
  description = "EKS control-plane version."
  type        = string
  default     = "1.32"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC created for the cluster."
  type        = string
  default     = "10.40.0.0/16"
}

variable "system_pool" {
  description = "The always-on CPU pool for controllers, the KFP backend, MLflow and the data/eval steps."
  type = object({
    instance_type = string
    min_nodes     = number
    max_nodes     = number
  })
  default = {
    instance_type = "m6i.xlarge"
    min_nodes     = 2
    max_nodes     = 5
  }
}

# Written by `tuneline infra export` from params.yaml (plan.gpus + infra.gpu_pools) into
# gpu_pools.auto.tfvars.json: do not edit the JSON, edit params.yaml.
variable "gpu_pools" {
  description = "GPU node groups by name (gpu-<gpu>): instance type, scale bounds, spot, labels and the GPU taint."
  type = map(object({
    instance_type = string
    gpus_per_node = number
    min_nodes     = number
    max_nodes     = number
    spot          = bool
    disk_gib      = number
    labels        = map(string)
    taint         = object({ key = string, value = string, effect = string })
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

variable "chart_versions" {
  description = "EKS-only add-on versions (the shared ones live in modules/platform)."
  type        = map(string)
  default = {
    nvidia_device_plugin = "0.17.1"
    cluster_autoscaler   = "9.46.6"
  }
}

variable "tags" {
  description = "Tags on every AWS resource."
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

variable "api_allowed_cidrs" {
  description = "CIDR blocks that may reach the cluster's public API endpoint (your office, VPN and CI egress)."
  type        = list(string)

  validation {
    condition     = length(var.api_allowed_cidrs) > 0 && !contains(var.api_allowed_cidrs, "0.0.0.0/0")
    error_message = "api_allowed_cidrs: name the networks that administer the cluster; 0.0.0.0/0 opens the API to everyone."
  }
}
