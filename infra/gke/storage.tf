# One bucket for MLflow artifacts (mlflow/), the DVC remote (dvc/) and pipeline outputs (pipelines/).
resource "google_storage_bucket" "artifacts" {
  name                        = "${var.project_id}-${var.cluster_name}-artifacts"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 90
    }
    action {
      type = "Delete"
    }
  }
}
