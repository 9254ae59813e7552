"""Pipeline stages, one package each: ingest → clean → split (→ train → evaluate → register).

Every stage exposes one typed function ``run_<stage>(config, inputs, out) -> report`` that
the CLI, the DVC stage and the KFP component call unchanged.
"""
