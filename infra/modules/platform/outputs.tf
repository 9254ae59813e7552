output "chart_versions" {
  description = "The add-on versions installed."
  value       = var.chart_versions
}

output "kfp_ui" {
  description = "How to reach the Kubeflow Pipelines UI."
  value       = "kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80  # then http://localhost:8080"
}

output "mlflow_ui" {
  description = "How to reach the MLflow UI."
  value       = "kubectl -n mlflow port-forward svc/mlflow 5000:5000  # then http://localhost:5000"
}
