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
import sys
import time
from pathlib import Path
from typing import Any

from tuneline.config.schema import BfclConfig
from tuneline.errors import TunelineError
from tuneline.stages.evaluate.answers import ToolExample
from tuneline.stages.evaluate.benchmarks import bfcl_examples, bfcl_scores
from tuneline.stages.evaluate.toolcalls import ParsedAnswer, parse_calls

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")


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


def answers(label: str, model: Any, tokenizer: Any, examples: list[ToolExample], budget: int) -> list[ParsedAnswer]:
    """Each question asked greedily with its tools; the answer's ``<tool_call>`` blocks parsed."""
    from tuneline.models.trained import generate

    out, started = [], time.perf_counter()
    for i, e in enumerate(examples, 1):
        out.append(parse_calls(generate(model, tokenizer, [e.prompt], budget, tools=e.tools)[0]))
        if i % 10 == 0 or i == len(examples):
            print(f"  {label}: {i}/{len(examples)} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="builtin:smollm2-135m", help="a tuneline model dir or a built-in")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    parser.add_argument("--n", type=int, default=25, help="questions per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    try:
        examples = bfcl_examples(BfclConfig(categories=args.categories, n=args.n, seed=args.seed))
    except TunelineError as exc:
        sys.exit(str(exc))
    columns = [("base", False), ("fine-tune", True)] if Path(args.model).is_dir() else [(args.model, False)]
    parsed = {}
    for label, adapter in columns:
        model, tokenizer = load(args.model, adapter)
        parsed[label] = answers(label, model, tokenizer, examples, args.max_new_tokens)
        del model
    table = {label: bfcl_scores(examples, parsed[label], None) for label, _ in columns}  # per category, in order
    print(f"\nBFCL v4, {args.n} questions per category, seed {args.seed}, greedy, {args.model}\n")
    print("| category | " + " | ".join(label for label, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for i, category in enumerate(args.categories):
        cells = [table[label][i] for label, _ in columns]
        print(
            f"| {category} | "
            + " | ".join(f"{round(s.candidate * s.n)}/{s.n} ({s.candidate:.2f})" for s in cells)
            + " |"
        )
    totals = []
    for label, _ in columns:
        right = sum(round(s.candidate * s.n) for s in table[label])
        bad = sum(a.parse_error is not None for a in parsed[label])
        totals.append(f"**{right / len(examples):.3f}** ({bad} unparsable)")
    print("| **all** | " + " | ".join(totals) + " |")


if __name__ == "__main__":
    main()
