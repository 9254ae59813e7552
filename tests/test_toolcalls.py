"""tuneline's tool-call scorer against the Berkeley Function Calling Leaderboard's own AST checker.

BFCL v4's questions and possible answers (simple, multiple, parallel, parallel-multiple, irrelevance) come from
the ``bfcl-eval`` wheel, installed with ``--no-deps`` by ``make setup``; its checker module is imported from the
installed package, with the one module it imports that pulls in vendor SDKs (``constants.model_config``, read
only to rename dotted functions for models that cannot call them) stood in for by a local model's entry. On each
question, answers built from the possible answer (right, and wrong in each way BFCL tells apart) get the same
verdict from both.
"""

from __future__ import annotations

import copy
import importlib
import json
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tuneline.stages.evaluate.toolcalls import (
    ExpectedCall,
    calls_of_message,
    check_turn,
    expected_from_calls,
    parse_calls,
)

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
PER_CATEGORY = 60


def bfcl() -> tuple[Path, Any]:
    """BFCL's data directory and its ``ast_checker`` module, or a skip naming what to install."""
    try:
        spec = importlib.util.find_spec("bfcl_eval")
    except ValueError:
        spec = None
    if spec is None or spec.origin is None:
        pytest.skip("bfcl-eval is not installed (make setup installs it with --no-deps)")
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {"local": types.SimpleNamespace(underscore_to_dot=False)}
    sys.modules.setdefault("bfcl_eval.constants.model_config", stub)
    checker = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    return Path(spec.origin).parent / "data", checker


def load(data: Path, category: str) -> list[tuple[dict, list]]:
    questions = [json.loads(line) for line in (data / f"BFCL_v4_{category}.json").open()]
    answers_file = data / "possible_answer" / f"BFCL_v4_{category}.json"
    answers = (
        {a["id"]: a["ground_truth"] for a in map(json.loads, answers_file.open())} if answers_file.exists() else {}
    )
    return [(q, answers.get(q["id"], [])) for q in questions]


def right_answer(truth: list[dict], rng: random.Random) -> list[dict]:
    """One answer BFCL accepts: each parameter's first acceptable value, optional ones given or left out."""
    calls = []
    for expected in truth:
        [(name, params)] = expected.items()
        args = {}
        for param, accepted in params.items():
            values = [v for v in accepted if v != ""]
            if values and ("" not in accepted or rng.random() < 0.5):
                args[param] = copy.deepcopy(values[0])
        calls.append({name: args})
    return calls


def mutations(answer: list[dict], function: list[dict], rng: random.Random) -> list[tuple[str, list[dict]]]:
    """The right answer, and variants BFCL accepts or refuses for each reason it has."""
    out = [("right", answer)]
    first = copy.deepcopy(answer)
    [(name, args)] = first[0].items()
    schema = next(f for f in function if f["name"] == name)
    out.append(("wrong name", [{name + "_v2": args}, *first[1:]]))
    required = schema["parameters"].get("required", [])
    if required:
        out.append(("missing required", [{name: {k: v for k, v in args.items() if k != required[0]}}, *first[1:]]))
    out.append(("extra parameter", [{name: {**args, "unknown_flag": True}}, *first[1:]]))
    out.append(("no call", []))
    out.append(("one call too many", [*first, first[0]]))
    if len(first) > 1:
        out.append(("reordered", list(reversed(first))))
    for param, value in args.items():
        kind = schema["parameters"]["properties"][param].get("type")
        if isinstance(value, bool):
            out.append(("flipped bool", [{name: {**args, param: not value}}, *first[1:]]))
        elif isinstance(value, int):
            out.append(("int as string", [{name: {**args, param: str(value)}}, *first[1:]]))
            out.append(("int off by one", [{name: {**args, param: value + 1}}, *first[1:]]))
        elif isinstance(value, float):
            if value == int(value):
                out.append(("float written as int", [{name: {**args, param: int(value)}}, *first[1:]]))
            out.append(("float changed", [{name: {**args, param: value * 2 + 1}}, *first[1:]]))
        elif isinstance(value, str) and value:
            out.append(("string case and spacing", [{name: {**args, param: value.upper() + " "}}, *first[1:]]))
            out.append(("string changed", [{name: {**args, param: value + "zz"}}, *first[1:]]))
        elif isinstance(value, list):
            out.append(("list shortened", [{name: {**args, param: value[:-1]}}, *first[1:]]))
            if value and isinstance(value[0], str):
                out.append(("list item as number", [{name: {**args, param: [7, *value[1:]]}}, *first[1:]]))
        elif isinstance(value, dict) and value:
            key = next(iter(value))
            out.append(
                (
                    "dict key dropped",
                    [{name: {**args, param: {k: v for k, v in value.items() if k != key}}}, *first[1:]],
                )
            )
        if kind and rng.random() < 0.3:
            out.append(("value as object", [{name: {**args, param: {"v": 1}}}, *first[1:]]))
    return out


def ours(function: list[dict], answer: list[dict], truth: list[dict]) -> bool:
    calls = [{"name": name, "arguments": args} for call in answer for name, args in call.items()]
    expected = [ExpectedCall(name, params) for e in truth for name, params in e.items()]
    return check_turn(function, calls, expected).valid


def test_tuneline_and_bfcl_agree_on_every_answer():
    data, checker = bfcl()
    rng = random.Random(0)
    compared: dict[str, int] = {}
    disagreements = []
    for category in CATEGORIES:
        for question, truth in rng.sample(load(data, category), PER_CATEGORY):
            function = question["function"]
            for label, answer in mutations(right_answer(truth, rng), function, rng):
                theirs = checker.ast_checker(function, answer, truth, checker.Language.PYTHON, category, "local")[
                    "valid"
                ]
                if ours(function, answer, truth) != theirs:
                    disagreements.append((question["id"], label, answer, theirs))
                compared[label] = compared.get(label, 0) + 1
    assert not disagreements, disagreements[:5]
    assert sum(compared.values()) >= 1500, compared
    # the variants are not all one verdict: BFCL accepts some (case, int-for-float, order) and refuses the rest
    assert {"right", "wrong name", "missing required", "extra parameter", "int as string", "string changed"} <= set(
        compared
    )


def test_irrelevance_is_right_only_without_a_call():
    data, _ = bfcl()
    for question, truth in load(data, "irrelevance")[:50]:
        assert truth == [] and ours(question["function"], [], []) is True
        fn = question["function"][0]
        made_up = [{fn["name"]: {p: 1 for p in fn["parameters"].get("required", [])}}]
        assert ours(question["function"], made_up, []) is False


def test_answers_are_parsed_from_the_templates_tool_call_blocks():
    text = (
        'Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": "{\\"tz\\": \\"CET\\"}"}\n</tool_call>'
    )
    parsed = parse_calls(text)
    assert parsed.parse_error is None
    assert parsed.calls == [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_time", "arguments": {"tz": "CET"}},
    ]
    assert parse_calls("The weather is fine.").calls == []
    broken = parse_calls('<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>')
    assert broken.calls == [] and "not valid JSON" in broken.parse_error
    unterminated = parse_calls('<tool_call>{"name": "f", "arguments": {}}')  # cut at max_new_tokens
    assert unterminated.calls == [{"name": "f", "arguments": {}}]


def test_a_records_own_call_is_the_reference():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "create_order",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "item": {"type": "string"},
                        "quantity": {"type": "integer"},
                        "express": {"type": "boolean"},
                        "price": {"type": "number"},
                    },
                    "required": ["item", "quantity"],
                },
            },
        }
    ]
    message = {
        "role": "assistant",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "create_order", "arguments": '{"item": "Lamp", "quantity": 2, "price": 3}'},
            }
        ],
    }
    expected = expected_from_calls(calls_of_message(message), tools)
    assert expected == [
        ExpectedCall("create_order", {"item": ["Lamp"], "quantity": [2], "price": [3], "express": [""]})
    ]

    def verdict(args: dict) -> tuple[bool, str]:
        v = check_turn(tools, [{"name": "create_order", "arguments": args}], expected)
        return v.valid, v.error_type

    assert verdict({"item": "lamp", "quantity": 2, "price": 3.0}) == (True, "")  # case; 3.0 for a number
    assert verdict({"item": "Lamp", "quantity": 2}) == (False, "missing_optional")
    assert verdict({"item": "Lamp", "price": 3}) == (False, "missing_required")
    assert verdict({"item": "Lamp", "quantity": "2", "price": 3}) == (False, "type_error")
    assert verdict({"item": "Lamp", "quantity": 2, "price": 3, "express": True}) == (False, "value_error:others")
    assert verdict({"item": "Lamp", "quantity": 2, "price": 3, "colour": "red"}) == (False, "unexpected_param")
    assert not check_turn(tools, [], expected).valid
    assert not check_turn(tools, [{"name": "create_order", "arguments": {}}], []).valid  # a call where none belongs
