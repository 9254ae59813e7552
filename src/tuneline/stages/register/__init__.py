"""Register: the trained model as an MLflow registered model version carrying its whole lineage."""

from tuneline.stages.register.run import RegisterError, RegisterResult, describe_version, run_register

__all__ = ["RegisterError", "RegisterResult", "describe_version", "run_register"]
