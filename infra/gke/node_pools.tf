# Node pools from var.gpu_pools (gpu_pools.auto.tfvars.json, written by `tuneline infra export`) and
# var.system_pool. Only variables are referenced here, so tests evaluate this file with `terraform console`.
locals {
  system_node_pool = {
    name         = "system"
    machine_type = var.system_pool.machine_type
    min_count    = var.system_pool.min_nodes
    max_count    = var.system_pool.max_nodes
    autoscaling  = true
    auto_repair  = true
    auto_upgrade = true
    disk_type    = "pd-balanced"
  }

  # GKE installs the NVIDIA driver itself (gpu_driver_version) and its autoscaler knows a pool's
  # accelerators, labels and taints with zero nodes, so no extra autoscaler or device plugin is needed.
  gpu_node_pools = [
    for name, p in var.gpu_pools : {
      name               = name
      machine_type       = p.machine_type
      accelerator_type   = p.accelerator_type
      accelerator_count  = p.gpus_per_node
      gpu_driver_version = "LATEST"
      node_locations     = join(",", var.gpu_zones)
      autoscaling        = true
      min_count          = p.min_nodes
      max_count          = p.max_nodes
      spot               = p.spot
      disk_size_gb       = p.disk_gib
      disk_type          = "pd-ssd"
      image_type         = "COS_CONTAINERD"
      auto_repair        = true
      auto_upgrade       = true
    }
  ]

  node_pools_labels = merge(
    { all = {}, system = { "tuneline.io/pool" = "system" } },
    { for name, p in var.gpu_pools : name => p.labels },
  )
  node_pools_taints = merge(
    { all = [] },
    { for name, p in var.gpu_pools : name => [p.taint] },
  )
}
