# Workload Identity: each Kubernetes service account acts as its own Google service account; no keys.
locals {
  workload_service_accounts = {
    pipeline = { namespace = "kubeflow", name = "pipeline-runner" }
    serving  = { namespace = "tuneline", name = "tuneline-serving" }
    mlflow   = { namespace = "mlflow", name = "mlflow" }
  }
}

module "workload_identity" {
  source   = "terraform-google-modules/kubernetes-engine/google//modules/workload-identity"
  version  = "36.3.0"
  for_each = local.workload_service_accounts

  project_id          = var.project_id
  name                = "${var.cluster_name}-${each.key}"
  namespace           = each.value.namespace
  k8s_sa_name         = each.value.name
  use_existing_k8s_sa = true
  annotate_k8s_sa     = false
}

# The serving identity is shared by every environment's namespace (serve.environments in params.yaml).
resource "google_service_account_iam_member" "serving_environments" {
  for_each           = toset([for ns in var.serving_namespaces : ns if ns != local.workload_service_accounts.serving.namespace])
  service_account_id = "projects/${var.project_id}/serviceAccounts/${module.workload_identity["serving"].gcp_service_account_email}"
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${each.value}/${local.workload_service_accounts.serving.name}]"
}

resource "google_storage_bucket_iam_member" "artifacts" {
  for_each = module.workload_identity
  bucket   = google_storage_bucket.artifacts.name
  role     = "roles/storage.objectUser"
  member   = "serviceAccount:${each.value.gcp_service_account_email}"
}
