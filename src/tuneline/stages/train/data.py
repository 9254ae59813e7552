"""Training data: the split stage's JSONL files turned into TRL's conversational formats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneline.io.jsonl import read_jsonl
from tuneline.stages.split import split_path
from tuneline.stages.train.errors import TrainError

SFT, PREFERENCE = "sft", "preference"


def kind_for(method: str) -> str:
    return PREFERENCE if method == "dpo" else SFT


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


def sft_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": r["id"], "messages": r["messages"]} for r in records]


def preference_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": r["id"], "prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in records]


def rows_for(kind: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return preference_rows(records) if kind == PREFERENCE else sft_rows(records)


def texts(split_dir: str | Path) -> Iterator[str]:
    """Every message text of the train splits, in file order (the built-in tokenizer is trained on these)."""
    for kind in (SFT, PREFERENCE):
        for record in load_records(split_dir, kind, "train", required=False):
            for key in ("messages", "prompt", "chosen", "rejected"):
                for message in record.get(key) or []:
                    yield message["content"]


def conversations(row: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The full conversations a row is trained on (one for SFT, chosen and rejected for preference)."""
    if "messages" in row:
        return [row["messages"]]
    return [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]]


def token_lengths(tokenizer: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Length in tokens of the longest rendered conversation of each row."""
    out = []
    for row in rows:
        lengths = [
            len(tokenizer.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"])
            for conv in conversations(row)
        ]
        out.append(max(lengths))
    return out
