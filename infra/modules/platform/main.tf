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

# LLMInferenceService (serving.api llminferenceservice): its controller and well-known configs (vLLM, the llm-d
# scheduler), at the KServe version the chart's CRD validation is pinned to.
resource "helm_release" "kserve_llmisvc" {
  name       = "kserve-llmisvc"
  repository = "oci://ghcr.io/kserve/charts"
  chart      = "kserve-llmisvc-resources"
  version    = local.v.kserve
  namespace  = "kserve"
  wait       = true
  depends_on = [helm_release.kserve, helm_release.leader_worker_set, kustomization_resource.inference_extension_crds]
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

# The serving gateway: Envoy Gateway (Gateway API, SecurityPolicy, BackendTrafficPolicy with its global rate
# limit), Envoy AI Gateway (AIGatewayRoute: token costs, InferencePool backends), the Gateway API Inference
# Extension's CRDs (InferencePool) and LeaderWorkerSet (LLMInferenceService's multi-node workers).
resource "helm_release" "envoy_gateway" {
  name             = "eg"
  repository       = "oci://docker.io/envoyproxy"
  chart            = "gateway-helm"
  version          = local.v.envoy_gateway
  namespace        = "envoy-gateway-system"
  create_namespace = true
  wait             = true
  # the global rate limit (per-tenant quotas) needs Envoy Gateway's rate-limit service and its Redis
  values = [yamlencode({ config = { envoyGateway = {
    rateLimit     = { backend = { type = "Redis", redis = { url = "redis.envoy-gateway-system.svc.cluster.local:6379" } } }
    extensionApis = { enableBackend = true }
  } } })]
}

resource "helm_release" "envoy_ai_gateway_crds" {
  name             = "aieg-crd"
  repository       = "oci://docker.io/envoyproxy"
  chart            = "ai-gateway-crds-helm"
  version          = local.v.envoy_ai_gateway
  namespace        = "envoy-ai-gateway-system"
  create_namespace = true
}

resource "helm_release" "envoy_ai_gateway" {
  name       = "aieg"
  repository = "oci://docker.io/envoyproxy"
  chart      = "ai-gateway-helm"
  version    = local.v.envoy_ai_gateway
  namespace  = "envoy-ai-gateway-system"
  wait       = true
  depends_on = [helm_release.envoy_ai_gateway_crds, helm_release.envoy_gateway]
}

data "kustomization_build" "inference_extension_crds" {
  path = "github.com/kubernetes-sigs/gateway-api-inference-extension/config/crd?ref=${local.v.gateway_api_inference_extension}"
}

resource "kustomization_resource" "inference_extension_crds" {
  for_each = data.kustomization_build.inference_extension_crds.ids
  manifest = data.kustomization_build.inference_extension_crds.manifests[each.value]
}

resource "helm_release" "leader_worker_set" {
  name             = "lws"
  repository       = "oci://registry.k8s.io/lws/charts"
  chart            = "lws"
  version          = local.v.leader_worker_set
  namespace        = "lws-system"
  create_namespace = true
}

# The Gateway the serving chart's routes attach to (gateway.parentRef), its Envoy Service under a fixed name
# (gateway.address: http://envoy-tuneline.envoy-gateway-system.svc.cluster.local).
resource "kubectl_manifest" "gateway_proxy_config" {
  yaml_body = yamlencode({
    apiVersion = "gateway.envoyproxy.io/v1alpha1"
    kind       = "EnvoyProxy"
    metadata   = { name = "tuneline", namespace = "envoy-gateway-system" }
    spec       = { provider = { type = "Kubernetes", kubernetes = { envoyService = { name = "envoy-tuneline" } } } }
  })
  depends_on = [helm_release.envoy_gateway]
}

resource "kubectl_manifest" "gateway_class" {
  yaml_body = yamlencode({
    apiVersion = "gateway.networking.k8s.io/v1"
    kind       = "GatewayClass"
    metadata   = { name = "tuneline" }
    spec = {
      controllerName = "gateway.envoyproxy.io/gatewayclass-controller"
      parametersRef  = { group = "gateway.envoyproxy.io", kind = "EnvoyProxy", name = "tuneline", namespace = "envoy-gateway-system" }
    }
  })
  depends_on = [kubectl_manifest.gateway_proxy_config]
}

resource "kubectl_manifest" "gateway" {
  yaml_body = yamlencode({
    apiVersion = "gateway.networking.k8s.io/v1"
    kind       = "Gateway"
    metadata   = { name = "tuneline", namespace = "envoy-gateway-system" }
    spec = {
      gatewayClassName = "tuneline"
      listeners = [{
        name = "http", protocol = "HTTP", port = 80
        allowedRoutes = { namespaces = { from = "Selector", selector = { matchExpressions = [{
          key = "kubernetes.io/metadata.name", operator = "In", values = var.serving_namespaces
        }] } } }
      }]
    }
  })
  depends_on = [kubectl_manifest.gateway_class]
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

# The pipeline's own service account: every step and training pod runs as it (kubeflow.service_account in
# params.yaml). Upstream's pipeline-runner may read every Secret in the namespace; this one may read none: the
# steps reach the bucket through workload identity and get MLflow's credentials as env from the one Secret the
# pipeline mounts (kubeflow.mlflow_secret), which kubelet, not the pod, reads.
resource "kubectl_manifest" "pipeline_sa" {
  yaml_body = yamlencode({
    apiVersion = "v1"
    kind       = "ServiceAccount"
    metadata = {
      name        = "tuneline-pipeline"
      namespace   = "kubeflow"
      annotations = var.service_account_annotations["pipeline"]
    }
  })
  depends_on = [kustomization_resource.kfp]
}

# What a KFP v2 step needs from the API as its pod's identity (Argo's executor reports outputs, the driver reads the
# launcher config); no Secrets, no pods/exec.
resource "kubectl_manifest" "pipeline_role" {
  yaml_body = yamlencode({
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "Role"
    metadata   = { name = "tuneline-pipeline", namespace = "kubeflow" }
    rules = [
      { apiGroups = ["argoproj.io"], resources = ["workflowtaskresults"], verbs = ["create", "patch"] },
      { apiGroups = [""], resources = ["pods"], verbs = ["get", "watch", "patch"] },
      { apiGroups = [""], resources = ["configmaps"], verbs = ["get"] },
    ]
  })
  depends_on = [kustomization_resource.kfp]
}

resource "kubectl_manifest" "pipeline_binding" {
  yaml_body = yamlencode({
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "RoleBinding"
    metadata   = { name = "tuneline-pipeline", namespace = "kubeflow" }
    roleRef    = { apiGroup = "rbac.authorization.k8s.io", kind = "Role", name = "tuneline-pipeline" }
    subjects   = [{ kind = "ServiceAccount", name = "tuneline-pipeline", namespace = "kubeflow" }]
  })
  depends_on = [kubectl_manifest.pipeline_role, kubectl_manifest.pipeline_sa]
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

# The train step runs as tuneline-pipeline and creates, follows and (on a retry after a failure) replaces its
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
    subjects   = [{ kind = "ServiceAccount", name = "tuneline-pipeline", namespace = "kubeflow" }]
  })
  depends_on = [kubectl_manifest.train_jobs_role, kubectl_manifest.pipeline_sa]
}

# KubeRay: with data.engine = ray the ingest, clean and split steps each run as a RayJob (a head for the driver and
# data.ray.cluster.workers workers), which the operator creates, runs and deletes when the job finishes.
resource "helm_release" "kuberay_operator" {
  name             = "kuberay-operator"
  repository       = "https://ray-project.github.io/kuberay-helm/"
  chart            = "kuberay-operator"
  version          = local.v.kuberay_operator
  namespace        = "kuberay-system"
  create_namespace = true
  wait             = true
}

# The data steps run as tuneline-pipeline and create, follow and (on a retry after a failure) replace their RayJob;
# the operator, not the step, creates the RayCluster and its pods, so nothing else is granted.
resource "kubectl_manifest" "ray_jobs_role" {
  yaml_body = yamlencode({
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "Role"
    metadata   = { name = "tuneline-ray-jobs", namespace = "kubeflow" }
    rules = [
      {
        apiGroups = ["ray.io"]
        resources = ["rayjobs"]
        verbs     = ["create", "get", "delete"]
      },
    ]
  })
  depends_on = [kustomization_resource.kfp, helm_release.kuberay_operator]
}

resource "kubectl_manifest" "ray_jobs_binding" {
  yaml_body = yamlencode({
    apiVersion = "rbac.authorization.k8s.io/v1"
    kind       = "RoleBinding"
    metadata   = { name = "tuneline-ray-jobs", namespace = "kubeflow" }
    roleRef    = { apiGroup = "rbac.authorization.k8s.io", kind = "Role", name = "tuneline-ray-jobs" }
    subjects   = [{ kind = "ServiceAccount", name = "tuneline-pipeline", namespace = "kubeflow" }]
  })
  depends_on = [kubectl_manifest.ray_jobs_role, kubectl_manifest.pipeline_sa]
}

# The Ray head and workers run as their own account: the pipeline's cloud identity to the bucket (the IRSA role /
# Google service account trusts it too), no Kubernetes role, no mounted API token. Code that reaches a Ray job
# cannot act as the pipeline in the cluster.
resource "kubectl_manifest" "ray_sa" {
  yaml_body = yamlencode({
    apiVersion                   = "v1"
    kind                         = "ServiceAccount"
    automountServiceAccountToken = false
    metadata = {
      name        = "tuneline-ray"
      namespace   = "kubeflow"
      annotations = var.service_account_annotations["pipeline"]
    }
  })
  depends_on = [kustomization_resource.kfp]
}

# Ray's ports (GCS, the job API on 8265, raylets, object transfer) answer only the pods of tuneline's RayJobs
# (label tuneline.io/ray, set by the data steps) and the KubeRay operator, which reads job status from the head's
# dashboard. The rest of the kubeflow namespace (the KFP UI, notebooks) cannot reach a Ray job's API.
resource "kubectl_manifest" "ray_network_policy" {
  yaml_body = yamlencode({
    apiVersion = "networking.k8s.io/v1"
    kind       = "NetworkPolicy"
    metadata   = { name = "tuneline-ray", namespace = "kubeflow" }
    spec = {
      podSelector = { matchLabels = { "tuneline.io/ray" = "true" } }
      policyTypes = ["Ingress"]
      ingress = [
        { from = [{ podSelector = { matchLabels = { "tuneline.io/ray" = "true" } } }] },
        {
          from  = [{ namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "kuberay-system" } } }]
          ports = [{ protocol = "TCP", port = 8265 }]
        },
      ]
    }
  })
  depends_on = [kustomization_resource.kfp]
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
