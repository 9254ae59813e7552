"""A source's own field names and role tags → the ones the format readers know.

What LLaMA-Factory's ``dataset_info.json`` (``columns``, ``tags``) and axolotl's ``field_messages`` /
``message_property_mappings`` / ``roles`` do, declared on a source in ``params.yaml``::

    sources:
      - uri: data/raw/support.jsonl
        columns: {messages: conversation, chosen: better, rejected: worse}
        role_key: speaker
        content_key: text
        roles: {agent: assistant, customer: user}

:func:`from_dataset_info` reads a LLaMA-Factory ``dataset_info.json`` into the same mapping, so a
LLaMA-Factory data directory ingests as LLaMA-Factory would read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MESSAGE_FIELDS = ("messages", "conversations", "prompt", "chosen", "rejected", "completion")


@dataclass(frozen=True)
class FieldMap:
    """``columns``: reader field → the source's field; ``roles``: the source's role tag → a role
    (``tool_call``: an assistant turn whose content is a tool call)."""

    columns: dict[str, str] = field(default_factory=dict)
    role_key: str | None = None
    content_key: str | None = None
    roles: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.columns or self.role_key or self.content_key or self.roles)


def _message(m: Any, fm: FieldMap) -> Any:
    if not isinstance(m, dict):
        return m
    out = dict(m)
    for ours, theirs in (("role", fm.role_key), ("content", fm.content_key)):
        if theirs and theirs in out:
            out[ours] = out.pop(theirs)
    if fm.roles and isinstance(out.get("role"), str) and out["role"] in fm.roles:
        out["role"] = fm.roles[out["role"]]
    return out


def apply_map(obj: dict[str, Any], fm: FieldMap) -> dict[str, Any]:
    """Rename the record's fields and its messages' keys and role tags; other fields pass unchanged."""
    if not fm:
        return obj
    theirs_to_ours = {theirs: ours for ours, theirs in fm.columns.items()}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        ours = theirs_to_ours.get(key, key)
        if ours != key and ours in obj and ours not in theirs_to_ours:
            ours = key  # the record also has a field of the target name: keep both as they are
        out[ours] = value
    for name in MESSAGE_FIELDS:
        value = out.get(name)
        if isinstance(value, list):
            out[name] = [_message(m, fm) for m in value]
        elif isinstance(value, dict):
            out[name] = _message(value, fm)
    return out


# LLaMA-Factory's column names → the readers'
_LF_COLUMNS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "history": "history",
    "messages": "messages",
    "system": "system",
    "tools": "tools",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "label",
}
_LF_TAGS = {
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "tool_call",
    "system_tag": "system",
}


@dataclass(frozen=True)
class DatasetEntry:
    """One entry of a LLaMA-Factory ``dataset_info.json`` that names a local file."""

    name: str
    file_name: str
    format: str
    field_map: FieldMap


def from_dataset_info(info: dict[str, Any]) -> tuple[list[DatasetEntry], list[tuple[str, str]]]:
    """Entries with a local ``file_name`` → (entries, [(name, why it is skipped)] for the others)."""
    entries, skipped = [], []
    for name, spec in info.items():
        why = _skip_reason(spec)
        if why:
            skipped.append((name, why))
            continue
        columns = _columns(spec)
        tags = spec.get("tags") or {}
        roles = {tags[k]: role for k, role in _LF_TAGS.items() if isinstance(tags.get(k), str)}
        fmt = "preference" if spec.get("ranking") else "kto" if "label" in columns else "auto"
        fm = FieldMap(
            columns={k: v for k, v in columns.items() if k != v},
            role_key=tags.get("role_tag") if isinstance(tags.get("role_tag"), str) else None,
            content_key=tags.get("content_tag") if isinstance(tags.get("content_tag"), str) else None,
            roles=roles,
        )
        entries.append(DatasetEntry(name, spec["file_name"], fmt, fm))
    return entries, skipped


def _skip_reason(spec: Any) -> str | None:
    """Why an entry is not read (not an object, a hub dataset, a pretraining corpus), or None."""
    if not isinstance(spec, dict):
        return "not an object"
    if not isinstance(spec.get("file_name"), str):
        hub = spec.get("hf_hub_url") or spec.get("ms_hub_url") or spec.get("om_hub_url") or spec.get("script_url")
        return f"a hub dataset ({hub}): download it and add it as a source" if hub else "no file_name"
    given = spec.get("columns") or {}
    corpus = "prompt" in given and not {"response", "chosen", "kto_tag"} & set(given)
    if spec.get("formatting", "alpaca") != "sharegpt" and corpus:
        return "a pretraining corpus (a text column, no responses); tuneline fine-tunes on chats"
    return None


def _columns(spec: dict[str, Any]) -> dict[str, str]:
    """tuneline's field → the entry's column, with LLaMA-Factory's defaults where the entry names none."""
    sharegpt = spec.get("formatting", "alpaca") == "sharegpt"
    columns: dict[str, str] = {}
    for lf, theirs in (spec.get("columns") or {}).items():
        ours = _LF_COLUMNS.get(lf)
        if ours == "messages" and sharegpt:
            ours = "messages" if theirs == "messages" else "conversations"
        if ours and isinstance(theirs, str):
            columns[ours] = theirs
    if not sharegpt:
        # LLaMA-Factory's alpaca defaults name these columns even when the entry does not
        for ours, theirs in (("instruction", "instruction"), ("input", "input"), ("output", "output")):
            columns.setdefault(ours, theirs)
    elif "conversations" not in columns and "messages" not in columns:
        columns["conversations"] = "conversations"
    return columns
