"""Serving the registered model: on this machine (vLLM, Open WebUI), in the cluster (chart values, GitOps
promotion), and checks against a running endpoint (smoke, adapters)."""
