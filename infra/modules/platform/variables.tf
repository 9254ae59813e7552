variable "cloud" {
  description = "eks or gke: picks the Kubeflow Pipelines overlay and the MLflow overlay from mlflow/."
  type        = string
  validation {
    condition     = contains(["eks", "gke"], var.cloud)
    error_message = "cloud must be eks or gke."
  }
}

variable "artifact_bucket_uri" {
  description = "s3://BUCKET or gs://BUCKET holding MLflow artifacts, the DVC remote and pipeline outputs."
  type        = string
}

variable "serving_namespaces" {
  description = "Namespaces of the serving chart's environments: the only ones whose routes the Gateway accepts."
  type        = list(string)
}

variable "service_account_annotations" {
  description = "Workload-identity annotations per in-cluster service account: pipeline, mlflow."
  type        = map(map(string))
}

variable "gitops_repo_url" {
  description = "Git URL of this repository; Argo CD syncs the environment apps from it."
  type        = string
}

variable "gitops_revision" {
  description = "Branch or tag Argo CD follows."
  type        = string
  default     = "main"
}

variable "gitops_apps_path" {
  description = "Folder of Argo CD Application manifests (one per environment) in the repository."
  type        = string
  default     = "deploy/argocd"
}

variable "kserve_deployment_mode" {
  description = "KServe default deployment mode: Serverless (Knative: scale to zero, canary) or RawDeployment (KEDA/HPA)."
  type        = string
  default     = "Serverless"
  validation {
    condition     = contains(["Serverless", "RawDeployment"], var.kserve_deployment_mode)
    error_message = "kserve_deployment_mode must be Serverless or RawDeployment."
  }
}

variable "chart_versions" {
  description = "Pinned versions of every add-on; change one here, plan, apply."
  type        = map(string)
  default = {
    cert_manager          = "v1.16.3"
    knative_operator      = "v1.17.1"
    knative_serving       = "1.17.0"
    kserve                = "v0.20.0"
    keda                  = "2.17.0"
    kube_prometheus_stack = "70.4.2"
    kubeflow_pipelines    = "2.5.0"
    kubeflow_trainer      = "2.3.0"
    kuberay_operator      = "1.7.0" # the RayJob CRD tests validate against (contracts/manifest.json)
    argo_cd               = "7.8.26"
    # the serving gateway and LLMInferenceService's dependencies
    envoy_gateway                   = "v1.9.0"
    envoy_ai_gateway                = "v1.1.0"
    gateway_api_inference_extension = "v1.5.0"
    leader_worker_set               = "0.7.0"
  }
}
