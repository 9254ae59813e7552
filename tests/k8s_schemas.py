"""Validate custom resources offline against the published CRDs pinned in contracts/manifest.json.

A CRD's ``openAPIV3Schema`` is (nearly) JSON Schema. The API server prunes unknown fields silently, which
would hide a misspelt key, so validation here is stricter: objects that declare ``properties`` and do not
preserve unknown fields get ``additionalProperties: false``. ``int-or-string`` fields accept either.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests import contracts


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def crd_validator(relpath: str, version: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(contracts.require(relpath).read_text())
    [spec] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(copy.deepcopy(spec["schema"]["openAPIV3Schema"]))
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", {"type": "object"})
    return jsonschema.Draft7Validator(schema)


def crd_errors(relpath: str, version: str, obj: dict[str, Any]) -> list[str]:
    """Strict-validation errors of ``obj``; skips the calling test when the CRD is absent (see tests/contracts.py)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(relpath, version).iter_errors(obj)
    ]


class CustomObjectsStandIn:
    """The four ``CustomObjectsApi`` calls a step makes, answered as the API server does for one custom resource:
    a body invalid against the published CRD is refused with 422, a second create of one name with 409, an
    unknown name with 404. Subclasses are the controller: ``_run`` gives a created object's final status, which
    the first read after the create sees (``run_jobs=False``: objects stay without a status)."""

    #: (group, version, plural) served, and the CRD (relative path, version) bodies are validated against
    GVR: tuple[str, str, str]
    CRD: tuple[str, str]

    def __init__(self, workdir: Path, run_jobs: bool = True) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.workdir, self.run_jobs = workdir, run_jobs
        self.calls: list[tuple[str, str]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        from kubernetes.client.exceptions import ApiException

        self.calls.append(("create", body["metadata"]["name"]))
        assert (group, version, plural) == self.GVR
        errors = crd_errors(*self.CRD, body)
        if errors:
            raise ApiException(status=422, reason="Unprocessable Entity", http_resp=None) from AssertionError(errors)
        key = (namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(status=409, reason="Conflict")
        self.objects[key] = copy.deepcopy(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.exceptions import ApiException

        self.calls.append(("get", name))
        obj = self.objects.get((namespace, name))
        if obj is None:
            raise ApiException(status=404, reason="Not Found")
        if self.run_jobs and "status" not in obj:
            obj["status"] = self._run(obj)
        return copy.deepcopy(obj)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        from kubernetes.client.exceptions import ApiException

        self.calls.append(("delete", name))
        if self.objects.pop((namespace, name), None) is None:
            raise ApiException(status=404, reason="Not Found")

    def _run(self, obj: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError
