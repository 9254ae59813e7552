"""Validate custom resources offline against the published CRDs pinned in contracts/manifest.json.

A CRD's ``openAPIV3Schema`` is (nearly) JSON Schema. The API server prunes unknown fields silently, which
would hide a misspelt key, so validation here is stricter: objects that declare ``properties`` and do not
preserve unknown fields get ``additionalProperties: false``. ``int-or-string`` fields accept either.
"""

from __future__ import annotations

import copy
from functools import cache
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
