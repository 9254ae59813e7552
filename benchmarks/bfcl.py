"""BFCL v4 offline: a model's tool-calling accuracy on the Berkeley Function Calling Leaderboard's questions.

    python benchmarks/bfcl.py                                  # builtin:smollm2-135m (the demo's base)
    python benchmarks/bfcl.py models/candidate                 # a fine-tune beside its base, side by side
    python benchmarks/bfcl.py --categories simple_python irrelevance --n 50 --seed 0

The questions and possible answers come from the ``bfcl-eval`` wheel (``make setup`` installs it with
``--no-deps``; nothing is copied into this repository). Each question is asked greedily with its functions as
the tools of tuneline's chat template (BFCL's ``dict``/``float``/``tuple`` types written as JSON schema), the
answer's ``<tool_call>`` blocks are parsed, and tuneline's scorer judges them by BFCL's AST-checker rules
(``tests/test_toolcalls.py`` shows BFCL's own checker agreeing on 3,290 answers). Irrelevance questions are right
when no call is made. ``--n`` questions per category are drawn with ``--seed``; the table prints accuracy per
category and over all, with the share of answers that claimed a call but were not valid JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from tuneline.stages.evaluate.toolcalls import ExpectedCall, check_turn, parse_calls

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
SCHEMA_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def bfcl_data() -> Path:
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or spec.origin is None:
        sys.exit("bfcl-eval is not installed: pip install --no-deps bfcl-eval==2026.3.23 (make setup does)")
    return Path(spec.origin).parent / "data"


def questions(data: Path, category: str, n: int, seed: int) -> list[tuple[dict, list]]:
    items = [json.loads(line) for line in (data / f"BFCL_v4_{category}.json").open()]
    answers_file = data / "possible_answer" / f"BFCL_v4_{category}.json"
    truth = {a["id"]: a["ground_truth"] for a in map(json.loads, answers_file.open())} if answers_file.exists() else {}
    picked = random.Random(seed).sample(items, min(n, len(items)))
    return [(q, truth.get(q["id"], [])) for q in picked]


def as_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function description as an OpenAI tool (JSON-schema type names) for the chat template."""

    def schema(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: SCHEMA_TYPES.get(v, v) if k == "type" and isinstance(v, str) else schema(v) for k, v in node.items()
            }
        if isinstance(node, list):
            return [schema(v) for v in node]
        return node

    return {"type": "function", "function": schema(function)}


def load(model: str, adapter: bool) -> tuple[Any, Any]:
    """(model, tokenizer): a tuneline model dir (its fine-tune, or with ``adapter=False`` its base) or a built-in."""
    if Path(model).is_dir():
        from tuneline.models.trained import load_trained

        return load_trained(model, adapter=adapter)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneline.models.catalogue import builtin_name
    from tuneline.models.packaged import materialize

    path = materialize(builtin_name(model))
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def run(label: str, model: Any, tokenizer: Any, work: dict[str, list], max_new_tokens: int) -> dict[str, tuple]:
    """Per category: (right, asked, parse failures)."""
    from tuneline.models.trained import generate

    results = {}
    for category, items in work.items():
        right = failures = 0
        started = time.perf_counter()
        for question, truth in items:
            tools = [as_tool(f) for f in question["function"]]
            text = generate(model, tokenizer, [question["question"][0]], max_new_tokens, tools=tools)[0]
            parsed = parse_calls(text)
            expected = [ExpectedCall(name, params) for e in truth for name, params in e.items()]
            right += check_turn(question["function"], parsed.calls, expected).valid
            failures += parsed.parse_error is not None
        results[category] = (right, len(items), failures)
        print(f"  {label} {category}: {right}/{len(items)} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="builtin:smollm2-135m", help="a tuneline model dir or a built-in")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    parser.add_argument("--n", type=int, default=25, help="questions per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    data = bfcl_data()
    work = {c: questions(data, c, args.n, args.seed) for c in args.categories}
    columns = [("base", False), ("fine-tune", True)] if Path(args.model).is_dir() else [(args.model, False)]
    table = {}
    for label, adapter in columns:
        model, tokenizer = load(args.model, adapter)
        table[label] = run(label, model, tokenizer, work, args.max_new_tokens)
        del model
    print(f"\nBFCL v4, {args.n} questions per category, seed {args.seed}, greedy, {args.model}\n")
    print("| category | " + " | ".join(label for label, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for category in args.categories:
        cells = [f"{r}/{n} ({r / n:.2f})" for r, n, _ in (table[label][category] for label, _ in columns)]
        print(f"| {category} | " + " | ".join(cells) + " |")
    totals = []
    for label, _ in columns:
        right, asked, bad = (sum(v[i] for v in table[label].values()) for i in range(3))
        totals.append(f"**{right / asked:.3f}** ({bad} unparsable)")
    print("| **all** | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main()
