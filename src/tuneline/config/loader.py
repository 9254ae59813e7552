"""params.yaml → :class:`TunelineConfig`, with ``--set a.b=value`` overrides.

Errors are :class:`ConfigError` whose message names every offending key path and what
is allowed there, so a typo fails before any data is touched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuneline.config.schema import TunelineConfig
from tuneline.errors import TunelineError

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(TunelineError, ValueError):
    """The configuration is invalid; the message is meant for the user as-is."""

    exit_code = 2


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the tuneline config; check the spelling)"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict | list):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "\n".join(lines)


#: No config section nests deeper than a handful of levels; far deeper input is refused before it is copied or
#: validated (both recurse, and would end in a RecursionError traceback).
MAX_DEPTH = 32


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def _yaml(text: str, what: str) -> Any:
    """``text`` parsed as YAML, or a :class:`ConfigError` naming ``what`` (bad YAML, or nested too deeply)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply to be a tuneline config (limit {MAX_DEPTH} levels)") from None
    if _too_deep(value):
        raise ConfigError(f"{what} is nested too deeply to be a tuneline config (limit {MAX_DEPTH} levels)")
    return value


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b.c=value`` overrides applied (value parsed as YAML).

    This is the syntax of ``dvc exp run -S``. Paths are created as needed; whether a
    key exists is left to validation so that typos are reported with the schema's words.
    """
    data: dict[str, Any] = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"invalid override {item!r}: expected KEY.PATH=VALUE, e.g. split.seed=7")
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"invalid override {item!r}: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
        node[parts[-1]] = _yaml(value, f"the value of override {key}") if value.strip() else ""
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TunelineConfig:
    """Load and validate the config; a missing default params.yaml means all defaults."""
    params = Path(path) if path is not None else DEFAULT_PARAMS
    raw: Any = {}
    if params.is_dir():
        raise ConfigError(f"config {params} is a directory; pass a params.yaml file")
    if params.exists():
        try:
            raw = _yaml(params.read_text(encoding="utf-8"), str(params)) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{params} is not a UTF-8 text file (byte {exc.start}): is it the right file?") from None
        except OSError as exc:
            raise ConfigError(f"config {params} cannot be read: {exc.strerror}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{params} must hold a mapping at the top level, got {type(raw).__name__}")
    elif path is not None:
        raise ConfigError(f"config file not found: {params}")
    return validate_mapping(
        apply_overrides(raw, overrides), str(params) + (" with --set overrides" if overrides else "")
    )


def validate_mapping(data: Mapping[str, Any], origin: str) -> TunelineConfig:
    """Validate an already-parsed config (e.g. the JSON a pipeline step receives); errors name the key."""
    try:
        return TunelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, origin)) from None


def json_schema() -> str:
    """JSON Schema of params.yaml, for editors (yaml-language-server) and review."""
    schema = TunelineConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tuneline params.yaml"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def with_paths(config_json: str, **paths: str) -> TunelineConfig:
    """A resolved config (JSON) with ``paths.<name>`` pointed elsewhere: a pipeline step's or a rank's own dirs."""
    data = json.loads(config_json)
    data["paths"] = {**data["paths"], **paths}
    return validate_mapping(data, "pipeline config")
