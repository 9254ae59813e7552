"""One raw chat message → one canonical message, whatever project wrote it.

Canonical message: ``{"role": system|user|assistant|tool, "content": str}`` plus, where present,
``name``, ``tool_call_id``, ``reasoning_content`` (an assistant's reasoning, the key Hugging Face
chat templates read) and ``tool_calls`` (``[{"type": "function", "function": {"name", "arguments":
{...}}, "id"?}]``, arguments always a JSON object: templates serialise them with ``tojson``).

Read here, with one role table:
- OpenAI/axolotl ``{"role", "content"}``, content a string or parts (``text``, or LLaMA-Factory's
  ``value`` with ``text``/``reasoning``/``tool_call`` parts), assistant ``tool_calls`` with no content,
  the legacy assistant ``function_call`` and ``function`` results;
- ShareGPT ``{"from", "value"}``: ``function_call`` is the assistant calling a tool (so it is trained
  on), ``observation`` is the tool's answer.

Errors are :class:`RecordError` with stable codes; the message names the field and index.
"""

from __future__ import annotations

from typing import Any

import orjson

from tuneline.records import Message


class RecordError(ValueError):
    """A record that cannot become a canonical record; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


ROLES = frozenset({"system", "user", "assistant", "tool"})
TOOL_CALL = "tool_call"  # a pseudo-role: an assistant turn whose content is a tool call (ShareGPT function_call)
ROLE_TABLE = {
    "system": "system",
    "developer": "system",  # OpenAI's successor to system (reasoning models, gpt-oss data)
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",  # OpenAI's legacy function result; FastChat's tool answer
    "observation": "tool",
    "ipython": "tool",
    "function_call": TOOL_CALL,
    "tool_call": TOOL_CALL,
}
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
REASONING_PARTS = frozenset({"reasoning", "thinking"})
MEDIA_PARTS = frozenset({"image", "image_url", "input_image", "audio", "input_audio", "video", "video_url", "file"})
ROLE_KEYS, CONTENT_KEYS = ("role", "from", "speaker"), ("content", "value", "text")
_PLAIN_KEYS = (("role", "content"), ("from", "value"))


def json_object(value: Any, where: str, code: str) -> Any:
    """A JSON value given as text (as OpenAI and LLaMA-Factory write tool calls and tools) or already parsed."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordError(code, f"{where} is not valid JSON ({exc})") from None
    return value


def _arguments(value: Any, where: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    args = json_object(value, where, "invalid_tool_call")
    if not isinstance(args, dict):
        raise RecordError("invalid_tool_call", f"{where} must be a JSON object, got {type(args).__name__}")
    return args


def tool_call(raw: Any, where: str) -> dict[str, Any]:
    """OpenAI ``{"type": "function", "function": {...}}``, or the bare ``{"name", "arguments"}`` of
    ShareGPT/LLaMA-Factory/Hermes, → the canonical call."""
    raw = json_object(raw, where, "invalid_tool_call")
    if not isinstance(raw, dict):
        raise RecordError("invalid_tool_call", f"{where} must be an object with a name, got {type(raw).__name__}")
    fn = raw.get("function") if isinstance(raw.get("function"), dict) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RecordError("invalid_tool_call", f"{where} has no function name")
    call: dict[str, Any] = {
        "type": "function",
        "function": {"name": name, "arguments": _arguments(fn.get("arguments", fn.get("parameters")), where)},
    }
    if isinstance(raw.get("id"), str) and raw["id"]:
        call["id"] = raw["id"]
    return call


def tool_calls_from(value: Any, where: str) -> list[dict[str, Any]]:
    """One call or a list of parallel calls, as text or parsed."""
    value = json_object(value, where, "invalid_tool_call")
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise RecordError("invalid_tool_call", f"{where} is an empty list of tool calls")
    return [tool_call(c, f"{where}[{i}]" if isinstance(value, list) else where) for i, c in enumerate(calls)]


def _parts(content: list[Any], where: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Content parts → (text, reasoning, tool calls)."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            text.append(part)
            continue
        if not isinstance(part, dict):
            raise RecordError("invalid_content", f"{where}: content part {i} is a {type(part).__name__}")
        kind = part.get("type", "text")
        value = part.get("text", part.get("value"))
        if kind in MEDIA_PARTS:
            raise RecordError(
                "unsupported_content", f"{where}: content part {i} is {kind!r}; tuneline fine-tunes on text only"
            )
        if kind == "tool_call":
            calls.extend(tool_calls_from(value, f"{where}: content part {i}"))
            continue
        if not isinstance(value, str):
            raise RecordError(
                "invalid_content", f"{where}: content part {i} ({kind!r}) has no 'text' or 'value' string"
            )
        if kind in TEXT_PARTS:
            text.append(value)
        elif kind in REASONING_PARTS:
            reasoning.append(value)
        else:
            raise RecordError(
                "unsupported_content",
                f"{where}: content part {i} has type {kind!r} (supported: text, reasoning, tool_call)",
            )
    return "".join(text), "\n".join(reasoning), calls


def _key(raw: dict[str, Any], preferred: str | None, candidates: tuple[str, ...]) -> str:
    if preferred:
        return preferred
    return next((k for k in candidates if k in raw), candidates[0])


def message(
    raw: Any,
    where: str,
    role_key: str | None = None,
    content_key: str | None = None,
    roles: dict[str, str] | None = None,
) -> Message:
    """One canonical message. ``role_key``/``content_key`` name the fields when a source declares them;
    ``roles`` maps a source's own role tags (checked before the built-in table)."""
    if not isinstance(raw, dict):
        raise RecordError("invalid_message", f"{where} is not an object (got {type(raw).__name__})")
    if len(raw) == 2 and not (role_key or content_key or roles):
        plain = _plain_turn(raw)
        if plain is not None:
            return plain
    rk, ck = _key(raw, role_key, ROLE_KEYS), _key(raw, content_key, CONTENT_KEYS)
    tag, role = _role(raw, rk, where, roles or {})
    role, content, reasoning, calls = _body(raw.get(ck), role, f"{where}.{ck}", where)
    if role == "assistant":
        calls += _fields_calls(raw, where)
        reasoning = reasoning or next(
            (raw[f] for f in ("reasoning_content", "reasoning", "thinking") if _text(raw.get(f))), ""
        )
    elif raw.get("tool_calls"):
        raise RecordError("invalid_tool_call", f"{where}: only assistant turns make tool calls (role {tag!r})")
    content = _require_content(content, bool(calls), where, ck)
    msg: Message = {"role": role, "content": content}  # type: ignore[typeddict-item]  # role: checked by _role
    if reasoning:
        msg["reasoning_content"] = reasoning
    if calls:
        msg["tool_calls"] = calls
    if role == "assistant" and _weight(raw, where) == 0:
        msg["weight"] = 0  # context, never a training target
    msg.update({f: raw[f] for f in ("name", "tool_call_id") if isinstance(raw.get(f), str) and raw[f]})
    return msg


def _plain_turn(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The common case, a plain text turn ({"role", "content"} or {"from", "value"}), with no lookups beyond
    these; None for anything else (the general path decides)."""
    for rk, ck in _PLAIN_KEYS:
        tag, content = raw.get(rk), raw.get(ck)
        if type(tag) is str and type(content) is str:
            role = ROLE_TABLE.get(tag)
            if role is not None and role != TOOL_CALL and content.strip():
                return {"role": role, "content": content}
            return None
    return None


def _role(raw: dict[str, Any], rk: str, where: str, roles: dict[str, str]) -> tuple[str, str]:
    """The source's role tag and the canonical role it maps to (the source's own mapping first)."""
    if raw.get(rk) is None:
        raise RecordError("missing_role", f"{where}: missing '{rk}'")
    tag = raw[rk]
    if not isinstance(tag, str):
        raise RecordError("unknown_role", f"{where}: role must be a string, got {type(tag).__name__}")
    key = tag.strip().lower()
    role = roles.get(tag, roles.get(key)) or ROLE_TABLE.get(key)
    if role is None:
        allowed = sorted({*ROLE_TABLE, *roles})
        raise RecordError(
            "unknown_role",
            f"{where}: unknown role {tag!r} (known: {', '.join(allowed)}; map it with the source's roles)",
        )
    return tag, role


def _body(content: Any, role: str, field: str, where: str) -> tuple[str, str | None, str, list[dict[str, Any]]]:
    """(role, text, reasoning, tool calls) of a turn's content: a string, content parts, or (for a ShareGPT
    ``function_call`` turn) the call itself, which makes the turn the assistant's."""
    if role == TOOL_CALL:
        if content is None:
            raise RecordError("missing_content", f"{where}: missing '{field.rsplit('.', 1)[-1]}'")
        return "assistant", "", "", tool_calls_from(content, field)
    if isinstance(content, list):
        text, reasoning, calls = _parts(content, where)
        return role, text, reasoning, calls
    if content is not None and not isinstance(content, str):
        raise RecordError(
            "invalid_content", f"{where}: content must be a string or parts, got {type(content).__name__}"
        )
    return role, content, "", []


def _fields_calls(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """An assistant turn's calls in OpenAI's fields (``tool_calls``, or the legacy ``function_call``)."""
    calls: list[dict[str, Any]] = []
    for field in ("tool_calls", "function_call"):
        if raw.get(field):
            calls.extend(tool_calls_from(raw[field], f"{where}.{field}"))
    return calls


def _require_content(content: str | None, has_calls: bool, where: str, ck: str) -> str:
    """A turn needs text unless it makes tool calls."""
    if content is None and not has_calls:
        raise RecordError("missing_content", f"{where}: missing '{ck}'")
    content = content or ""
    if not content.strip() and not has_calls:
        raise RecordError("empty_content", f"{where}: empty content")
    return content


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


#: Per-turn training flags: OpenAI's ``weight`` (0|1), LLaMA-Factory v1's ``loss_weight``, axolotl's ``training``.
WEIGHT_FIELDS = ("weight", "loss_weight", "training")


def _weight(raw: dict[str, Any], where: str) -> int:
    """1 when an assistant turn is a training target, 0 when the source marks it as context only. Fractional
    weights are refused: tuneline trains a turn or does not."""
    for field in WEIGHT_FIELDS:
        value = raw.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or (isinstance(value, int | float) and value in (0, 1)):
            return int(value)
        if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
            return int(value.strip().lower() in ("1", "true"))
        raise RecordError(
            "invalid_weight",
            f"{where}: {field} {value!r} on an assistant turn; tuneline reads 0 (context) or 1 (trained)",
        )
    return 1


def message_list(raw: Any, field: str, **kw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        what = "empty" if isinstance(raw, list) else f"a {type(raw).__name__}"
        raise RecordError("missing_messages", f"'{field}' must be a non-empty list of messages, got {what}")
    if any(kw.values()):
        msgs = [message(m, f"{field}[{i}]", **kw) for i, m in enumerate(raw)]
    else:  # plain turns without a location string each; the others as message makes them, in order
        msgs = [_plain_turn(m) if type(m) is dict and len(m) == 2 else None for m in raw]
        if None in msgs:
            msgs = [p or message(m, f"{field}[{i}]") for i, (p, m) in enumerate(zip(msgs, raw, strict=True))]
    if any(m["role"] == "tool" for m in msgs):
        _name_tool_results(msgs)
    return msgs


def _name_tool_results(msgs: list[dict[str, Any]]) -> None:
    """A tool result that does not say which tool answered takes the name of the call it follows
    (ShareGPT observations carry only the text; templates that label tool turns need the name)."""
    pending: list[dict[str, Any]] = []
    for m in msgs:
        if m.get("tool_calls"):
            pending = list(m["tool_calls"])
        elif m["role"] == "tool" and pending:
            call = pending.pop(0)
            m.setdefault("name", call["function"]["name"])
            if "id" in call:
                m.setdefault("tool_call_id", call["id"])
        elif m["role"] != "tool":
            pending = []


def tools_schema(value: Any, where: str = "tools") -> list[dict[str, Any]]:
    """Function schemas: LLaMA-Factory writes a JSON string of bare schemas, OpenAI a list of
    ``{"type": "function", "function": schema}``; both → the OpenAI form chat templates read."""
    value = json_object(value, where, "invalid_tools")
    if value in (None, "", []):
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        fn = item.get("function") if isinstance(item, dict) and isinstance(item.get("function"), dict) else item
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RecordError("invalid_tools", f"{where}[{i}] is not a function schema with a name")
        out.append({"type": "function", "function": fn})
    return out
