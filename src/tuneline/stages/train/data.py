"""Training data: the split stage's JSONL files turned into TRL's conversational formats.

Rows keep tool calls and reasoning on their messages and carry the record's ``tools`` as a JSON
string (TRL's SFT, DPO and KTO trainers pass it to the chat template). Message lists are stored as
``datasets.Json`` values, because Arrow would otherwise merge every tool call's arguments into one
struct and hand the template ``{"city": "Paris", "ticker": null}``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tuneline.io.jsonl import read_jsonl
from tuneline.records import MESSAGE_FIELDS, message_text
from tuneline.stages.split import split_path
from tuneline.stages.train.errors import TrainError

SFT, PREFERENCE, KTO = "sft", "preference", "kto"
_KIND_OF_METHOD = {"dpo": PREFERENCE, "kto": KTO}  # every other method trains on sft


def kind_for(method: str) -> str:
    return _KIND_OF_METHOD.get(method, SFT)


def load_records(split_dir: str | Path, kind: str, split: str, required: bool = True) -> list[dict[str, Any]]:
    path = split_path(split_dir, kind, split)
    if not path.is_file():
        if required:
            raise TrainError(f"missing split file {path}: run `tuneline split` first (or check paths.split)")
        return []
    records = list(read_jsonl(path))
    if required and not records:
        raise TrainError(f"{path} is empty: there is nothing to train on ({kind}/{split})")
    return records


def _tools(record: dict[str, Any]) -> str | None:
    return orjson.dumps(record["tools"]).decode() if record.get("tools") else None


def rows_for(kind: str, records: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Trainer rows of ``kind``: its message fields, KTO's label, and tools. KTO rows are shuffled with
    ``seed``: TRL's KTO reads them in order (its KL term pairs neighbours), and split files are grouped
    by source, so unshuffled batches would hold only desirable or only undesirable answers."""
    fields = MESSAGE_FIELDS[kind] + (("label",) if kind == KTO else ())
    rows = [{"id": r["id"], **{f: r[f] for f in fields}, "tools": _tools(r)} for r in records]
    if kind == KTO:
        random.Random(seed).shuffle(rows)
    return rows


def dataset(rows: list[dict[str, Any]]) -> Any:
    """A ``datasets.Dataset`` of trainer rows (``id`` dropped), message lists as JSON values."""
    from datasets import Dataset, Features, Json, List, Value

    if not rows:
        raise TrainError("no rows to train on")
    columns = [k for k in rows[0] if k != "id"]
    types = {"tools": Value("string"), "label": Value("bool")}
    features = Features({k: types.get(k, List(Json())) for k in columns})
    return Dataset.from_list([{k: r.get(k) for k in columns} for r in rows], features=features)


def texts(split_dir: str | Path) -> Iterator[str]:
    """Every text of the train splits, in file order (the built-in tokenizer is trained on these)."""
    for kind, fields in MESSAGE_FIELDS.items():
        for record in load_records(split_dir, kind, "train", required=False):
            if record.get("tools"):
                yield orjson.dumps(record["tools"]).decode()
            for key in fields:
                for message in record[key]:
                    yield message_text(message)


def conversations(row: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The full conversations a row is trained on (one for SFT and KTO, chosen and rejected for DPO)."""
    if "messages" in row:
        return [row["messages"]]
    if "completion" in row:
        return [row["prompt"] + row["completion"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]


def token_lengths(tokenizer: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Length in tokens of the longest rendered conversation of each row (tools included)."""
    out = []
    for row in rows:
        tools = orjson.loads(row["tools"]) if row.get("tools") else None
        lengths = [
            len(tokenizer.apply_chat_template(conv, tools=tools, tokenize=True, return_dict=True)["input_ids"])
            for conv in conversations(row)
        ]
        out.append(max(lengths))
    return out
