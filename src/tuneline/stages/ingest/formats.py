"""Raw record → canonical record, for the shapes LLaMA-Factory, axolotl, TRL and OpenAI users bring.

Canonical SFT:        {"id", "messages": [msg], "tools"?, "source", "meta"}
Canonical preference: {"id", "prompt": [msg], "chosen": [msg], "rejected": [msg], "tools"?, "source", "meta"}
Canonical KTO:        {"id", "prompt": [msg], "completion": [msg], "label": bool, "tools"?, "source", "meta"}

(messages as in :mod:`tuneline.stages.ingest.messages`). What each format reads:

- ``messages``: OpenAI / axolotl chat_template / LLaMA-Factory ``messages`` (+ ``tools``, ``system``);
- ``sharegpt``: ``conversations`` of ``from``/``value`` (+ ``system``, ``tools``);
- ``alpaca``: ``instruction``/``input``/``output`` (+ ``system``, ``history`` as earlier turns);
- ``preference``: a context (``prompt`` string or messages, ``messages``, ``conversations``,
  ``instruction``/``input``, ``question``; + ``system``, ``history``) and ``chosen``/``rejected`` as a string,
  one message or whole conversations (TRL's implicit prompt, UltraFeedback, the v1 ``chosen_messages``),
  or hh-rlhf's ``"\\n\\nHuman: … \\n\\nAssistant: …"`` transcripts; the shared part is the prompt, once;
- ``kto``: a conversation or prompt + ``completion`` with a boolean ``label`` (LLaMA-Factory's ``kto_tag``).

Every problem raises :class:`RecordError` with a stable ``code`` (counted in the report) and a message
that says what is wrong and where.
"""

from __future__ import annotations

import re
from typing import Any

from tuneline.records import Kind, Record
from tuneline.stages.ingest.mapping import FieldMap, apply_map
from tuneline.stages.ingest.messages import RecordError, json_object, message, message_list, tools_schema

__all__ = ["FORMATS", "RecordError", "canonicalize", "detect_format"]

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "preference", "kto")
_TOOLS = {"tools", "functions"}  # OpenAI's function schemas, current and legacy
_CONTEXT = {"prompt", "messages", "conversations", "instruction", "input", "question", "system", "history", *_TOOLS}
_CONSUMED = {
    "messages": {"messages", "system", *_TOOLS},
    "sharegpt": {"conversations", "system", *_TOOLS},
    "alpaca": {"instruction", "input", "output", "system", "history", *_TOOLS},
    "prompt_completion": _CONTEXT | {"completion"},
    "preference": _CONTEXT | {"chosen", "rejected", "chosen_messages", "rejected_messages"},
    "kto": _CONTEXT | {"completion", "output", "label", "kto_tag"},
}
_MEDIA = ("images", "image", "videos", "video", "audios", "audio")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def _label(obj: dict[str, Any]) -> Any:
    return obj["label"] if "label" in obj else obj.get("kto_tag")


def _looks_like_label(value: Any) -> bool:
    """A KTO label: a boolean, or one written as text (CSV)."""
    return isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in ("true", "false"))


def detect_format(obj: dict[str, Any]) -> str:
    """Guess the format from the keys a record carries."""
    if ("chosen" in obj and "rejected" in obj) or ("chosen_messages" in obj and "rejected_messages" in obj):
        return "preference"
    answer_keys = ("completion", "messages", "conversations", "output")
    if "kto_tag" in obj or ("label" in obj and _looks_like_label(obj["label"]) and any(k in obj for k in answer_keys)):
        return "kto"
    if "messages" in obj:
        return "messages"
    if "prompt" in obj and "completion" in obj:
        return "prompt_completion"
    if "conversations" in obj:
        return "sharegpt"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    keys = ", ".join(sorted(map(str, obj))[:8]) or "none"
    if "turns" in obj and "question_id" in obj:
        raise RecordError(
            "no_answers",
            "questions without answers (an evaluation set such as MT-Bench) cannot be trained on; "
            "use them as eval prompts instead",
        )
    if set(obj) <= {"text", "id", "meta", "metadata"}:
        raise RecordError("unknown_format", f"plain text (keys: {keys}) is a pretraining corpus, not a conversation")
    raise RecordError(
        "unknown_format",
        f"cannot detect the format (keys: {keys}); expected messages, conversations, instruction/output, "
        "prompt/completion, prompt/chosen/rejected or a KTO label (or declare the source's columns)",
    )


def _require_final_assistant(messages: list[dict[str, Any]], field: str) -> None:
    if messages[-1]["role"] != "assistant":
        raise RecordError(
            "no_final_assistant", f"'{field}' must end with an assistant turn, ends with {messages[-1]['role']!r}"
        )


def _text(obj: dict[str, Any], field: str, required: bool = True) -> str | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise RecordError("missing_content", f"missing '{field}'")
        return None
    if not isinstance(value, str):
        raise RecordError("invalid_content", f"'{field}' must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RecordError("empty_content", f"'{field}' is empty")
    return value


def _history(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Alpaca ``history``: ``[[user, assistant], ...]``, oldest first → the earlier turns."""
    history = obj.get("history")
    if history in (None, "", []):
        return []
    if not isinstance(history, list):
        raise RecordError(
            "invalid_history",
            f"'history' must be a list of [instruction, response] pairs, got {type(history).__name__}",
        )
    turns = []
    for i, pair in enumerate(history):
        if not (
            isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(t, str) and t.strip() for t in pair)
        ):
            raise RecordError(
                "invalid_history", f"history[{i}] is not an [instruction, response] pair of non-empty strings"
            )
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def _with_system(obj: dict[str, Any], msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    system = obj.get("system")
    if isinstance(system, str) and system.strip() and not (msgs and msgs[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *msgs]
    return msgs


def _alpaca_user(obj: dict[str, Any]) -> dict[str, Any]:
    """The user turn of an alpaca record, joined as LLaMA-Factory joins it: ``instruction`` and ``input``, each
    kept when it is a non-empty string, one newline between them."""
    instruction = _text(obj, "instruction", required=False)
    extra = obj.get("input")
    if instruction is None and not extra:
        raise RecordError("missing_content", "missing 'instruction'")
    content = "\n".join(part for part in (instruction, extra) if isinstance(part, str) and part)
    if not content.strip():
        raise RecordError("empty_content", "'instruction' is empty")
    return {"role": "user", "content": content}


def _conversation(obj: dict[str, Any], field: str) -> list[dict[str, Any]]:
    if obj.get(field) is None:
        raise RecordError("missing_messages", f"missing '{field}' list")
    return message_list(obj[field], field)


def to_messages(obj: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = _with_system(obj, _conversation(obj, "messages"))
    _require_final_assistant(msgs, "messages")
    return msgs


def to_sharegpt(obj: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = _with_system(obj, _conversation(obj, "conversations"))
    _require_final_assistant(msgs, "conversations")
    return msgs


def to_alpaca(obj: dict[str, Any]) -> list[dict[str, Any]]:
    user = _alpaca_user(obj)
    output = _text(obj, "output")
    return _with_system(obj, [*_history(obj), user, {"role": "assistant", "content": output}])


def _context(obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The conversation before the answer(s) of a preference/KTO record, or None when it has none of its own."""
    prompt = obj.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise RecordError("empty_content", "'prompt' is empty")
        msgs = [*_history(obj), {"role": "user", "content": prompt}]
    elif prompt is not None:
        msgs = message_list(prompt, "prompt")
    elif obj.get("messages") is not None:
        msgs = message_list(obj["messages"], "messages")
    elif obj.get("conversations") is not None:
        msgs = message_list(obj["conversations"], "conversations")
    elif obj.get("instruction") is not None:
        msgs = [*_history(obj), _alpaca_user(obj)]
    elif obj.get("question") is not None:
        msgs = [{"role": "user", "content": _text(obj, "question")}]
    else:
        return None
    return _with_system(obj, msgs)


def _hh_transcript(text: str, field: str) -> list[dict[str, Any]] | None:
    """Anthropic hh-rlhf: ``"\\n\\nHuman: …\\n\\nAssistant: …"`` → messages (None when ``text`` is not one)."""
    if not text.startswith("\n\nHuman:"):
        return None
    pieces = _HH_TURN.split(text)[1:]
    msgs = []
    for i in range(0, len(pieces), 2):
        role = "user" if pieces[i] == "Human" else "assistant"
        content = pieces[i + 1].strip() if i + 1 < len(pieces) else ""
        if not content:
            if i + 2 >= len(pieces) and role == "assistant":
                raise RecordError("empty_content", f"'{field}' ends with an empty Assistant turn")
            raise RecordError("empty_content", f"'{field}': turn {i // 2} ({pieces[i]}) is empty")
        msgs.append({"role": role, "content": content})
    return msgs


def _answer(value: Any, field: str) -> list[dict[str, Any]]:
    """A chosen/rejected/completion value: a string (one assistant turn, or an hh-rlhf transcript),
    one message object, or a list of messages."""
    if value is None:
        raise RecordError("missing_messages", f"missing '{field}'")
    if isinstance(value, str):
        transcript = _hh_transcript(value, field)
        if transcript is not None:
            return transcript
        if not value.strip():
            raise RecordError("empty_content", f"'{field}' is empty")
        return [{"role": "assistant", "content": value}]
    if isinstance(value, dict):
        return [message(value, field)]
    return message_list(value, field)


def _split_answers(
    context: list[dict[str, Any]] | None, answers: list[list[dict[str, Any]]], fields: tuple[str, ...]
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Separate the prompt from answers that repeat it (TRL's implicit prompt, UltraFeedback's full
    conversations, hh-rlhf transcripts, argilla's KTO completions): the leading turns the answers share,
    up to the last turn before an answer, become the prompt, stated once."""
    n = 0
    if all(a[0]["role"] != "assistant" for a in answers):
        if len(answers) == 1:
            n = max(i + 1 for i, m in enumerate(answers[0]) if m["role"] != "assistant")
        else:
            limit = min(len(a) for a in answers) - 1
            while n < limit and all(a[n] == answers[0][n] for a in answers[1:]):
                n += 1
        while n and answers[0][n - 1]["role"] == "assistant":  # the prompt ends where an answer starts
            n -= 1
    shared, rest = answers[0][:n], [a[n:] for a in answers]
    if context is None:
        if not shared:
            raise RecordError(
                "missing_messages", f"no prompt: no 'prompt' field and {'/'.join(fields)} share no leading turns"
            )
        return shared, rest
    if not shared:
        return context, rest
    # The answers restate the prompt: keep one copy, the answers' (it may hold more turns), after
    # checking that it is the same conversation.
    mine, theirs = _user_texts(context), _user_texts(shared)
    if not mine or not theirs or mine[0] != theirs[0]:
        raise RecordError(
            "prompt_mismatch", f"'{fields[0]}' starts with a conversation that differs from the record's prompt"
        )
    system = [m for m in context if m["role"] == "system"][:1]
    return ([*system, *shared] if system and shared[0]["role"] != "system" else shared), rest


def _user_texts(msgs: list[dict[str, Any]]) -> list[str]:
    return [" ".join(m["content"].split()) for m in msgs if m["role"] == "user"]


def to_prompt_completion(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """TRL's prompt-completion rows as one conversation. Conversational rows (message lists) keep their turns;
    standard rows (two strings) become a user turn and the assistant's answer, so they train through the chat
    template like every other record (TRL would train on the raw concatenated text)."""
    prompt, (completion,) = _split_answers(
        _context(obj), [_answer(obj.get("completion"), "completion")], ("completion",)
    )
    msgs = [*prompt, *completion]
    _require_final_assistant(msgs, "completion")
    if prompt[-1]["role"] == "assistant":
        raise RecordError("invalid_prompt", "'prompt' must not end with an assistant turn")
    return msgs


def from_openai_preference(obj: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's preference fine-tuning row (``input.messages``/``input.tools``, ``preferred_output``,
    ``non_preferred_output``) in the preference shape ``to_preference`` reads; other fields are kept."""
    given = obj.get("input")
    if isinstance(given, str) and given.lstrip().startswith("{"):  # a CSV cell (alpaca's input stays text)
        given = json_object(given, "input", "invalid_prompt")
    if not isinstance(given, dict) or not isinstance(given.get("messages"), list):
        raise RecordError("invalid_prompt", "'input' must be an object with a 'messages' list (OpenAI preference)")
    rest = {k: v for k, v in obj.items() if k not in ("input", "preferred_output", "non_preferred_output")}
    tools = {"tools": given["tools"]} if given.get("tools") else {}
    return {
        **rest, "prompt": given["messages"], **tools,
        "chosen": obj["preferred_output"], "rejected": obj["non_preferred_output"],
    }  # fmt: skip


def to_preference(obj: dict[str, Any]) -> tuple[list, list, list]:
    chosen_field = "chosen" if "chosen" in obj else "chosen_messages"
    rejected_field = "rejected" if "rejected" in obj else "rejected_messages"
    chosen = _answer(obj.get(chosen_field), chosen_field)
    rejected = _answer(obj.get(rejected_field), rejected_field)
    prompt, (chosen, rejected) = _split_answers(_context(obj), [chosen, rejected], (chosen_field, rejected_field))
    if not chosen or not rejected:
        raise RecordError("missing_messages", "'chosen' and 'rejected' must each hold an answer after the prompt")
    if prompt[-1]["role"] == "assistant":
        raise RecordError("invalid_prompt", "'prompt' must not end with an assistant turn")
    _require_final_assistant(chosen, chosen_field)
    _require_final_assistant(rejected, rejected_field)
    if chosen == rejected:
        raise RecordError("chosen_equals_rejected", "'chosen' and 'rejected' are identical")
    return prompt, chosen, rejected


def _kto_label(obj: dict[str, Any]) -> bool:
    value = _label(obj)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    field = "label" if "label" in obj else "kto_tag"
    raise RecordError("invalid_label", f"'{field}' must be true or false, got {value!r}")


def to_kto(obj: dict[str, Any]) -> tuple[list, list, bool]:
    label = _kto_label(obj)
    if "completion" in obj or "output" in obj:
        field = "completion" if "completion" in obj else "output"
        context = _context(obj)
        prompt, (completion,) = _split_answers(context, [_answer(obj[field], field)], (field,))
    else:
        field = "messages" if "messages" in obj else "conversations"
        conv = _with_system(obj, _conversation(obj, field))
        _require_final_assistant(conv, field)
        cut = len(conv)
        while cut and conv[cut - 1]["role"] == "assistant":
            cut -= 1
        if cut == 0:
            raise RecordError("missing_messages", f"'{field}' has no prompt before the answer")
        prompt, completion = conv[:cut], conv[cut:]
    if not completion:
        raise RecordError("missing_messages", f"'{field}' holds no answer after the prompt")
    _require_final_assistant(completion, field)
    if prompt[-1]["role"] == "assistant":
        raise RecordError("invalid_prompt", "the prompt must not end with an assistant turn")
    return prompt, completion, label


def canonicalize(
    obj: Any, fmt: str, rid: str, source: str, meta: dict[str, Any], field_map: FieldMap | None = None
) -> tuple[Kind, Record]:
    """Convert one parsed raw record; returns ``("sft"|"preference"|"kto", canonical record)``."""
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"record is not a JSON object (got {_json_type(obj)})")
    if field_map:
        obj = apply_map(obj, field_map)
    if "preferred_output" in obj and "non_preferred_output" in obj:
        obj = from_openai_preference(obj)
    if fmt == "auto":
        fmt = detect_format(obj)
    for key in _MEDIA:
        if obj.get(key):
            raise RecordError(
                "unsupported_modality", f"the record has {key!r}; tuneline fine-tunes text-only chat models"
            )
    declared = obj.get("tools") or obj.get("functions")  # OpenAI's legacy function calling names them functions
    tools = tools_schema(declared, "tools" if obj.get("tools") else "functions") if declared else None
    extra = {"tools": tools} if tools else {}
    if fmt == "preference":
        prompt, chosen, rejected = to_preference(obj)
        body, kind = {"prompt": prompt, "chosen": chosen, "rejected": rejected}, "preference"
    elif fmt == "kto":
        prompt, completion, label = to_kto(obj)
        body, kind = {"prompt": prompt, "completion": completion, "label": label}, "kto"
    else:
        convert = {
            "messages": to_messages, "sharegpt": to_sharegpt, "alpaca": to_alpaca,
            "prompt_completion": to_prompt_completion,
        }[fmt]  # fmt: skip
        body, kind = {"messages": convert(obj)}, "sft"
    _check_weights(kind, body)
    record = {"id": rid, **body, **extra, "source": source, "meta": _meta(obj, fmt, meta)}
    return kind, record  # type: ignore[return-value]  # built per kind above


def _check_weights(kind: str, body: dict[str, Any]) -> None:
    """Per-turn weights: an SFT record must train at least one assistant turn; a preference or KTO answer is the
    target by definition, so a weight of 0 there is refused, and weights in a prompt (always context) are dropped."""
    if kind == "sft":
        for m in body["messages"]:  # a loop, not any() over a generator: this runs for every record
            if m["role"] == "assistant" and m.get("weight", 1):
                return
        raise RecordError("no_trained_turn", "every assistant turn has weight 0: nothing would be trained on")
    for m in body["prompt"]:
        m.pop("weight", None)
    for field in ("chosen", "rejected", "completion"):
        if any(m.get("weight") == 0 for m in body.get(field) or ()):
            raise RecordError("invalid_weight", f"'{field}' is an answer to train on; it cannot have weight 0")


def _meta(obj: dict[str, Any], fmt: str, own: dict[str, Any]) -> dict[str, Any]:
    """The record's other fields (and its own ``meta``) kept as metadata; tuneline's keys win, and a record's
    own value under such a key is kept as ``source_<key>``."""
    meta = {"format": fmt, **own}
    consumed = _CONSUMED[fmt]

    def keep(key: str, value: Any) -> None:
        meta[f"source_{key}" if key == "format" or key in own else key] = value

    for key, value in obj.items():
        if key in consumed:
            continue
        if key in ("meta", "metadata") and isinstance(value, dict):
            for k, v in value.items():
                keep(str(k), v)
        else:
            keep("source_id" if key == "id" else key, value)
    return meta


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(
        type(obj), type(obj).__name__
    )
