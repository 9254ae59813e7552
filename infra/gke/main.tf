module "network" {
  source  = "terraform-google-modules/network/google"
  version = "10.0.0"

  project_id   = var.project_id
  network_name = var.cluster_name
  subnets = [{
    subnet_name           = "${var.cluster_name}-nodes"
    subnet_ip             = "10.50.0.0/20"
    subnet_region         = var.region
    subnet_private_access = true
    subnet_flow_logs      = true
  }]
  secondary_ranges = {
    "${var.cluster_name}-nodes" = [
      { range_name = "pods", ip_cidr_range = "10.60.0.0/14" },
      { range_name = "services", ip_cidr_range = "10.64.0.0/20" },
    ]
  }
}

module "gke" {
  source  = "terraform-google-modules/kubernetes-engine/google//modules/private-cluster"
  version = "36.3.0"

  project_id                 = var.project_id
  name                       = var.cluster_name
  region                     = var.region
  release_channel            = var.release_channel
  network                    = module.network.network_name
  subnetwork                 = module.network.subnets_names[0]
  ip_range_pods              = "pods"
  ip_range_services          = "services"
  enable_private_nodes       = true
  master_ipv4_cidr_block     = "172.16.0.0/28"
  remove_default_node_pool   = true
  horizontal_pod_autoscaling = true
  network_policy             = true
  enable_shielded_nodes      = true
  identity_namespace         = "enabled"
  gce_pd_csi_driver          = true
  deletion_protection        = true
  cluster_resource_labels    = var.labels

  node_pools        = concat([local.system_node_pool], local.gpu_node_pools)
  node_pools_labels = local.node_pools_labels
  node_pools_taints = local.node_pools_taints
}

module "platform" {
  source = "../modules/platform"

  cloud               = "gke"
  artifact_bucket_uri = "gs://${google_storage_bucket.artifacts.name}"
  gitops_repo_url     = var.gitops_repo_url
  serving_namespaces  = var.serving_namespaces
  service_account_annotations = {
    for sa, wi in module.workload_identity : sa => { "iam.gke.io/gcp-service-account" = wi.gcp_service_account_email }
  }
  depends_on = [module.gke]
}
