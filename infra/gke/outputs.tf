output "cluster_name" {
  description = "GKE cluster name."
  value       = module.gke.name
}

output "kubeconfig_command" {
  description = "Point kubectl at the cluster."
  value       = "gcloud container clusters get-credentials ${module.gke.name} --region ${var.region} --project ${var.project_id}"
}

output "artifact_bucket" {
  description = "Bucket for MLflow artifacts, the DVC remote and pipeline outputs."
  value       = google_storage_bucket.artifacts.name
}

output "mlflow_artifacts_uri" {
  description = "MLflow --artifacts-destination."
  value       = "gs://${google_storage_bucket.artifacts.name}/mlflow"
}

output "dvc_remote_url" {
  description = "dvc remote add -d storage <this>"
  value       = "gs://${google_storage_bucket.artifacts.name}/dvc"
}

output "stage_uri" {
  description = "data.ray.cluster.stage_uri: where the data steps stage their RayJobs' data (expired after 7 days)"
  value       = "gs://${google_storage_bucket.artifacts.name}/staging/ray"
}

output "gpu_pools" {
  description = "Each GPU node pool's labels and taint (what the training step and the serving chart target)."
  value       = { for name, p in var.gpu_pools : name => { accelerator_type = p.accelerator_type, labels = p.labels, taint = p.taint } }
}

output "service_account_annotations" {
  description = "Annotations that bind the pipeline and mlflow service accounts to their Google service accounts."
  value       = { for sa, wi in module.workload_identity : sa => { "iam.gke.io/gcp-service-account" = wi.gcp_service_account_email } }
}

output "serving_service_account_annotations" {
  description = "Per environment namespace: the serving chart's serviceAccount.annotations (its read-only identity)."
  value       = { for ns, wi in module.serving_identity : ns => { "iam.gke.io/gcp-service-account" = wi.gcp_service_account_email } }
}
