"""Ingest on the public samples of other projects (../shared/realdata: LLaMA-Factory, axolotl, OpenAI's
cookbook, FastChat, hh-rlhf), checked record by record, not only by count. Skips where the folder is absent:
these files are not ours and are never copied into the repo."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO, read_jsonl
from tuneline.config import load_config
from tuneline.config.schema import Source
from tuneline.stages.ingest import run_ingest

REAL = REPO.parent / "shared" / "realdata"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata is absent (public samples, CI only)")
LF = REAL / "LLaMA-Factory"


def ingest(tmp_path: Path, *sources: Source | str, bad: float = 1.0):
    cfg = load_config(None, (f"data.max_bad_fraction={bad}",))
    srcs = [s if isinstance(s, Source) else Source(uri=str(s)) for s in sources]
    result = run_ingest(cfg, srcs, tmp_path / "out")
    out = {k: read_jsonl(tmp_path / "out" / f"{k}.jsonl") for k in ("sft", "preference", "kto", "quarantine")}
    return result, out


def test_llamafactory_data_dir_through_dataset_info(tmp_path):
    result, out = ingest(tmp_path, LF / "data")
    by_file = Counter(Path(r["source"]).name for k in ("sft", "preference", "kto") for r in out[k])
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json", "identity.json", "glaive_toolcall_zh_demo.json"):
        assert by_file[name] == len(json.loads((LF / "data" / name).read_text())), name
    assert by_file["glaive_toolcall_en_demo.json"] == 300
    assert Counter(Path(r["source"]).name for r in out["preference"]) == {
        "dpo_en_demo.json": 300,
        "dpo_zh_demo.json": 300,
    }
    assert Counter(Path(r["source"]).name for r in out["kto"]) == {"kto_en_demo.json": 300}
    # mllm_demo has images: refused by name, not trained on with a dangling <image> placeholder
    reasons = Counter((Path(q["file"]).name, q["reason"]) for q in out["quarantine"])
    assert reasons[("mllm_demo.json", "unsupported_modality")] == 6
    skipped = "\n".join(result.skipped_files)
    assert "'alpaca_en' (a hub dataset (llamafactory/alpaca_en)" in skipped
    assert "v1_sft_demo.jsonl (not listed in dataset_info.json)" in skipped
    assert "'c4_demo' (a pretraining corpus" in skipped

    # tool calls: the model's own call is an assistant turn with a structured call; the result is the tool's
    glaive = [r for r in out["sft"] if r["source"].endswith("glaive_toolcall_en_demo.json")]
    with_call = next(r for r in glaive if any(m.get("tool_calls") for m in r["messages"]))
    i = next(i for i, m in enumerate(with_call["messages"]) if m.get("tool_calls"))
    call = with_call["messages"][i]
    assert call["role"] == "assistant" and isinstance(call["tool_calls"][0]["function"]["arguments"], dict)
    assert with_call["messages"][i + 1]["role"] == "tool"
    assert with_call["messages"][i + 1]["name"] == call["tool_calls"][0]["function"]["name"]
    assert all(t["type"] == "function" and t["function"]["name"] for t in with_call["tools"])
    raw = json.loads((LF / "data" / "glaive_toolcall_en_demo.json").read_text())
    calls = sum(t["from"] == "function_call" for r in raw for t in r["conversations"])
    assert calls == sum(1 for r in glaive for m in r["messages"] if m.get("tool_calls")), "every call kept"

    # preference: the shared conversation is the prompt, the one-message answers are the answers
    dpo = json.loads((LF / "data" / "dpo_en_demo.json").read_text())[0]
    first = next(r for r in out["preference"] if r["source"].endswith("dpo_en_demo.json") and r["meta"]["row"] == 0)
    assert [m["content"] for m in first["prompt"]] == [t["value"] for t in dpo["conversations"]]
    assert first["chosen"] == [{"role": "assistant", "content": dpo["chosen"]["value"]}]
    # KTO: labels kept as given, both kinds present
    kto = json.loads((LF / "data" / "kto_en_demo.json").read_text())
    assert [r["label"] for r in sorted(out["kto"], key=lambda r: r["meta"]["row"])] == [r["label"] for r in kto]
    # Chinese text arrives unchanged
    zh = json.loads((LF / "data" / "alpaca_zh_demo.json").read_text())[0]
    rec = next(r for r in out["sft"] if r["source"].endswith("alpaca_zh_demo.json") and r["meta"]["row"] == 0)
    assert rec["messages"][-1]["content"] == zh["output"]


def test_llamafactory_files_outside_dataset_info(tmp_path):
    _, out = ingest(
        tmp_path,
        LF / "data" / "reason_tool_use_demo_50.jsonl",
        LF / "data" / "v1_sft_demo.jsonl",
        LF / "data" / "v1_dpo_demo.jsonl",
        LF / "docs_examples" / "alpaca_system_history.json",
    )
    reasoning = [r for r in out["sft"] if r["source"].endswith("reason_tool_use_demo_50.jsonl")]
    raw_tools = [json.loads(line).get("tools") for line in (LF / "data" / "reason_tool_use_demo_50.jsonl").open()]
    assert len(reasoning) == 50
    assert sum(bool(r.get("tools")) for r in reasoning) == sum(t not in (None, "", "[]") for t in raw_tools)
    turns = [m for r in reasoning for m in r["messages"]]
    assert any(m.get("reasoning_content") and m.get("tool_calls") for m in turns), "reasoning + call in one turn"
    assert not any("reasoning" in m["content"][:20] for m in turns)
    assert len([r for r in out["sft"] if r["source"].endswith("v1_sft_demo.jsonl")]) > 0
    v1 = [r for r in out["preference"] if r["source"].endswith("v1_dpo_demo.jsonl")]
    assert v1 and all(r["prompt"][-1]["role"] == "user" and len(r["chosen"]) == 1 for r in v1)
    [history] = [r for r in out["sft"] if r["source"].endswith("alpaca_system_history.json")]
    assert [m["role"] for m in history["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert history["messages"][1]["content"] == "user instruction in the first round (optional)"


def test_axolotl_fixtures(tmp_path):
    ps = REAL / "axolotl" / "tests" / "prompt_strategies"
    _, out = ingest(tmp_path, ps)
    tool = next(r for r in out["sft"] if "toolcalling" in r["source"])
    assert [m["role"] for m in tool["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert tool["messages"][2]["tool_calls"][0]["function"]["arguments"] == {
        "location": "Paris, France",
        "unit": "celsius",
    }
    dpo = next(
        r for r in out["preference"] if r["source"].endswith("test_dpo_chat_templates__fixture_assistant_dataset.jsonl")
    )
    assert [m["content"] for m in dpo["prompt"]] == ["hello", "hello", "goodbye"]
    assert dpo["chosen"] == [{"role": "assistant", "content": "goodbye"}]
    assert sorted(r["source"].rsplit("__", 1)[1] for r in out["kto"]) == [
        "test_argilla_chat_reads_completion_messages.jsonl",
        "test_documented_config.jsonl",
    ]
    argilla = next(r for r in out["kto"] if "argilla" in r["source"])
    assert argilla["prompt"] == [{"role": "user", "content": "What is 2 + 2?"}], "the prompt is not duplicated"
    reasons = {Path(q["file"]).name: q["reason"] for q in out["quarantine"]}
    # its own field names and a custom tool role: refused until the source declares them ...
    assert reasons["test_dpo_chat_templates__fixture_custom_assistant_dataset.jsonl"] == "unknown_format"
    assert reasons["test_dpo_chat_templates__test_tool_role_custom_mapping_preserved.jsonl"] == "unknown_role"
    # ... and read once it does (axolotl's field_messages / message_property_mappings / roles)
    custom = Source(
        uri=str(ps / "test_dpo_chat_templates__fixture_custom_assistant_dataset.jsonl"),
        columns={"messages": "conversation", "chosen": "better", "rejected": "worse"},
        role_key="speaker",
        content_key="text",
        roles={"human": "user", "agent": "assistant"},
    )
    tool_role = Source(
        uri=str(ps / "test_dpo_chat_templates__test_tool_role_custom_mapping_preserved.jsonl"),
        roles={"tool_result": "tool"},
    )
    _, mapped = ingest(tmp_path / "m", custom, tool_role)
    assert len(mapped["preference"]) == 2 and not mapped["quarantine"]
    assert [m["role"] for m in mapped["preference"][1]["prompt"]] == ["user", "tool"]


def test_openai_cookbook_and_fastchat_and_hh_rlhf(tmp_path):
    cook = REAL / "openai-cookbook" / "examples" / "data"
    _, out = ingest(
        tmp_path,
        cook,
        REAL / "FastChat" / "data" / "dummy_conversation.json",
        REAL / "hh-rlhf" / "harmless-base" / "test.jsonl.gz",
    )
    drone = [r for r in out["sft"] if "drone" in r["source"]]
    assert len(drone) == 2 and drone[0]["messages"][-1]["tool_calls"][0]["function"]["arguments"] == {"altitude": 100}
    assert drone[0]["tools"][0]["function"]["name"] and "tools" not in drone[0]["meta"]
    assert drone[0]["meta"]["parallel_tool_calls"] is False
    hh = [r for r in out["preference"] if "hh-rlhf" in r["source"]]
    assert len(hh) + sum("hh-rlhf" in q["file"] for q in out["quarantine"]) == 2312
    assert len(hh) > 2250
    first = min(hh, key=lambda r: r["meta"]["line"])
    assert first["prompt"][0] == {"role": "user", "content": "what are some pranks with a pen i can do?"}
    assert [m["role"] for m in first["prompt"]] == ["user", "assistant", "user", "assistant", "user"]
    assert len(first["chosen"]) == 1 and "Human:" not in first["chosen"][0]["content"]
    assert all("\n\nHuman:" not in m["content"] for r in hh for m in r["prompt"] + r["chosen"] + r["rejected"])
    fastchat = [r for r in out["sft"] if "dummy_conversation" in r["source"]]
    raw = json.loads((REAL / "FastChat" / "data" / "dummy_conversation.json").read_text())
    assert len(fastchat) == len(raw) and fastchat[0]["meta"]["source_id"] == "identity_0"


def test_mt_bench_questions_are_refused_as_eval_prompts(tmp_path):
    q = REAL / "FastChat" / "fastchat" / "llm_judge" / "data" / "mt_bench" / "question.jsonl"
    cfg = load_config(None, ())
    with pytest.raises(Exception, match="no valid records"):
        run_ingest(cfg, [Source(uri=str(q))], tmp_path / "out")
    reasons = {r["reason"] for r in read_jsonl(tmp_path / "out.failed" / "quarantine.jsonl")}
    assert reasons == {"no_answers"}


@pytest.mark.parametrize(
    ("original", "derived", "kind"),
    [
        ("alpaca_en_demo.json", "alpaca_en_demo.csv", "sft"),
        ("glaive_toolcall_en_demo.json", "glaive_toolcall_en_demo.csv", "sft"),
        ("glaive_toolcall_en_demo.json", "glaive_toolcall_en_demo.parquet", "sft"),
        ("kto_en_demo.json", "kto_en_demo.parquet", "kto"),
        ("dpo_en_demo.json", "dpo_en_demo.parquet", "preference"),
    ],
)
def test_csv_and_parquet_copies_ingest_exactly_like_the_json_originals(tmp_path, original, derived, kind):
    def body(records):
        return [{k: v for k, v in r.items() if k not in ("id", "source", "meta")} for r in records]

    _, a = ingest(tmp_path / "a", LF / "data" / original)
    _, b = ingest(tmp_path / "b", REAL / "derived" / derived)
    assert not b["quarantine"]
    assert len(b[kind]) == len(a[kind]) > 0 and body(b[kind]) == body(a[kind])


def test_derived_preference_shapes_state_the_prompt_once(tmp_path):
    _, out = ingest(
        tmp_path,
        REAL / "derived" / "ultra_shaped.jsonl",
        REAL / "derived" / "intel_shaped.jsonl",
        REAL / "derived" / "prompt_pairs_shaped.jsonl",
    )
    assert len(out["preference"]) == 4 and not out["quarantine"]
    for rec in out["preference"]:
        assert rec["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in rec["chosen"]] == ["assistant"] == [m["role"] for m in rec["rejected"]]
        if "intel" in rec["source"] or "prompt_pairs" in rec["source"]:
            assert rec["prompt"][0]["role"] == "system", "the system field reaches the prompt"
