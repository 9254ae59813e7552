"""Running a stage somewhere other than this process: under torchrun, or as a Kubernetes job.

``training`` re-launches training under torchrun (several GPUs) or as a Kubeflow TrainJob/PyTorchJob (several
nodes); ``rayjob`` runs a data stage as a KubeRay RayJob; both go through the one job client in ``kube``, and
every job runs the one entrypoint in ``remote``, which finds its stage in the table of ``stages``.
``dispatch.run_data_stage`` is the call a KFP step makes: here, or as a job, with the same typed report back.
This package sits above the stages it launches and below the KFP steps and the CLI that call it.
"""
