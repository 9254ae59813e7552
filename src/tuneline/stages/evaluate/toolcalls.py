"""Tool calls scored the way the Berkeley Function Calling Leaderboard scores them.

A model's answer to a prompt with tools is parsed into calls (the ``<tool_call>`` JSON blocks of the
Hermes/Qwen/ChatML convention tuneline's template trains, or a server's ``tool_calls``) and compared with what
the reference allows, by the rules of BFCL's AST checker (``bfcl_eval/eval_checker/ast_eval``; Python
semantics): the function name; every required parameter present; no parameter outside the schema or the
reference; each value of the schema's type (an integer passes as a float, a tuple as a list; nested list items
checked one level deep) and among the acceptable values (strings compared without case, spaces and ``,./-_*^``;
dicts key by key; lists item by item); an optional parameter either omitted where the reference allows it or
given a value the reference accepts. Several calls in one turn are matched as a multiset (parallel calls), and
where the reference makes no call, making one is wrong (irrelevance).

The reference is BFCL's "possible answer" form: for each expected call, each parameter's list of acceptable
values, ``""`` among them meaning "may be omitted". A tuneline record's own call becomes one acceptable value per
argument given (:func:`expected_from_calls`). ``tests/test_toolcalls.py`` runs BFCL's own checker on the same
outputs and finds the same verdicts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: JSON-schema and BFCL type names → the Python type a value must have.
TYPES: dict[str, type] = {
    "string": str, "integer": int, "float": float, "number": float, "boolean": bool, "array": list, "tuple": list,
    "dict": dict, "object": dict, "any": str,
}  # fmt: skip
NESTED = ("array", "tuple")
_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_STRIP = re.compile(r"[ ,./\-_*^]")


@dataclass(frozen=True, slots=True)
class ExpectedCall:
    """One call the reference expects: the function and, per parameter, the values it accepts (``""``: omitted)."""

    name: str
    params: dict[str, list[Any]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a turn's calls are right, and if not, BFCL's kind of error and what was wrong."""

    valid: bool
    error_type: str = ""
    error: str = ""


@dataclass(slots=True)
class ParsedAnswer:
    """The calls an answer makes (``[]``: none), and why it could not be read where it claims a call but is not
    valid JSON (then ``calls`` holds those that could be read)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    parse_error: str | None = None


def parse_calls(text: str) -> ParsedAnswer:
    """The ``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` blocks of a generated answer, in order."""
    out = ParsedAnswer()
    for block in _CALL_BLOCK.findall(text or ""):
        try:
            obj = json.loads(block)
        except ValueError as exc:
            out.parse_error = f"a <tool_call> is not valid JSON ({exc.msg} at {exc.pos})"
            continue
        call = _as_call(obj)
        if call is None:
            out.parse_error = 'a <tool_call> is not {"name": …, "arguments": {…}}'
            continue
        out.calls.append(call)
    return out


def calls_of_message(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI-style assistant message's ``tool_calls`` as ``{"name", "arguments"}`` (arguments decoded)."""
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call)
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        calls.append({"name": fn.get("name", ""), "arguments": args})
    return calls


def _as_call(obj: Any) -> dict[str, Any] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return {"name": obj["name"], "arguments": args} if isinstance(args, dict) else None


def expected_from_calls(calls: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[ExpectedCall]:
    """A record's reference calls as BFCL possible answers: each argument given is the one acceptable value; a
    schema parameter the reference leaves out may be left out (and only left out)."""
    schemas = {s["name"]: s for s in (tool_schema(t) for t in tools)}
    expected = []
    for call in calls:
        params = {k: [v] for k, v in call["arguments"].items()}
        for name in _properties(schemas.get(call["name"], {})):
            params.setdefault(name, [""])
        expected.append(ExpectedCall(call["name"], params))
    return expected


def tool_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """The function schema of an OpenAI ``{"type": "function", "function": {…}}`` tool, or a bare schema."""
    return tool.get("function", tool) if isinstance(tool, dict) else {}


def check_turn(tools: list[dict[str, Any]], calls: list[dict[str, Any]], expected: list[ExpectedCall]) -> Verdict:
    """All of a turn's calls against all it should make, as a multiset; no call expected means none is right."""
    if not expected:
        return Verdict(True) if not calls else Verdict(False, "irrelevance:made_a_call", f"{len(calls)} call(s)")
    if len(calls) != len(expected):
        return Verdict(False, "wrong_count", f"{len(calls)} call(s), expected {len(expected)}")
    schemas = {s.get("name"): s for s in (tool_schema(t) for t in tools)}
    matched: set[int] = set()
    for want in expected:
        verdict = Verdict(False, "wrong_func_name", f"no call of {want.name!r}")
        for i, call in enumerate(calls):
            if i in matched:
                continue
            verdict = check_call(schemas.get(want.name, {}), call, want)
            if verdict.valid:
                matched.add(i)
                break
        if not verdict.valid:
            return verdict if len(expected) == 1 else Verdict(False, "cannot_find_match", verdict.error)
    return Verdict(True)


def check_call(schema: dict[str, Any], call: dict[str, Any], want: ExpectedCall) -> Verdict:
    """One call against one expected call and its function's schema (BFCL's ``simple_function_checker``)."""
    if call.get("name") != want.name:
        return Verdict(False, "wrong_func_name", f"called {call.get('name')!r}, expected {want.name!r}")
    args = call.get("arguments") or {}
    properties = _properties(schema)
    for param in (schema.get("parameters") or {}).get("required", []):
        if param not in args:
            return Verdict(False, "missing_required", f"missing required parameter {param!r}")
    for param, value in args.items():
        if param not in properties or param not in want.params:
            return Verdict(False, "unexpected_param", f"unexpected parameter {param!r}")
        verdict = _check_value(param, value, properties[param], want.params[param])
        if not verdict.valid:
            return verdict
    for param, accepted in want.params.items():
        if param not in args and "" not in accepted:
            return Verdict(False, "missing_optional", f"parameter {param!r} left out")
    return Verdict(True)


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    return (schema.get("parameters") or {}).get("properties") or {}


def _check_value(param: str, value: Any, spec: dict[str, Any], accepted: list[Any]) -> Verdict:
    kind = spec.get("type", "any")
    expected_type = TYPES.get(kind, str)
    nested = TYPES.get((spec.get("items") or {}).get("type", "")) if kind in NESTED else None
    if expected_type is float and type(value) is int:
        value = float(value)
    verdict, is_variable = _type_check(param, value, accepted, kind, expected_type, nested)
    if not verdict.valid:
        return verdict
    if not is_variable:
        if expected_type is dict:
            return _dict_check(param, value, accepted)
        if expected_type is list and nested is dict:
            return _list_of_dicts_check(param, value, accepted)
        if expected_type is str:
            ok = _standard(value) in [_standard(a) for a in accepted if type(a) is str]
            return Verdict(True) if ok else _wrong_value(param, value, "value_error:string")
        if expected_type is list:
            # as BFCL does: an acceptable value that is a string (the "" of "may be omitted") counts as its characters
            options = [_standard_list(list(a)) for a in accepted if type(a) in (list, str)]
            return Verdict(True) if _standard_list(value) in options else _wrong_value(param, value, "value_error:list")
    return Verdict(True) if value in accepted else _wrong_value(param, value, "value_error:others")


def _type_check(
    param: str, value: Any, accepted: list[Any], kind: str, expected_type: type, nested: type | None
) -> tuple[Verdict, bool]:
    """BFCL's type check; the flag says the value stands for a variable (the reference's values are of another
    type than the schema's, and the value is of theirs), which is then compared as a plain value."""
    answer_type = next((type(a) for a in accepted if a != ""), None)
    is_variable = answer_type is not None and answer_type is not expected_type
    if type(value) is expected_type:
        if nested is None:
            return Verdict(True), is_variable
        for item_list in accepted:
            if type(item_list) is list and all(
                _type_check(param, item, item_list, "", nested, None)[0].valid for item in value
            ):
                return Verdict(True), is_variable
            if type(item_list) is not list:
                return Verdict(True), is_variable
        return Verdict(False, "type_error:nested", f"{param!r}: items are not {nested.__name__}"), False
    if answer_type is not None and type(value) is answer_type:
        return Verdict(True), True
    return Verdict(False, "type_error", f"{param!r}: expected {kind}, got {type(value).__name__}"), False


def _dict_check(param: str, value: dict[str, Any], accepted: list[Any]) -> Verdict:
    verdict = Verdict(False, "value_error:dict", f"{param!r}: no acceptable value")
    for option in accepted:
        if option == "":
            continue
        verdict = _dict_matches(param, value, option)
        if verdict.valid:
            return verdict
    return verdict


def _dict_matches(param: str, value: dict[str, Any], option: dict[str, list[Any]]) -> Verdict:
    for key, item in value.items():
        if key not in option:
            return Verdict(False, "value_error:dict_key", f"{param!r}: unexpected key {key!r}")
        candidates = [_standard(a) if type(a) is str else a for a in option[key]]
        if (_standard(item) if type(item) is str else item) not in candidates:
            return Verdict(False, "value_error:dict_value", f"{param!r}: {key!r}={item!r}")
    for key, candidates in option.items():
        if key not in value and "" not in candidates:
            return Verdict(False, "value_error:dict_key", f"{param!r}: missing key {key!r}")
    return Verdict(True)


def _list_of_dicts_check(param: str, value: list[Any], accepted: list[Any]) -> Verdict:
    for option in accepted:
        if len(value) == len(option) and all(
            _dict_check(param, item, [item_option]).valid for item, item_option in zip(value, option, strict=True)
        ):
            return Verdict(True)
    return Verdict(False, "value_error:list_dict", f"{param!r}: no acceptable list of objects")


def _standard(text: str) -> str:
    """BFCL's string comparison: case, spaces and ``,./-_*^`` ignored, single quotes as double."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _standard_list(items: list[Any]) -> list[Any]:
    return [_standard(i) if type(i) is str else i for i in items]


def _wrong_value(param: str, value: Any, error_type: str) -> Verdict:
    return Verdict(False, error_type, f"{param!r}: {json.dumps(value, default=str)[:200]} is not an accepted value")
