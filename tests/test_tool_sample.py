"""`tuneline sample --task tools`: tool-calling records the pipeline reads as they are, with calls their tools allow."""

from __future__ import annotations

import json
from collections import Counter

from tuneline.config import load_config
from tuneline.stages.evaluate.answers import load_examples
from tuneline.stages.evaluate.toolcalls import check_turn, tool_schema
from tuneline.stages.ingest.run import run_ingest
from tuneline.tool_sample import write_tool_sample


def test_tool_records_ingest_whole_and_every_call_fits_its_tools(tmp_path) -> None:
    (path,) = write_tool_sample(tmp_path / "raw", n=200, seed=3)
    assert path.read_bytes() == write_tool_sample(tmp_path / "again", n=200, seed=3)[0].read_bytes(), "seeded"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = Counter(len(r["messages"][-1].get("tool_calls") or []) for r in records)
    assert set(kinds) == {0, 1, 2} and kinds[1] > kinds[2] > 0 and kinds[0] > 0  # single, parallel, no call
    for r in records:
        names = {tool_schema(t)["name"] for t in r["tools"]}
        calls = r["messages"][-1].get("tool_calls") or []
        assert {c["function"]["name"] for c in calls} <= names, "a call only of a tool the record offers"
        for call in calls:
            schema = tool_schema(next(t for t in r["tools"] if tool_schema(t)["name"] == call["function"]["name"]))
            args = json.loads(call["function"]["arguments"])
            assert set(schema["parameters"]["required"]) <= set(args) <= set(schema["parameters"]["properties"])

    config = load_config(None, ("clean.workers=1", f"paths.raw={tmp_path / 'raw'}"))
    report = run_ingest(config, None, tmp_path / "ingested")
    assert report.sft == 200 and report.quarantined == 0, report
    # the records as evaluate asks them: each right answer is right by BFCL's rules, no call where none belongs
    (tmp_path / "split" / "sft").mkdir(parents=True)
    (tmp_path / "ingested" / "sft.jsonl").replace(tmp_path / "split" / "sft" / "test.jsonl")
    examples = load_examples(tmp_path / "split", "test", None).tools
    assert len(examples) == 200
    for e in examples:
        assert check_turn(e.tools, e.reference, e.expected).valid
        assert check_turn(e.tools, [], e.expected).valid == (not e.expected)
