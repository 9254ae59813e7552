"""The Kubeflow Pipelines (v2) face of tuneline: components, the pipeline, compile, submit, local runs.

Components are thin shells (:mod:`tuneline.pipeline.steps`) over the same ``run_<stage>`` functions that the
CLI and ``dvc.yaml`` call; nothing here re-implements a stage.
"""
