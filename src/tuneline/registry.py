"""The MLflow model registry as tuneline uses it: versions, aliases, and downloads of a version.

Aliases: ``candidate`` (set by registration when the gate passes), ``champion`` (moved by
promotion only), and one per environment. A registered version's artifacts are a complete
tuneline model dir (``tuneline_model.json`` + adapter + bundled base when built-in).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tuneline.errors import TunelineError
from tuneline.redact import redact_url
from tuneline.tracking import tracking_uri, use_tracking_uri

log = logging.getLogger("tuneline")

CANDIDATE = "candidate"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"


class RegistryError(TunelineError, RuntimeError):
    """The registry is unreachable or does not hold what was asked for."""


def client(configured_uri: str) -> Any:
    from mlflow import MlflowClient

    uri = tracking_uri(configured_uri)
    use_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def version_by_alias(configured_uri: str, name: str, alias: str) -> Any | None:
    """The version carrying ``alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client(configured_uri).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise RegistryError(
            f"cannot read alias {alias!r} of {name!r} from {redact_url(tracking_uri(configured_uri))}: {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - connection errors surface as many types
        raise RegistryError(
            f"cannot reach the MLflow registry at {redact_url(tracking_uri(configured_uri))}: {exc}"
        ) from None


def download_version(configured_uri: str, name: str, version: Any, dest: str | Path) -> Path:
    """Artifacts of a registered version into ``dest``; returns the model dir inside it."""
    import mlflow

    client(configured_uri)
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dest))
    return Path(path)
