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

resource "google_storage_bucket_iam_member" "artifacts" {
  for_each = module.workload_identity
  bucket   = google_storage_bucket.artifacts.name
  role     = "roles/storage.objectUser"
  member   = "serviceAccount:${each.value.gcp_service_account_email}"
}
