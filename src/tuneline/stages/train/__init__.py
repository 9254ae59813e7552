"""Train: QLoRA/LoRA SFT and DPO with TRL, resumable from checkpoints, tracked in MLflow."""

from tuneline.stages.train.errors import TrainError
from tuneline.stages.train.run import TrainResult, run_train

__all__ = ["TrainError", "TrainResult", "run_train"]
