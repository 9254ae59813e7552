"""tuneline reads LLaMA-Factory's own sample data exactly as LLaMA-Factory does, record for record.

The oracle is LLaMA-Factory 0.9.5 itself (``pip install --no-deps llamafactory==0.9.5``, which ``make setup``
does): its ``data.parser`` reads ``dataset_info.json`` and its ``data.converter`` turns each row into LLaMA-Factory's
aligned form (``_prompt``, ``_response``, ``_system``, ``_tools``). Its package ``__init__`` files import the whole
training stack for its CLI (torchaudio among it); the two modules are loaded from the installed package without
running those files, so nothing of LLaMA-Factory's is changed, stubbed or copied.

Both sides are brought to one view (system prompt, turns with their roles, tool calls parsed, tool schemas,
answers, KTO label) and compared row by row. Left out, each by design: the multimodal demos (tuneline refuses
images, audio and video by name) and the two pretraining corpora (tuneline fine-tunes on chats).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, read_jsonl
from tuneline.config import load_config
from tuneline.config.schema import Source
from tuneline.stages.ingest import run_ingest

DATA = REPO.parent / "shared" / "realdata" / "LLaMA-Factory" / "data"
pytestmark = [
    pytest.mark.skipif(not DATA.is_dir(), reason="../shared/realdata is absent (public samples, CI only)"),
    pytest.mark.skipif(
        importlib.util.find_spec("llamafactory") is None,
        reason="LLaMA-Factory is not installed: pip install --no-deps llamafactory==0.9.5 (make setup does)",
    ),
]
COMPARED = (
    "identity", "alpaca_en_demo", "alpaca_zh_demo", "glaive_toolcall_en_demo", "glaive_toolcall_zh_demo",
    "dpo_en_demo", "dpo_zh_demo", "kto_en_demo",
)  # fmt: skip
LF_ROLES = {"user": "user", "assistant": "assistant", "observation": "tool", "system": "system"}


@functools.cache
def _llamafactory() -> tuple[Any, Any]:
    """LLaMA-Factory's ``data.converter`` and ``data.parser``, imported without its package ``__init__`` files."""
    spec = importlib.util.find_spec("llamafactory")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (
        ("llamafactory", root),
        ("llamafactory.extras", root / "extras"),
        ("llamafactory.data", root / "data"),
    ):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    return importlib.import_module("llamafactory.data.converter"), importlib.import_module("llamafactory.data.parser")


def _call(value: Any) -> dict[str, Any]:
    call = json.loads(value) if isinstance(value, str) else value
    args = call.get("arguments")
    return {"name": call["name"], "arguments": json.loads(args) if isinstance(args, str) else args}


def _lf_turn(m: dict[str, Any]) -> tuple[str, Any]:
    if m["role"] == "function":
        return (
            "call",
            [_call(c) for c in (json.loads(m["content"]) if m["content"].startswith("[") else [m["content"]])],
        )
    return (LF_ROLES[m["role"]], m["content"])


def _ours_turns(msgs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    turns: list[tuple[str, Any]] = []
    for m in msgs:
        if m.get("tool_calls"):
            turns.append(("call", [_call(c["function"]) for c in m["tool_calls"]]))
        else:
            turns.append((m["role"], m["content"]))
    return turns


def lf_view(aligned: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """LLaMA-Factory's aligned example as (system, prompt turns, answers, tools, label); None when it skips it."""
    prompt, response = aligned["_prompt"], aligned["_response"]
    if not prompt or not response:
        return None
    view: dict[str, Any] = {
        "system": aligned["_system"] or None,
        "prompt": [_lf_turn(m) for m in prompt],
        "tools": [t.get("function", t) for t in json.loads(aligned["_tools"])] if aligned["_tools"] else [],
    }
    if kind == "preference":
        view["answers"] = [[_lf_turn(response[0])], [_lf_turn(response[1])]]
    elif kind == "kto":  # LLaMA-Factory pads the answer with an empty turn: after it if desirable, before if not
        view["label"] = response[0]["content"] != ""
        view["answers"] = [[_lf_turn(response[0] if view["label"] else response[1])]]
    else:
        view["answers"] = [[_lf_turn(response[0])]]
    return view


def our_view(rec: dict[str, Any], kind: str) -> dict[str, Any]:
    context = rec["messages"][:-1] if kind == "sft" else rec["prompt"]
    system = context[0]["content"] if context and context[0]["role"] == "system" else None
    if kind == "sft":
        answers = [rec["messages"][-1:]]
    else:
        answers = [rec["chosen"], rec["rejected"]] if kind == "preference" else [rec["completion"]]
    view: dict[str, Any] = {
        "system": system,
        "prompt": _ours_turns(context[1:] if system is not None else context),
        "tools": [t["function"] for t in rec.get("tools") or []],
        "answers": [_ours_turns(a) for a in answers],
    }
    if kind == "kto":
        view["label"] = rec["label"]
    return view


def _rows(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> dict[tuple[str, int], tuple[str, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("lf") / "out"
    run_ingest(load_config(None, ("data.max_bad_fraction=1.0",)), [Source(uri=str(DATA))], out)
    found = {}
    for kind in ("sft", "preference", "kto"):
        for rec in read_jsonl(out / f"{kind}.jsonl"):
            found[(Path(rec["source"]).name, rec["meta"]["row"])] = (kind, rec)
    return found


@pytest.mark.parametrize("name", COMPARED)
def test_every_record_agrees_with_llamafactorys_own_converter(name: str, ours) -> None:
    converter, parser = _llamafactory()
    [attr] = parser.get_dataset_list([name], str(DATA))
    args = types.SimpleNamespace(dataset_dir=str(DATA), media_dir=str(DATA))
    convert = converter.get_dataset_converter(attr.formatting, attr, args)
    rows = _rows(DATA / attr.dataset_name)
    disagree, compared = [], 0
    for i, row in enumerate(rows):
        mine = ours.get((attr.dataset_name, i))
        theirs = lf_view(convert(defaultdict(lambda: None, row)), mine[0] if mine else "sft")
        if theirs is None or mine is None:
            assert theirs is None and mine is None, f"{name} row {i}: only one side reads it"
            continue
        compared += 1
        if our_view(mine[1], mine[0]) != theirs:
            disagree.append(i)
    assert compared == len(rows), f"{name}: {len(rows) - compared} rows skipped"
    assert disagree == [], (
        f"{name}: {len(disagree)} of {len(rows)} rows differ from LLaMA-Factory's, e.g. {disagree[:5]}"
    )
