"""Every shape users bring, in every file kind, ingests to the right roles, turns and output file.

Fixtures are our own text in each project's shape (tests/format_fixtures.py); the public samples in
../shared/realdata are read by tests/test_realdata.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import read_jsonl, write_jsonl
from tests.format_fixtures import MAPPED_RECORD, MAPPING, SHAPES, flat
from tuneline.config import load_config
from tuneline.config.loader import ConfigError
from tuneline.config.schema import Source
from tuneline.stages.ingest import run_ingest
from tuneline.stages.ingest.run import IngestRejected

FILES = {"sft": "sft.jsonl", "preference": "preference.jsonl", "kto": "kto.jsonl"}


def write_shape(directory: Path, name: str, raw: dict, kind: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "jsonl":
        return write_jsonl(directory / f"{name}.jsonl", [raw])
    if kind == "json":
        path = directory / f"{name}.json"
        path.write_text(json.dumps([raw], ensure_ascii=False, indent=2), encoding="utf-8")
        return path
    if kind == "csv":
        path = directory / f"{name}.csv"
        row = flat(raw)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        return path
    path = directory / f"{name}.parquet"
    pq.write_table(pa.Table.from_pylist([raw]), path)
    return path


def ingested(out: Path) -> dict[str, dict]:
    """Output records by the fixture name (the file they came from), with their kind."""
    by_name = {}
    for kind, file in FILES.items():
        for rec in read_jsonl(out / file):
            by_name[Path(rec["source"]).stem] = (kind, rec)
    return by_name


@pytest.mark.parametrize("file_kind", ["jsonl", "json", "csv", "parquet"])
def test_every_shape_in_every_file_kind(make_config, tmp_path, file_kind):
    raw_dir = tmp_path / "raw"
    for name, (raw, _, _) in SHAPES.items():
        write_shape(raw_dir, name, raw, file_kind)
    result = run_ingest(make_config(), [Source(uri=str(raw_dir))], tmp_path / "out")

    assert result.quarantined == 0, read_jsonl(tmp_path / "out" / "quarantine.jsonl")
    got = ingested(tmp_path / "out")
    assert set(got) == set(SHAPES)
    for name, (_, kind, expected) in SHAPES.items():
        out_kind, rec = got[name]
        assert out_kind == kind, name
        body = {k: v for k, v in rec.items() if k not in ("id", "source", "meta")}
        assert body == expected, name
    # what a format reads is not also left in meta; what it does not read is kept there
    metas = {name: rec["meta"] for name, (_, rec) in got.items()}
    assert "history" not in metas["alpaca_history_system"] and "system" not in metas["alpaca_history_system"]
    assert "tools" not in metas["sharegpt_function_call"]
    assert metas["openai_tool_calls"]["parallel_tool_calls"] in (False, "False")
    assert float(metas["ultrafeedback_full_conversations"]["score_chosen"]) == 9.0
    assert result.kto == sum(1 for _, k, _ in SHAPES.values() if k == "kto")


def test_source_declares_its_own_field_names_and_role_tags(tmp_path):
    raw = write_jsonl(tmp_path / "raw" / "custom.jsonl", [MAPPED_RECORD])
    cfg = load_config(None, ())
    with pytest.raises(IngestRejected):  # without the mapping the record is not understood ...
        run_ingest(cfg, [Source(uri=str(raw))], tmp_path / "plain")
    assert read_jsonl(tmp_path / "plain.failed" / "quarantine.jsonl")[0]["reason"] == "unknown_format"

    assert run_ingest(cfg, [Source(uri=str(raw), **MAPPING)], tmp_path / "mapped").preference == 1  # ... with it
    [rec] = read_jsonl(tmp_path / "mapped" / "preference.jsonl")
    assert rec["prompt"] == [{"role": "user", "content": "Where is parcel ZX-118?"}]
    assert rec["chosen"][0]["role"] == "assistant" and rec["rejected"][0]["content"] == "No idea."


def test_mapping_in_params_yaml_and_a_bad_key_fails_naming_it(tmp_path):
    params = tmp_path / "params.yaml"
    source = {"uri": "raw/custom.jsonl", **MAPPING}
    params.write_text(json.dumps({"data": {"sources": [source]}}), encoding="utf-8")
    cfg = load_config(params, ())
    assert cfg.data.sources[0].columns["chosen"] == "better"
    params.write_text(json.dumps({"data": {"sources": [{**source, "columns": {"answer": "x"}}]}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.columns"):
        load_config(params, ())
    params.write_text(json.dumps({"data": {"sources": [{**source, "roles": {"agent": "robot"}}]}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.roles"):
        load_config(params, ())


def test_llamafactory_data_directory_is_read_through_its_dataset_info(tmp_path):
    """A directory with LLaMA-Factory's dataset_info.json: each entry's formatting, columns and tags apply;
    hub entries, missing files and unlisted files are reported as skipped, with why."""
    d = tmp_path / "lf"
    d.mkdir()
    (d / "chats.json").write_text(
        json.dumps(
            [
                {
                    "dialog": [
                        {"speaker": "customer", "text": "Where is parcel ZX-118?"},
                        {"speaker": "desk", "text": '{"name": "track_parcel", "arguments": {"code": "ZX-118"}}'},
                        {"speaker": "system_out", "text": '{"city": "Lyon"}'},
                        {"speaker": "agent", "text": "In Lyon."},
                    ],
                    "funcs": json.dumps([{"name": "track_parcel", "parameters": {"type": "object"}}]),
                }
            ]
        ),
        encoding="utf-8",
    )
    (d / "feedback.jsonl").write_text(
        json.dumps({"question": "Track ZX-118", "answer": "In Lyon.", "good": True}) + "\n", encoding="utf-8"
    )
    (d / "pairs.json").write_text(
        json.dumps([{"q": "Track ZX-118", "ctx": "", "win": "In Lyon.", "lose": "No idea."}]), encoding="utf-8"
    )
    (d / "notes.json").write_text("[]", encoding="utf-8")
    info = {
        "chats": {
            "file_name": "chats.json",
            "formatting": "sharegpt",
            "columns": {"messages": "dialog", "tools": "funcs"},
            "tags": {
                "role_tag": "speaker",
                "content_tag": "text",
                "user_tag": "customer",
                "assistant_tag": "agent",
                "function_tag": "desk",
                "observation_tag": "system_out",
            },
        },
        "feedback": {
            "file_name": "feedback.jsonl",
            "columns": {"prompt": "question", "response": "answer", "kto_tag": "good"},
        },
        "pairs": {
            "file_name": "pairs.json",
            "ranking": True,
            "columns": {"prompt": "q", "query": "ctx", "chosen": "win", "rejected": "lose"},
        },
        "from_hub": {"hf_hub_url": "someone/some-dataset"},
        "gone": {"file_name": "gone.json"},
    }
    (d / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")

    result = run_ingest(load_config(None, ()), [Source(uri=str(d))], tmp_path / "out")
    assert (result.sft, result.preference, result.kto, result.quarantined) == (1, 1, 1, 0)
    [chat] = read_jsonl(tmp_path / "out" / "sft.jsonl")
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert chat["messages"][1]["tool_calls"][0]["function"] == {"name": "track_parcel", "arguments": {"code": "ZX-118"}}
    assert chat["tools"][0]["function"]["name"] == "track_parcel"
    [kto] = read_jsonl(tmp_path / "out" / "kto.jsonl")
    assert kto["label"] is True and kto["completion"] == [{"role": "assistant", "content": "In Lyon."}]
    [pair] = read_jsonl(tmp_path / "out" / "preference.jsonl")
    assert (
        pair["prompt"] == [{"role": "user", "content": "Track ZX-118"}] and pair["rejected"][0]["content"] == "No idea."
    )
    skipped = "\n".join(result.skipped_files)
    assert "'from_hub' (a hub dataset (someone/some-dataset)" in skipped
    assert "gone.json (listed as 'gone'" in skipped and "notes.json (not listed in dataset_info.json)" in skipped


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "not json"}]},
            "invalid_tool_call",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]},
                ]
            },
            "invalid_tool_call",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": "[{]"},
            "invalid_tools",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "kto_tag": "maybe"},
            "invalid_label",
        ),
        ({"instruction": "q", "output": "a", "history": [["only one"]]}, "invalid_history"),
        (
            {
                "prompt": "q one",
                "chosen": [{"role": "user", "content": "q two"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "q two"}, {"role": "assistant", "content": "b"}],
            },
            "prompt_mismatch",
        ),
        (
            {
                "conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}],
                "images": ["x.png"],
            },
            "unsupported_modality",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "loss_weight": 0.0}]},
            "no_trained_turn",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}]},
            "invalid_weight",
        ),
        (
            {"prompt": "q", "chosen": [{"role": "assistant", "content": "a", "weight": 0}], "rejected": "b"},
            "invalid_weight",
        ),
        ({"question_id": 1, "category": "writing", "turns": ["Write a poem."]}, "no_answers"),
        ({"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: yo"}, "empty_content"),
    ],
)
def test_malformed_shapes_are_quarantined_with_a_reason(tmp_path, raw, code):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "raw" / "mixed.jsonl", [good, raw, good])
    cfg = load_config(None, ("data.max_bad_fraction=0.5",))
    result = run_ingest(cfg, [Source(uri=str(path))], tmp_path / "out")
    [q] = read_jsonl(tmp_path / "out" / "quarantine.jsonl")
    assert (q["line"], q["reason"]) == (2, code), q
    assert q["detail"] and q["file"].endswith("mixed.jsonl")
    assert result.sft == 2
