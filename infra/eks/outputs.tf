output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "kubeconfig_command" {
  description = "Point kubectl at the cluster."
  value       = "aws eks update-kubeconfig --name ${module.eks.cluster_name} --region ${var.region}"
}

output "artifact_bucket" {
  description = "Bucket for MLflow artifacts, the DVC remote and pipeline outputs."
  value       = aws_s3_bucket.artifacts.bucket
}

output "mlflow_artifacts_uri" {
  description = "MLflow --artifacts-destination."
  value       = "s3://${aws_s3_bucket.artifacts.bucket}/mlflow"
}

output "dvc_remote_url" {
  description = "dvc remote add -d storage <this>"
  value       = "s3://${aws_s3_bucket.artifacts.bucket}/dvc"
}

output "stage_uri" {
  description = "data.ray.cluster.stage_uri: where the data steps stage their RayJobs' data (expired after 7 days)"
  value       = "s3://${aws_s3_bucket.artifacts.bucket}/staging/ray"
}

output "gpu_pools" {
  description = "Each GPU node group's labels and taint (what the training step and the serving chart target)."
  value       = { for name, p in var.gpu_pools : name => { instance_type = p.instance_type, labels = p.labels, taint = p.taint } }
}

output "service_account_annotations" {
  description = "Annotations that bind the pipeline and mlflow service accounts to their IAM roles."
  value       = { for sa, role in module.workload_irsa : sa => { "eks.amazonaws.com/role-arn" = role.iam_role_arn } }
}

output "serving_service_account_annotations" {
  description = "Per environment namespace: the serving chart's serviceAccount.annotations (its read-only role)."
  value       = { for ns, role in module.serving_irsa : ns => { "eks.amazonaws.com/role-arn" = role.iam_role_arn } }
}
