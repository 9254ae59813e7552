"""The canonical records every data stage reads and writes, by kind, and their text views.

One ``<kind>.jsonl`` per kind: ``sft`` trains SFT (``messages``), ``preference`` trains DPO (``prompt``,
``chosen``, ``rejected``: paired), ``kto`` trains KTO (``prompt``, ``completion``, ``label``: one answer
labelled desirable or not). A message is ``{"role", "content"}`` plus, where present, ``name``,
``tool_call_id``, ``reasoning_content`` and ``tool_calls`` (see :mod:`tuneline.stages.ingest.messages`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

KINDS = ("sft", "preference", "kto")
MESSAGE_FIELDS = {"sft": ("messages",), "preference": ("prompt", "chosen", "rejected"), "kto": ("prompt", "completion")}


def kind_of(rec: dict[str, Any]) -> str:
    """The kind of a canonical record, from the fields it has."""
    if "messages" in rec:
        return "sft"
    return "kto" if "completion" in rec else "preference"


def messages_of(rec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every message of a record of any kind, in a stable order."""
    for field in MESSAGE_FIELDS[kind_of(rec)]:
        yield from rec[field]


def message_text(m: dict[str, Any]) -> str:
    """All of a message as one text: reasoning, content, tool calls (what dedup, length rules and the
    built-in tokenizer see)."""
    text = m["content"]
    if m.get("reasoning_content"):
        text = m["reasoning_content"] + "\n" + text
    for call in m.get("tool_calls") or ():
        text += "\n" + orjson.dumps(call["function"], option=orjson.OPT_SORT_KEYS).decode()
    return text
