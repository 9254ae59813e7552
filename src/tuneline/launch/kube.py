"""One client for the Kubernetes jobs tuneline launches (TrainJob, PyTorchJob, RayJob): create or take over,
follow to the end, with errors that say what to install or grant.

A KFP step that hands its work to a job can itself be retried (its pod preempted). So a job is named after the
step and the run (:func:`job_name`): a retry finds the job its previous attempt created and follows it when it
is running or done, or replaces it when it failed. ``api`` is a ``kubernetes.client.CustomObjectsApi`` (or a
stand-in with the same methods, as in the tests); manifests are plain dicts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.errors import TunelineError

log = logging.getLogger(__name__)
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class LaunchError(TunelineError, RuntimeError):
    """A job failed, timed out or could not be created."""


def conditions_state(obj: dict[str, Any]) -> str | None:
    """'Complete' or 'Failed' once a TrainJob/PyTorchJob has finished (their conditions agree on these), else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Succeeded"):
            return "Complete"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "Failed"
    return None


def conditions_message(obj: dict[str, Any]) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c.get("message", "") for c in conditions if c.get("type") == "Failed"), "")


@dataclass(frozen=True)
class JobKind:
    """A custom resource tuneline creates: where its API is, how to read its end state, what to do when refused."""

    group: str
    version: str
    plural: str
    kind: str
    install: str  # what the cluster needs when it has no such API (404)
    role: str  # the Role infra/ binds the pipeline's service account to, to create these (403)
    state: Callable[[dict[str, Any]], str | None] = conditions_state
    message: Callable[[dict[str, Any]], str] = conditions_message

    def refusal(self, exc: Any, namespace: str) -> str:
        """The user's next step for an ``ApiException`` from creating one."""
        if exc.status == 404:
            return f"the cluster has no {self.kind} API: {self.install}"
        if exc.status == 403:
            return (
                f"the step's service account may not create {self.plural} in namespace {namespace}; grant it "
                f"(infra/ binds tuneline-pipeline to the {self.role} Role)"
            )
        return f"the Kubernetes API refused the {self.kind} ({exc.status} {exc.reason}): {exc.body or ''}".strip()


def job_name(step: str, run_id: str) -> str:
    """One name per step and run, so a retried step finds the job its earlier attempt created."""
    return f"tuneline-{step}-{run_id[:8].lower() or 'local'}"


def stage_uri(root: str, run_id: str, step: str) -> str:
    """Where a step stages the config and input its job reads, and where the job leaves its output."""
    return f"{root.rstrip('/')}/{run_id or 'local'}/{step}"


def in_cluster(api: Any = None, namespace: str | None = None) -> tuple[Any, str]:
    """``api`` and ``namespace``, defaulting to a ``CustomObjectsApi`` of the pod's service account and its
    namespace (what a KFP step that launches a job runs with)."""
    if api is None:
        from kubernetes import client
        from kubernetes import config as kube_config

        kube_config.load_incluster_config()
        api = client.CustomObjectsApi()
    return api, namespace or NAMESPACE_FILE.read_text().strip()


def launch(
    api: Any, kind: JobKind, namespace: str, body: dict[str, Any], poll_s: float = 5.0, timeout_s: float = 600.0
) -> str:
    """Create the job, or take over the one a previous attempt of this step created (same name).

    Returns ``created``, ``attached`` (it is running or done: follow it) or ``replaced`` (it had failed: it was
    deleted and created afresh).
    """
    try:
        _create(api, kind, namespace, body)
        return "created"
    except _Exists:
        pass
    name = body["metadata"]["name"]
    existing = api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
    if kind.state(existing) != "Failed":
        log.info("%s %s/%s exists (an earlier attempt of this step): following it", kind.kind, namespace, name)
        return "attached"
    log.warning("%s %s/%s failed in an earlier attempt: replacing it", kind.kind, namespace, name)
    _delete(api, kind, namespace, name, poll_s, timeout_s)
    try:
        _create(api, kind, namespace, body)
    except _Exists:
        raise LaunchError(f"{kind.kind} {name} was re-created by someone else while it was replaced") from None
    return "replaced"


class _Exists(Exception):
    pass


def _create(api: Any, kind: JobKind, namespace: str, body: dict[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, body)
    except ApiException as exc:
        if exc.status == 409:
            raise _Exists from None
        raise LaunchError(kind.refusal(exc, namespace)) from None


def _delete(api: Any, kind: JobKind, namespace: str, name: str, poll_s: float, timeout_s: float) -> None:
    """Delete a job and wait until it is gone (its pods with it)."""
    from kubernetes.client.exceptions import ApiException

    gvp = (kind.group, kind.version, namespace, kind.plural)
    api.delete_namespaced_custom_object(*gvp, name, propagation_policy="Foreground")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            api.get_namespaced_custom_object(*gvp, name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if time.monotonic() > deadline:
            raise LaunchError(f"{kind.kind} {name} was not deleted within {timeout_s:.0f}s")
        time.sleep(poll_s)


def follow(
    api: Any, kind: JobKind, namespace: str, name: str, timeout_s: float, poll_s: float = 15.0
) -> dict[str, Any]:
    """Poll a job until it finishes; returns it when complete, raises with its own failure message otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, name)
        done = kind.state(obj)
        if done == "Complete":
            return obj
        if done == "Failed":
            raise LaunchError(f"{kind.kind} {name} failed: {kind.message(obj)}")
        if time.monotonic() > deadline:
            raise LaunchError(f"{kind.kind} {name} did not finish within {timeout_s:.0f}s")
        time.sleep(poll_s)


def run_job(
    body: dict[str, Any], kind: JobKind, timeout_s: float, api: Any = None, namespace: str | None = None,
    poll_s: float = 15.0,
) -> str:  # fmt: skip
    """Launch (or take over) and follow one job to its end; returns what :func:`launch` did.

    ``body`` is built for ``namespace``; both ``api`` and ``namespace`` default to the pod's own (see
    :func:`in_cluster`), so callers resolve them first with that function when the manifest needs the namespace.
    """
    api, namespace = in_cluster(api, namespace)
    name = body["metadata"]["name"]
    how = launch(api, kind, namespace, body, poll_s=poll_s)
    log.info("%s %s %s/%s; following it", how, kind.kind, namespace, name)
    follow(api, kind, namespace, name, timeout_s, poll_s)
    return how


def run_staged(
    stage: str, config_json: str, input_dir: str | None, out: str, manifest: Callable[[str], dict[str, Any]],
    kind: JobKind, timeout_s: float, api: Any = None, namespace: str | None = None, poll_s: float = 15.0,
    remove: bool = False,
) -> str:  # fmt: skip
    """The whole hand-off: stage the config (and the input, if any) under ``stage``, run the job that
    ``manifest(namespace)`` describes to its end, fetch what it left in ``stage/output`` into ``out``.

    The job runs ``python -m tuneline.launch.remote STEP STAGE`` (see :mod:`.remote`). Returns what
    :func:`launch` did. With ``remove`` (the data steps: their input is pre-clean data), what was staged and
    fetched is removed once the output is here; a retried step that finds the job finished but its output
    already fetched and removed runs the job again.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(stage)
    if input_dir is not None:
        fs.put(str(input_dir).rstrip("/") + "/", f"{root}/input", recursive=True)
    with fs.open(f"{root}/config.json", "w") as fh:
        fh.write(config_json)
    api, namespace = in_cluster(api, namespace)
    body = manifest(namespace)
    how = run_job(body, kind, timeout_s, api, namespace, poll_s)
    if how == "attached" and not fs.exists(f"{root}/output"):
        log.warning("%s %s finished, but its output was fetched and removed before: running it again", kind.kind, stage)
        _delete(api, kind, namespace, body["metadata"]["name"], poll_s, 600.0)
        run_job(body, kind, timeout_s, api, namespace, poll_s)
        how = "replaced"
    Path(out).mkdir(parents=True, exist_ok=True)
    fs.get(f"{root}/output/", str(out).rstrip("/") + "/", recursive=True)
    if remove:
        remove_staged(fs, root, stage)
    return how


#: What :func:`run_staged` puts under a stage, and the job's output it fetches: nothing else there is touched.
STAGED = ("input", "config.json", "output")


def remove_staged(fs: Any, root: str, stage: str) -> None:
    """Remove the staged input (pre-clean data: PII), config and fetched output once the step holds the output,
    so none of it lingers in the bucket. Only what :data:`STAGED` names, under this run's stage. A failed removal
    is a warning naming the path (the step's result is safe; infra/'s lifecycle rule expires the rest)."""
    for name in STAGED:
        path = f"{root}/{name}"
        try:
            if fs.exists(path):
                fs.rm(path, recursive=True)
        except OSError as exc:
            log.warning("could not remove staged %s/%s (%s): remove it by hand", stage, name, exc)
    log.info("removed the staged data under %s", stage)
