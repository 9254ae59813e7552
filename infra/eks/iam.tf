# IRSA: each in-cluster service account assumes its own role with a web identity token; no static keys.
# Least privilege on the artifacts bucket:
#   pipeline  (kubeflow:tuneline-pipeline, the steps and training pods)  read/write the bucket: data, checkpoints,
#             MLflow artifacts through the tracking server or directly
#   mlflow    (mlflow:mlflow)  read/write its artifact root (mlflow/) only
#   serving   one role per environment namespace (var.serving_namespaces), read-only, the registered models'
#             artifacts (mlflow/) only: a compromised predictor can neither change a model nor read checkpoints
locals {
  workload_service_accounts = {
    pipeline = "kubeflow:tuneline-pipeline"
    serving  = "tuneline:tuneline-serving"
    mlflow   = "mlflow:mlflow"
  }
  models_prefix = "mlflow"
}

data "aws_iam_policy_document" "pipeline" {
  statement {
    sid       = "ListBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.artifacts.arn]
  }
  statement {
    sid       = "ReadWriteObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.artifacts.arn]
  }
}

data "aws_iam_policy_document" "mlflow" {
  statement {
    sid       = "ListArtifactRoot"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.models_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadWriteArtifactRoot"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.models_prefix}/*"]
  }
  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.artifacts.arn]
  }
}

data "aws_iam_policy_document" "serving" {
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.models_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${local.models_prefix}/*"]
  }
  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.artifacts.arn]
  }
}

resource "aws_iam_policy" "workload" {
  for_each = {
    pipeline = data.aws_iam_policy_document.pipeline.json
    mlflow   = data.aws_iam_policy_document.mlflow.json
    serving  = data.aws_iam_policy_document.serving.json
  }
  name   = "${var.cluster_name}-${each.key}-artifacts"
  policy = each.value
}

module "workload_irsa" {
  source   = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version  = "5.55.0"
  for_each = { for k, v in local.workload_service_accounts : k => v if k != "serving" }

  role_name        = "${var.cluster_name}-${each.key}"
  role_policy_arns = { artifacts = aws_iam_policy.workload[each.key].arn }
  oidc_providers = {
    main = {
      provider_arn = module.eks.oidc_provider_arn
      # the Ray pods of the data steps (kubeflow:tuneline-ray) share the pipeline's bucket access, not its RBAC
      namespace_service_accounts = each.key == "pipeline" ? [each.value, "kubeflow:tuneline-ray"] : [each.value]
    }
  }
}

# One read-only role per serving environment: promoting to prod never needs staging's identity, and back.
module "serving_irsa" {
  source   = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version  = "5.55.0"
  for_each = toset(var.serving_namespaces)

  role_name        = "${var.cluster_name}-serving-${each.key}"
  role_policy_arns = { artifacts = aws_iam_policy.workload["serving"].arn }
  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["${each.key}:${split(":", local.workload_service_accounts.serving)[1]}"]
    }
  }
}

module "ebs_csi_irsa" {
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "5.55.0"

  role_name             = "${var.cluster_name}-ebs-csi"
  attach_ebs_csi_policy = true
  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:ebs-csi-controller-sa"]
    }
  }
}

module "cluster_autoscaler_irsa" {
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "5.55.0"

  role_name                        = "${var.cluster_name}-cluster-autoscaler"
  attach_cluster_autoscaler_policy = true
  cluster_autoscaler_cluster_names = [var.cluster_name]
  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:cluster-autoscaler"]
    }
  }
}
