"""The canonical records every data stage reads and writes, by kind, and their text views.

One ``<kind>.jsonl`` per kind: ``sft`` trains SFT (``messages``), ``preference`` trains DPO (``prompt``,
``chosen``, ``rejected``: paired), ``kto`` trains KTO (``prompt``, ``completion``, ``label``: one answer
labelled desirable or not). A message is ``{"role", "content"}`` plus, where present, ``name``,
``tool_call_id``, ``reasoning_content``, ``tool_calls`` and ``weight: 0`` on an assistant turn that is context
only (see :mod:`tuneline.stages.ingest.messages`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, NotRequired, TypedDict

import orjson

Kind = Literal["sft", "preference", "kto"]
KINDS: tuple[Kind, ...] = ("sft", "preference", "kto")
#: The message lists of each kind, in a stable order (what cleaning, dedup and the leakage audit read).
MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "preference": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion"),
}


class FunctionCall(TypedDict):
    name: str
    arguments: str | dict[str, Any]


class ToolCall(TypedDict):
    type: Literal["function"]
    function: FunctionCall
    id: NotRequired[str]


class Message(TypedDict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: NotRequired[str]
    tool_call_id: NotRequired[str]
    reasoning_content: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    weight: NotRequired[Literal[0]]  # an assistant turn that is context, never a training target


class _Record(TypedDict):
    id: str  # stable: from where the record came from (see the ingest stage)
    source: str
    meta: dict[str, Any]
    tools: NotRequired[list[dict[str, Any]]]  # OpenAI function schemas


class SftRecord(_Record):
    messages: list[Message]


class PreferenceRecord(_Record):
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]


class KtoRecord(_Record):
    prompt: list[Message]
    completion: list[Message]
    label: bool  # desirable or not


Record = SftRecord | PreferenceRecord | KtoRecord


def messages_of(rec: Mapping[str, Any], kind: Kind) -> Iterator[Message]:
    """Every message of a record of ``kind`` (known from the file it is in), in a stable order."""
    for field in MESSAGE_FIELDS[kind]:
        yield from rec[field]


def message_text(m: Mapping[str, Any]) -> str:
    """All of a message as one text: reasoning, content, tool calls (what dedup, length rules and the
    built-in tokenizer see)."""
    text = m["content"]
    if m.get("reasoning_content"):
        text = m["reasoning_content"] + "\n" + text
    for call in m.get("tool_calls") or ():
        text += "\n" + orjson.dumps(call["function"], option=orjson.OPT_SORT_KEYS).decode()
    return text
