"""Our own records in every shape users bring (LLaMA-Factory, axolotl, TRL, OpenAI, hh-rlhf), each with
the canonical record ingest must make of it. The texts are ours; the shapes follow each project's docs.

``SHAPES``: name → (raw record, expected kind, expected canonical fields). Tests write them as JSONL,
a JSON array, CSV (list cells JSON-encoded) and Parquet, and compare what ingest writes.
"""

from __future__ import annotations

import json
from typing import Any

TOOLS = [
    {
        "name": "track_parcel",
        "description": "Where a parcel is now.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    }
]
OPENAI_TOOLS = [{"type": "function", "function": TOOLS[0]}]
CALL = {"name": "track_parcel", "arguments": {"code": "ZX-118"}}
CANON_CALL = {"type": "function", "function": CALL}
ASK = "Where is parcel ZX-118?"
RESULT = '{"city": "Lyon", "status": "in transit"}'
REPLY = "Parcel ZX-118 is in transit in Lyon."
SYSTEM = "You are the courier's help desk."


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


TOOL_CONVERSATION = [
    {"role": "system", "content": SYSTEM},
    u(ASK),
    a("", tool_calls=[CANON_CALL]),
    {"role": "tool", "content": RESULT, "name": "track_parcel"},
    a(REPLY),
]

SHAPES: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    # ---- tool calling
    "sharegpt_function_call": (
        {
            "conversations": [
                {"from": "human", "value": ASK},
                {"from": "function_call", "value": json.dumps(CALL)},
                {"from": "observation", "value": RESULT},
                {"from": "gpt", "value": REPLY},
            ],
            "system": SYSTEM,
            "tools": json.dumps(TOOLS),  # LLaMA-Factory: a JSON string of bare schemas
        },
        "sft",
        {"messages": TOOL_CONVERSATION, "tools": OPENAI_TOOLS},
    ),
    "openai_tool_calls": (
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                u(ASK),
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_7",
                            "type": "function",
                            "function": {**CALL, "arguments": json.dumps(CALL["arguments"])},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_7", "content": RESULT},
                a(REPLY),
            ],
            "tools": OPENAI_TOOLS,
            "parallel_tool_calls": False,
        },
        "sft",
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                u(ASK),
                a("", tool_calls=[{**CANON_CALL, "id": "call_7"}]),
                {"role": "tool", "content": RESULT, "tool_call_id": "call_7", "name": "track_parcel"},
                a(REPLY),
            ],
            "tools": OPENAI_TOOLS,
        },
    ),
    "value_parts_reasoning_tool_call": (
        {
            "messages": [
                {"role": "system", "content": [{"type": "text", "value": SYSTEM}]},
                {"role": "user", "content": [{"type": "text", "value": ASK}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "reasoning", "value": "The code is given; look it up."},
                        {"type": "tool_call", "value": json.dumps(CALL)},
                    ],
                },
                {"role": "tool", "content": [{"type": "text", "value": RESULT}]},
                {"role": "assistant", "content": [{"type": "text", "value": REPLY}], "loss_weight": 1.0},
            ],
            "tools": json.dumps(OPENAI_TOOLS),
        },
        "sft",
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                u(ASK),
                a("", reasoning_content="The code is given; look it up.", tool_calls=[CANON_CALL]),
                {"role": "tool", "content": RESULT, "name": "track_parcel"},
                a(REPLY),
            ],
            "tools": OPENAI_TOOLS,
        },
    ),
    # ---- SFT
    "alpaca_history_system": (
        {
            "instruction": "And to Lyon?",
            "input": "",
            "output": "Two days to Lyon.",
            "system": SYSTEM,
            "history": [["How long to Paris?", "One day to Paris."], ["And to Nice?", "Three days to Nice."]],
        },
        "sft",
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                u("How long to Paris?"),
                a("One day to Paris."),
                u("And to Nice?"),
                a("Three days to Nice."),
                u("And to Lyon?"),
                a("Two days to Lyon."),
            ]
        },
    ),
    # ---- preference (DPO)
    "sharegpt_preference": (
        {
            "conversations": [
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello!"},
                {"from": "human", "value": ASK},
            ],
            "chosen": {"from": "gpt", "value": REPLY},
            "rejected": {"from": "gpt", "value": "No idea."},
        },
        "preference",
        {"prompt": [u("Hi"), a("Hello!"), u(ASK)], "chosen": [a(REPLY)], "rejected": [a("No idea.")]},
    ),
    "axolotl_chat_template_dpo": (
        {"messages": [u(ASK)], "chosen": a(REPLY), "rejected": a("No idea."), "system": SYSTEM},
        "preference",
        {"prompt": [{"role": "system", "content": SYSTEM}, u(ASK)], "chosen": [a(REPLY)], "rejected": [a("No idea.")]},
    ),
    "alpaca_preference": (
        {"instruction": "Track it", "input": "ZX-118", "chosen": REPLY, "rejected": "No idea.", "system": SYSTEM},
        "preference",
        {
            "prompt": [{"role": "system", "content": SYSTEM}, u("Track it\nZX-118")],
            "chosen": [a(REPLY)],
            "rejected": [a("No idea.")],
        },
    ),
    "ultrafeedback_full_conversations": (
        {"prompt": ASK, "chosen": [u(ASK), a(REPLY)], "rejected": [u(ASK), a("No idea.")], "score_chosen": 9.0},
        "preference",
        {"prompt": [u(ASK)], "chosen": [a(REPLY)], "rejected": [a("No idea.")]},
    ),
    "intel_system_question": (
        {"system": SYSTEM, "question": ASK, "chosen": REPLY, "rejected": "No idea."},
        "preference",
        {"prompt": [{"role": "system", "content": SYSTEM}, u(ASK)], "chosen": [a(REPLY)], "rejected": [a("No idea.")]},
    ),
    "hh_rlhf_transcripts": (
        {
            "chosen": f"\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: {ASK}\n\nAssistant: {REPLY}",
            "rejected": f"\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: {ASK}\n\nAssistant: No idea.",
        },
        "preference",
        {"prompt": [u("Hi"), a("Hello!"), u(ASK)], "chosen": [a(REPLY)], "rejected": [a("No idea.")]},
    ),
    "v1_chosen_messages": (
        {
            "chosen_messages": [
                {"role": "user", "content": [{"type": "text", "value": ASK}], "loss_weight": 0.0},
                {"role": "assistant", "content": [{"type": "text", "value": REPLY}], "loss_weight": 1.0},
            ],
            "rejected_messages": [
                {"role": "user", "content": [{"type": "text", "value": ASK}], "loss_weight": 0.0},
                {"role": "assistant", "content": [{"type": "text", "value": "No idea."}], "loss_weight": 1.0},
            ],
        },
        "preference",
        {"prompt": [u(ASK)], "chosen": [a(REPLY)], "rejected": [a("No idea.")]},
    ),
    # ---- KTO (unpaired)
    "llamafactory_kto_messages": (
        {"messages": [u(ASK), a("No idea.")], "label": False},
        "kto",
        {"prompt": [u(ASK)], "completion": [a("No idea.")], "label": False},
    ),
    "sharegpt_kto_tag": (
        {"conversations": [{"from": "human", "value": ASK}, {"from": "gpt", "value": REPLY}], "kto_tag": True},
        "kto",
        {"prompt": [u(ASK)], "completion": [a(REPLY)], "label": True},
    ),
    "axolotl_kto_strings": (
        {"prompt": ASK, "completion": REPLY, "label": True},
        "kto",
        {"prompt": [u(ASK)], "completion": [a(REPLY)], "label": True},
    ),
    "argilla_kto_completion_messages": (
        {"prompt": ASK, "completion": [u(ASK), a("No idea.")], "label": False},
        "kto",
        {"prompt": [u(ASK)], "completion": [a("No idea.")], "label": False},
    ),
    # ---- round three: OpenAI preference and legacy functions, TRL prompt-completion, reasoning roles
    "openai_preference": (
        {
            "input": {
                "messages": [{"role": "developer", "content": SYSTEM}, u(ASK)],
                "tools": OPENAI_TOOLS,
                "parallel_tool_calls": True,
            },
            "preferred_output": [a(REPLY)],
            "non_preferred_output": [a("No idea.")],
        },
        "preference",
        {
            "prompt": [{"role": "system", "content": SYSTEM}, u(ASK)],
            "chosen": [a(REPLY)],
            "rejected": [a("No idea.")],
            "tools": OPENAI_TOOLS,
        },
    ),
    "openai_legacy_functions": (
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                u(ASK),
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {**CALL, "arguments": json.dumps(CALL["arguments"])},
                },
                {"role": "function", "name": "track_parcel", "content": RESULT},
                a(REPLY),
            ],
            "functions": TOOLS,
        },
        "sft",
        {"messages": TOOL_CONVERSATION, "tools": OPENAI_TOOLS},
    ),
    "trl_prompt_completion_conversational": (
        {"prompt": [{"role": "system", "content": SYSTEM}, u(ASK)], "completion": [a(REPLY)]},
        "sft",
        {"messages": [{"role": "system", "content": SYSTEM}, u(ASK), a(REPLY)]},
    ),
    "trl_prompt_completion_standard": (
        {"prompt": ASK, "completion": REPLY},
        "sft",
        {"messages": [u(ASK), a(REPLY)]},
    ),
    # ---- per-turn training weights: a 0 keeps the turn as context, never a target
    "openai_weight": (
        {"messages": [u("Hi"), a("Hello, how can I help?", weight=0), u(ASK), a(REPLY, weight=1)]},
        "sft",
        {"messages": [u("Hi"), a("Hello, how can I help?", weight=0), u(ASK), a(REPLY)]},
    ),
    "llamafactory_v1_loss_weight": (
        {"messages": [u("Hi"), a("Hello.", loss_weight=0.0), u(ASK), a(REPLY, loss_weight=1.0)]},
        "sft",
        {"messages": [u("Hi"), a("Hello.", weight=0), u(ASK), a(REPLY)]},
    ),
    "axolotl_training_flag": (
        {
            "conversations": [
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello.", "training": False},
                {"from": "human", "value": ASK},
                {"from": "gpt", "value": REPLY, "training": True},
            ]
        },
        "sft",
        {"messages": [u("Hi"), a("Hello.", weight=0), u(ASK), a(REPLY)]},
    ),
    "developer_role_thinking": (
        {
            "messages": [
                {"role": "developer", "content": SYSTEM},
                u(ASK),
                {"role": "assistant", "content": REPLY, "thinking": "The tracker says Lyon."},
            ]
        },
        "sft",
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                u(ASK),
                a(REPLY, reasoning_content="The tracker says Lyon."),
            ]
        },
    ),
}

# A source with its own names, declared in params.yaml (axolotl's field_messages / message_property_mappings).
MAPPED_RECORD = {
    "dialogue": [{"speaker": "customer", "text": ASK}],
    "better": {"speaker": "agent", "text": REPLY},
    "worse": {"speaker": "agent", "text": "No idea."},
}
MAPPING = {
    "columns": {"messages": "dialogue", "chosen": "better", "rejected": "worse"},
    "role_key": "speaker",
    "content_key": "text",
    "roles": {"customer": "user", "agent": "assistant"},
}


def flat(raw: dict[str, Any]) -> dict[str, Any]:
    """A record as a CSV row: lists and objects JSON-encoded, as users export them."""
    return {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in raw.items()}
