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

  # What the data steps stage for their RayJobs (data.ray.cluster.stage_uri = the stage_uri output): pre-clean
  # data, PII included. The step removes it once it has the output; these expire what a failed run left, and
  # every old version of it, so none of it outlives a week.
  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["staging/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
      matches_prefix             = ["staging/"]
    }
    action {
      type = "Delete"
    }
  }
}
