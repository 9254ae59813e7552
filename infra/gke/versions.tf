terraform {
  required_version = ">= 1.6.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.30"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
    kubectl = {
      source  = "alekc/kubectl"
      version = "~> 2.1"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9"
    }
  }
  # Keep state remote for anything but a trial: uncomment and fill in (see infra/README.md).
  # backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

# The cluster's API is reached with the caller's short-lived OAuth token; nothing is stored.
data "google_client_config" "current" {}

provider "helm" {
  kubernetes {
    host                   = "https://${module.gke.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(module.gke.ca_certificate)
  }
}

provider "kubectl" {
  host                   = "https://${module.gke.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(module.gke.ca_certificate)
  load_config_file       = false
}

provider "kustomization" {
  kubeconfig_raw = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = "gke"
    clusters        = [{ name = "gke", cluster = { server = "https://${module.gke.endpoint}", certificate-authority-data = module.gke.ca_certificate } }]
    contexts        = [{ name = "gke", context = { cluster = "gke", user = "gke" } }]
    users           = [{ name = "gke", user = { token = data.google_client_config.current.access_token } }]
  })
}
