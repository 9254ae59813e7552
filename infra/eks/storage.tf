# One bucket for MLflow artifacts (mlflow/), the DVC remote (dvc/) and pipeline outputs (pipelines/).
resource "aws_s3_bucket" "artifacts" {
  bucket = "${var.cluster_name}-artifacts-${data.aws_caller_identity.current.account_id}"
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_kms_key" "artifacts" {
  description             = "${var.cluster_name} artifact bucket"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.artifacts_key.json
}

# Key administration stays with the account; the workload roles get use of the key through their own policy.
data "aws_iam_policy_document" "artifacts_key" {
  # In a key policy "*" means this key only, and the account root must keep kms:* or the key becomes unmanageable.
  #checkov:skip=CKV_AWS_111:key policy; "*" is the key itself
  #checkov:skip=CKV_AWS_356:key policy; "*" is the key itself
  #checkov:skip=CKV_AWS_109:key policy; the account must be able to manage its own key
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.artifacts.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    id     = "expire-old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
  # What the data steps stage for their RayJobs (data.ray.cluster.stage_uri = the stage_uri output): pre-clean
  # data, PII included. The step removes it once it has the output; this expires what a failed run left, and
  # every old version of it, so none of it outlives a week.
  rule {
    id     = "expire-staged-data"
    status = "Enabled"
    filter {
      prefix = "staging/"
    }
    expiration {
      days = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}
