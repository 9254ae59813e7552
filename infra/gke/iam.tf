# Workload Identity: each Kubernetes service account acts as its own Google service account; no keys.
# Least privilege on the artifacts bucket (as on EKS):
#   pipeline  (kubeflow/tuneline-pipeline)  read/write the bucket
#   mlflow    (mlflow/mlflow)  read/write its artifact root (mlflow/) only, by an IAM condition
#   serving   one Google service account per environment namespace, read-only on the models (mlflow/) only
locals {
  workload_service_accounts = {
    pipeline = { namespace = "kubeflow", name = "tuneline-pipeline" }
    serving  = { namespace = "tuneline", name = "tuneline-serving" }
    mlflow   = { namespace = "mlflow", name = "mlflow" }
  }
  models_prefix = "mlflow"
  # objects under the models prefix, in the resource names IAM conditions see
  models_condition = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.artifacts.name}/objects/${local.models_prefix}/\")"
}

module "workload_identity" {
  source   = "terraform-google-modules/kubernetes-engine/google//modules/workload-identity"
  version  = "36.3.0"
  for_each = { for k, v in local.workload_service_accounts : k => v if k != "serving" }

  project_id          = var.project_id
  name                = "${var.cluster_name}-${each.key}"
  namespace           = each.value.namespace
  k8s_sa_name         = each.value.name
  use_existing_k8s_sa = true
  annotate_k8s_sa     = false
}

# One identity per serving environment (serve.environments in params.yaml), each read-only.
module "serving_identity" {
  source   = "terraform-google-modules/kubernetes-engine/google//modules/workload-identity"
  version  = "36.3.0"
  for_each = toset(var.serving_namespaces)

  project_id          = var.project_id
  name                = substr("${var.cluster_name}-serve-${each.key}", 0, 30)
  namespace           = each.key
  k8s_sa_name         = local.workload_service_accounts.serving.name
  use_existing_k8s_sa = true
  annotate_k8s_sa     = false
}

# The Ray pods of the data steps (kubeflow/tuneline-ray) act as the pipeline's Google service account: its bucket
# access, none of the pipeline's Kubernetes RBAC.
resource "google_service_account_iam_member" "ray_workload_identity" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${module.workload_identity["pipeline"].gcp_service_account_email}"
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[kubeflow/tuneline-ray]"
}

resource "google_storage_bucket_iam_member" "pipeline" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${module.workload_identity["pipeline"].gcp_service_account_email}"
}

resource "google_storage_bucket_iam_member" "mlflow" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${module.workload_identity["mlflow"].gcp_service_account_email}"
  condition {
    title      = "mlflow-artifact-root"
    expression = local.models_condition
  }
}

resource "google_storage_bucket_iam_member" "serving" {
  for_each = module.serving_identity
  bucket   = google_storage_bucket.artifacts.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${each.value.gcp_service_account_email}"
  condition {
    title      = "registered-models-read-only"
    expression = local.models_condition
  }
}
