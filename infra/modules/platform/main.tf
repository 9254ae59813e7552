# The add-ons tuneline needs on any cluster, in dependency order. Every chart and manifest ref is pinned
# through var.chart_versions.

locals {
  v = var.chart_versions
}

resource "helm_release" "cert_manager" {
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = local.v.cert_manager
  namespace        = "cert-manager"
  create_namespace = true
  wait             = true

  set {
    name  = "crds.enabled"
    value = "true"
  }
}

# Knative Serving is what KServe's Serverless mode runs on (request-based autoscaling, scale to zero, canary).
resource "helm_release" "knative_operator" {
  name             = "knative-operator"
  repository       = "https://knative.github.io/operator"
  chart            = "knative-operator"
  version          = local.v.knative_operator
  namespace        = "knative-operator"
  create_namespace = true
  wait             = true
}

resource "kubectl_manifest" "knative_serving" {
  yaml_body = yamlencode({
    apiVersion = "operator.knative.dev/v1beta1"
    kind       = "KnativeServing"
    metadata   = { name = "knative-serving", namespace = "knative-serving" }
    spec = {
      version = local.v.knative_serving
      ingress = { kourier = { enabled = true } }
      config = {
        network  = { "ingress-class" = "kourier.ingress.networking.knative.dev" }
        features = { "kubernetes.podspec-nodeselector" = "enabled", "kubernetes.podspec-tolerations" = "enabled" }
      }
    }
  })
  depends_on = [helm_release.knative_operator, kubectl_manifest.knative_namespace]
}

resource "kubectl_manifest" "knative_namespace" {
  yaml_body = yamlencode({ apiVersion = "v1", kind = "Namespace", metadata = { name = "knative-serving" } })
}

resource "helm_release" "kserve_crd" {
  name             = "kserve-crd"
  repository       = "oci://ghcr.io/kserve/charts"
  chart            = "kserve-crd"
  version          = local.v.kserve
  namespace        = "kserve"
  create_namespace = true
  depends_on       = [helm_release.cert_manager]
}

resource "helm_release" "kserve" {
  name       = "kserve"
  repository = "oci://ghcr.io/kserve/charts"
  chart      = "kserve"
  version    = local.v.kserve
  namespace  = "kserve"
  wait       = true

  set {
    name  = "kserve.controller.deploymentMode"
    value = var.kserve_deployment_mode
  }
  depends_on = [helm_release.kserve_crd, kubectl_manifest.knative_serving]
}

# KEDA scales RawDeployment InferenceServices on TGI's Prometheus metrics (tgi_queue_size).
resource "helm_release" "keda" {
  name             = "keda"
  repository       = "https://kedacore.github.io/charts"
  chart            = "keda"
  version          = local.v.keda
  namespace        = "keda"
  create_namespace = true
}

resource "helm_release" "kube_prometheus_stack" {
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = local.v.kube_prometheus_stack
  namespace        = "monitoring"
  create_namespace = true

  # Pick up the serving chart's ServiceMonitors in any namespace, not only this release's.
  set {
    name  = "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues"
    value = "false"
  }
}

# Kubeflow Pipelines standalone has no Helm chart upstream: its kustomize manifests at a pinned tag.
data "kustomization_build" "kfp_cluster_scoped" {
  path = "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${local.v.kubeflow_pipelines}"
}

resource "kustomization_resource" "kfp_cluster_scoped" {
  for_each = data.kustomization_build.kfp_cluster_scoped.ids
  manifest = data.kustomization_build.kfp_cluster_scoped.manifests[each.value]
}

data "kustomization_build" "kfp" {
  path = "github.com/kubeflow/pipelines/manifests/kustomize/env/${var.cloud == "gke" ? "gcp" : "aws"}?ref=${local.v.kubeflow_pipelines}"
}

resource "kustomization_resource" "kfp" {
  for_each   = data.kustomization_build.kfp.ids
  manifest   = data.kustomization_build.kfp.manifests[each.value]
  depends_on = [kustomization_resource.kfp_cluster_scoped]
}

resource "kubectl_manifest" "kfp_pipeline_runner_sa" {
  yaml_body = yamlencode({
    apiVersion = "v1"
    kind       = "ServiceAccount"
    metadata = {
      name        = "pipeline-runner"
      namespace   = "kubeflow"
      annotations = var.service_account_annotations["pipeline"]
    }
  })
  depends_on = [kustomization_resource.kfp]
}

# Kubeflow Trainer (and JobSet, which it runs on) with its default ClusterTrainingRuntimes: the train step creates a
# TrainJob on `torch-distributed` when train.num_nodes > 1.
resource "helm_release" "kubeflow_trainer" {
  name             = "kubeflow-trainer"
  repository       = "oci://ghcr.io/kubeflow/charts"
  chart            = "kubeflow-trainer"
  version          = local.v.kubeflow_trainer
  namespace        = "kubeflow-system"
  create_namespace = true
  wait             = true

  set {
    name  = "runtimes.defaultEnabled"
    value = "true"
  }
}

# The train step runs as pipeline-runner and creates, follows and (on a retry after a failure) replaces its
# TrainJob (or, with kubeflow.multi_node_api = pytorchjob, a Training Operator PyTorchJob); nothing more.
resource "kubectl_manifest" "train_jobs_role" {
  yaml_body = yamlencode({
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "Role"
    metadata   = { name = "tuneline-train-jobs", namespace = "kubeflow" }
    rules = [
      {
        apiGroups = ["trainer.kubeflow.org"]
        resources = ["trainjobs"]
        verbs     = ["create", "get", "list", "watch", "delete"]
      },
      {
        apiGroups = ["kubeflow.org"]
        resources = ["pytorchjobs"]
        verbs     = ["create", "get", "list", "watch", "delete"]
      },
    ]
  })
  depends_on = [kustomization_resource.kfp]
}

resource "kubectl_manifest" "train_jobs_binding" {
  yaml_body = yamlencode({
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "RoleBinding"
    metadata   = { name = "tuneline-train-jobs", namespace = "kubeflow" }
    roleRef    = { apiGroup = "rbac.authorization.k8s.io", kind = "Role", name = "tuneline-train-jobs" }
    subjects   = [{ kind = "ServiceAccount", name = "pipeline-runner", namespace = "kubeflow" }]
  })
  depends_on = [kubectl_manifest.train_jobs_role]
}

# The MLflow tracking server from this repository's mlflow/ overlay, with the bucket and identity filled in.
data "kustomization_overlay" "mlflow" {
  resources = ["${path.module}/../../../mlflow/${var.cloud}"]
  patches {
    target {
      kind = "ServiceAccount"
      name = "mlflow"
    }
    patch = yamlencode([for k, v in var.service_account_annotations["mlflow"] : {
      op    = "add"
      path  = "/metadata/annotations/${replace(k, "/", "~1")}"
      value = v
    }])
  }
  patches {
    target {
      kind = "ConfigMap"
      name = "mlflow"
    }
    patch = yamlencode([{ op = "replace", path = "/data/artifacts-destination", value = "${var.artifact_bucket_uri}/mlflow" }])
  }
}

resource "kustomization_resource" "mlflow" {
  for_each = data.kustomization_overlay.mlflow.ids
  manifest = data.kustomization_overlay.mlflow.manifests[each.value]
}

resource "helm_release" "argo_cd" {
  name             = "argo-cd"
  repository       = "https://argoproj.github.io/argo-helm"
  chart            = "argo-cd"
  version          = local.v.argo_cd
  namespace        = "argocd"
  create_namespace = true
  wait             = true
}

# App of apps: Argo CD syncs every environment's Application from the repository.
resource "kubectl_manifest" "gitops_root" {
  yaml_body = yamlencode({
    apiVersion = "argoproj.io/v1alpha1"
    kind       = "Application"
    metadata   = { name = "tuneline-environments", namespace = "argocd" }
    spec = {
      project = "default"
      source = {
        repoURL        = var.gitops_repo_url
        targetRevision = var.gitops_revision
        path           = var.gitops_apps_path
      }
      destination = { server = "https://kubernetes.default.svc", namespace = "argocd" }
      syncPolicy  = { automated = { prune = true, selfHeal = true } }
    }
  })
  depends_on = [helm_release.argo_cd]
}
