# Node groups from var.gpu_pools (gpu_pools.auto.tfvars.json, written by `tuneline infra export`) and
# var.system_pool. Only variables are referenced here, so tests evaluate this file with `terraform console`.
locals {
  # Cluster Autoscaler must know a node group's labels, taints and GPUs while it has zero nodes, or it never
  # scales it up: these ASG tags describe the node template.
  gpu_node_groups = {
    for name, p in var.gpu_pools : name => {
      ami_type       = "AL2023_x86_64_NVIDIA" # NVIDIA driver and container toolkit preinstalled
      instance_types = [p.instance_type]
      capacity_type  = p.spot ? "SPOT" : "ON_DEMAND"
      min_size       = p.min_nodes
      max_size       = p.max_nodes
      desired_size   = p.min_nodes
      labels         = p.labels
      taints         = { gpu = p.taint }
      block_device_mappings = {
        xvda = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size = p.disk_gib
            volume_type = "gp3"
            encrypted   = true
          }
        }
      }
      tags = merge(
        {
          "k8s.io/cluster-autoscaler/enabled"                                              = "true"
          "k8s.io/cluster-autoscaler/${var.cluster_name}"                                  = "owned"
          "k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"               = tostring(p.gpus_per_node)
          "k8s.io/cluster-autoscaler/node-template/taint/${p.taint.key}"                   = "${p.taint.value}:NoSchedule"
          "k8s.io/cluster-autoscaler/node-template/label/node.kubernetes.io/instance-type" = p.instance_type
        },
        { for k, v in p.labels : "k8s.io/cluster-autoscaler/node-template/label/${k}" => v },
      )
    }
  }

  system_node_group = {
    system = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = [var.system_pool.instance_type]
      min_size       = var.system_pool.min_nodes
      max_size       = var.system_pool.max_nodes
      desired_size   = var.system_pool.min_nodes
      labels         = { "tuneline.io/pool" = "system" }
    }
  }
}
