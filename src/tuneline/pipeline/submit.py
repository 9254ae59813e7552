"""Submit a compiled pipeline to a KFP v2 API server and optionally follow the run.

Uses the SDK's ``kfp.Client`` (the v2beta1 REST API: experiments, then ``POST /apis/v2beta1/runs`` with the
pipeline spec inline). Auth, in this order: a bearer token from ``kubeflow.token_env``; inside a cluster the
SDK's in-cluster service-account token; otherwise the kube config's credentials (with no ``--host`` the SDK
reaches KFP through the API server proxy).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.config import TunelineConfig
from tuneline.errors import TunelineError
from tuneline.redact import secret_from_env

FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


class SubmitError(TunelineError, RuntimeError):
    """The KFP API refused the run or could not be reached."""


@dataclass(frozen=True)
class Submitted:
    run_id: str
    url: str
    state: str | None = None


def _client(config: TunelineConfig, host: str | None, namespace: str) -> Any:
    import kfp

    token = secret_from_env(config.kubeflow.token_env)
    return kfp.Client(host=host, namespace=namespace, existing_token=token)


def submit(
    config: TunelineConfig,
    package: Path,
    arguments: dict[str, Any],
    run_name: str,
    host: str | None = None,
    namespace: str | None = None,
    experiment: str | None = None,
    wait: bool = False,
    timeout_s: float = 86400,
    poll_s: float = 10.0,
) -> Submitted:
    """Create a run of ``package``; with ``wait``, poll it until it reaches a final state."""
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    host = host or config.kubeflow.host
    namespace = namespace or config.kubeflow.namespace
    try:
        client = _client(config, host, namespace)
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=run_name,
            experiment_name=experiment or config.kubeflow.experiment,
            namespace=namespace,
            service_account=config.kubeflow.service_account,
        )
    except ApiException as exc:
        raise SubmitError(
            f"KFP API at {host or 'in-cluster'} answered {exc.status}: {exc.reason} {exc.body or ''}"
        ) from None
    except (OSError, ValueError, HTTPError) as exc:
        hint = (
            f" (a token from ${config.kubeflow.token_env} was sent: check it)"
            if os.environ.get(config.kubeflow.token_env)
            else ""
        )
        raise SubmitError(f"cannot reach the KFP API at {host or 'in-cluster'}{hint}: {exc}") from None
    url = f"{(host or '').rstrip('/')}/#/runs/details/{result.run_id}"
    if not wait:
        return Submitted(result.run_id, url)
    deadline = time.monotonic() + timeout_s
    while True:
        state = str(client.get_run(result.run_id).state)
        if state in FINAL_STATES:
            return Submitted(result.run_id, url, state)
        if time.monotonic() > deadline:
            raise SubmitError(f"run {result.run_id} still {state} after {timeout_s:.0f}s")
        time.sleep(poll_s)
