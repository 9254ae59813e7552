"""Raw record → canonical record, with the validation of OpenAI's fine-tuning data checks.

Canonical SFT:        {"id", "messages": [{"role", "content"[, "name"]}], "source", "meta"}
Canonical preference: {"id", "prompt": [msg], "chosen": [msg], "rejected": [msg], "source", "meta"}

Every problem raises :class:`RecordError` with a stable ``code`` (counted in the report)
and a message that says what is wrong and where.
"""

from __future__ import annotations

from typing import Any

ROLES = frozenset({"system", "user", "assistant", "tool"})
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
    "function_call": "tool",
    "observation": "tool",
}
FORMATS = ("messages", "sharegpt", "alpaca", "preference")
_CONSUMED = {
    "messages": {"messages"},
    "sharegpt": {"conversations"},
    "alpaca": {"instruction", "input", "output", "system"},
    "preference": {"prompt", "chosen", "rejected"},
}


class RecordError(ValueError):
    """A record that cannot become a canonical record; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def detect_format(obj: dict[str, Any]) -> str:
    """Guess the format from the keys a record carries."""
    if "chosen" in obj and "rejected" in obj:
        return "preference"
    if "messages" in obj:
        return "messages"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    keys = ", ".join(sorted(map(str, obj))[:8]) or "none"
    raise RecordError(
        "unknown_format",
        f"cannot detect the format (keys: {keys}); expected messages, conversations, "
        "instruction/output or prompt/chosen/rejected",
    )


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
                text = part.get("text")
                if not isinstance(text, str):
                    raise RecordError("invalid_content", f"{where}: content part {i} has no text string")
                parts.append(text)
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RecordError("unsupported_content", f"{where}: content part {i} of type {kind!r} is not text")
        return "".join(parts)
    raise RecordError(
        "invalid_content", f"{where}: content must be a string or text parts, got {type(content).__name__}"
    )


def _message(
    raw: Any, where: str, role_key: str = "role", content_key: str = "content", role_map: dict[str, str] | None = None
) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise RecordError("invalid_message", f"{where} is not an object (got {type(raw).__name__})")
    if role_key not in raw or raw[role_key] is None:
        raise RecordError("missing_role", f"{where}: missing '{role_key}'")
    if content_key not in raw or raw[content_key] is None:
        raise RecordError("missing_content", f"{where}: missing '{content_key}'")
    role = raw[role_key]
    if not isinstance(role, str):
        raise RecordError("unknown_role", f"{where}: role must be a string, got {type(role).__name__}")
    mapped = role_map.get(role.strip().lower()) if role_map is not None else role
    if mapped not in ROLES:
        allowed = sorted(role_map) if role_map is not None else sorted(ROLES)
        raise RecordError("unknown_role", f"{where}: unknown role {role!r} (allowed: {', '.join(allowed)})")
    content = _content_text(raw[content_key], where)
    if not content.strip():
        raise RecordError("empty_content", f"{where}: empty content")
    msg = {"role": mapped, "content": content}
    name = raw.get("name")
    if isinstance(name, str) and name:
        msg["name"] = name
    return msg


def _messages(raw: Any, field: str, **kw: Any) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        what = "empty" if isinstance(raw, list) else f"a {type(raw).__name__}"
        raise RecordError("missing_messages", f"'{field}' must be a non-empty list of messages, got {what}")
    return [_message(m, f"{field}[{i}]", **kw) for i, m in enumerate(raw)]


def _require_final_assistant(messages: list[dict[str, str]], field: str) -> None:
    if messages[-1]["role"] != "assistant":
        raise RecordError(
            "no_final_assistant", f"'{field}' must end with an assistant turn, ends with {messages[-1]['role']!r}"
        )


def _turns(value: Any, field: str, default_role: str) -> list[dict[str, str]]:
    """Preference fields: a plain string is one turn of ``default_role``; a list is messages."""
    if isinstance(value, str):
        if not value.strip():
            raise RecordError("empty_content", f"'{field}' is empty")
        return [{"role": default_role, "content": value}]
    if value is None:
        raise RecordError("missing_messages", f"missing '{field}'")
    return _messages(value, field)


def to_messages(obj: dict[str, Any]) -> list[dict[str, str]]:
    if "messages" not in obj or obj["messages"] is None:
        raise RecordError("missing_messages", "missing 'messages' list")
    msgs = _messages(obj["messages"], "messages")
    _require_final_assistant(msgs, "messages")
    return msgs


def to_sharegpt(obj: dict[str, Any]) -> list[dict[str, str]]:
    if "conversations" not in obj or obj["conversations"] is None:
        raise RecordError("missing_messages", "missing 'conversations' list")
    msgs = _messages(
        obj["conversations"], "conversations", role_key="from", content_key="value", role_map=SHAREGPT_ROLES
    )
    if isinstance(obj.get("system"), str) and obj["system"].strip() and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": obj["system"]})
    _require_final_assistant(msgs, "conversations")
    return msgs


def to_alpaca(obj: dict[str, Any]) -> list[dict[str, str]]:
    instruction, extra, output = obj.get("instruction"), obj.get("input"), obj.get("output")
    for name, value in (("instruction", instruction), ("output", output)):
        if value is None:
            raise RecordError("missing_content", f"missing '{name}'")
        if not isinstance(value, str):
            raise RecordError("invalid_content", f"'{name}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise RecordError("empty_content", f"'{name}' is empty")
    user = instruction if not (isinstance(extra, str) and extra.strip()) else f"{instruction}\n\n{extra}"
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    system = obj.get("system")
    if isinstance(system, str) and system.strip():
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def to_preference(obj: dict[str, Any]) -> tuple[list, list, list]:
    chosen = _turns(obj.get("chosen"), "chosen", "assistant")
    rejected = _turns(obj.get("rejected"), "rejected", "assistant")
    if obj.get("prompt") is not None:
        prompt = _turns(obj["prompt"], "prompt", "user")
    else:
        # Implicit prompt (TRL's format): chosen and rejected are whole conversations sharing a prefix.
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        if n == 0:
            raise RecordError("missing_messages", "missing 'prompt' and chosen/rejected share no prompt turns")
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    if prompt[-1]["role"] == "assistant":
        raise RecordError("invalid_prompt", "'prompt' must not end with an assistant turn")
    _require_final_assistant(chosen, "chosen")
    _require_final_assistant(rejected, "rejected")
    if chosen == rejected:
        raise RecordError("chosen_equals_rejected", "'chosen' and 'rejected' are identical")
    return prompt, chosen, rejected


def canonicalize(obj: Any, fmt: str, rid: str, source: str, meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Convert one parsed raw record; returns ``("sft"|"preference", canonical record)``."""
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"record is not a JSON object (got {_json_type(obj)})")
    if fmt == "auto":
        fmt = detect_format(obj)
    own = meta  # tuneline's keys win; a record's own value under such a key is kept as source_<key>
    meta = {"format": fmt, **own}
    consumed = _CONSUMED[fmt]
    for key, value in obj.items():
        if key in consumed:
            continue
        if key in ("meta", "metadata") and isinstance(value, dict):
            for k, v in value.items():
                k = str(k)
                meta[f"source_{k}" if k == "format" or k in own else k] = v
        else:
            key = "source_id" if key == "id" else key
            meta[f"source_{key}" if key == "format" or key in own else key] = value
    if fmt == "preference":
        prompt, chosen, rejected = to_preference(obj)
        return "preference", {
            "id": rid,
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "source": source,
            "meta": meta,
        }
    convert = {"messages": to_messages, "sharegpt": to_sharegpt, "alpaca": to_alpaca}[fmt]
    return "sft", {"id": rid, "messages": convert(obj), "source": source, "meta": meta}


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(
        type(obj), type(obj).__name__
    )
