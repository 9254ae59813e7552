"""Raw record → canonical record: every format, every validation error."""

from __future__ import annotations

import pytest

from tuneline.stages.ingest.formats import RecordError, canonicalize


def canon(obj, fmt="auto"):
    return canonicalize(obj, fmt, "id1", "src.jsonl", {"line": 1})


def test_openai_messages_with_text_parts_and_name():
    kind, rec = canon(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "there"}],
                    "name": "ann",
                },
                {"role": "assistant", "content": "hi"},
            ],
            "category": "greeting",
            "id": 9,
        }
    )
    assert kind == "sft"
    assert rec["messages"][1] == {"role": "user", "content": "hello there", "name": "ann"}
    assert rec["meta"] == {"format": "messages", "line": 1, "category": "greeting", "source_id": 9}
    assert rec["id"] == "id1" and rec["source"] == "src.jsonl"


def test_sharegpt_roles_are_mapped():
    _, rec = canon({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "sys"})
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
    assert rec["meta"]["format"] == "sharegpt"


@pytest.mark.parametrize(
    ("extra", "user"),
    # LLaMA-Factory's join: one newline; an empty input is left out, a blank one is kept as it keeps it
    [({"input": "ctx"}, "do it\nctx"), ({"input": ""}, "do it"), ({}, "do it"), ({"input": " "}, "do it\n ")],
)
def test_alpaca(extra, user):
    _, rec = canon({"instruction": "do it", "output": "done", **extra})
    assert rec["messages"] == [{"role": "user", "content": user}, {"role": "assistant", "content": "done"}]


def test_preference_from_strings_and_from_implicit_prompt():
    kind, rec = canon({"prompt": "2+2?", "chosen": "4", "rejected": "5"})
    assert kind == "preference"
    assert rec["prompt"] == [{"role": "user", "content": "2+2?"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "4"}]
    q = {"role": "user", "content": "2+2?"}
    _, rec = canon(
        {"chosen": [q, {"role": "assistant", "content": "4"}], "rejected": [q, {"role": "assistant", "content": "5"}]}
    )
    assert rec["prompt"] == [q] and rec["rejected"] == [{"role": "assistant", "content": "5"}]


def test_format_override_wins_over_detection():
    # a record with both messages and instruction keys is read as alpaca when the source says so
    _, rec = canon({"instruction": "i", "output": "o", "messages": "ignored"}, fmt="alpaca")
    assert rec["meta"]["format"] == "alpaca" and rec["meta"]["messages"] == "ignored"


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"messages": None}, "missing_messages"),
        ({"messages": []}, "missing_messages"),
        ({"messages": "text"}, "missing_messages"),
        ({"messages": ["hi", {"role": "assistant", "content": "x"}]}, "invalid_message"),
        ({"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}, "missing_role"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}, "missing_content"),
        ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "unknown_role"),
        ({"messages": [{"role": "user", "content": " \n"}, {"role": "assistant", "content": "y"}]}, "empty_content"),
        ({"messages": [{"role": "user", "content": "x"}]}, "no_final_assistant"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                    {"role": "assistant", "content": "y"},
                ]
            },
            "unsupported_content",
        ),
        ({"conversations": [{"from": "alien", "value": "x"}, {"from": "gpt", "value": "y"}]}, "unknown_role"),
        ({"instruction": "x", "output": ""}, "empty_content"),
        ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen_equals_rejected"),
        ({"prompt": "p", "chosen": "a", "rejected": None}, "missing_messages"),
        ({"text": "plain"}, "unknown_format"),
        (["a", "list"], "not_an_object"),
        ("a string", "not_an_object"),
    ],
)
def test_validation_errors_have_stable_codes(obj, code):
    with pytest.raises(RecordError) as exc:
        canon(obj)
    assert exc.value.code == code
    assert str(exc.value)  # a human-readable message
