"""Does the fine-tuned model beat the untouched base on the bundled task? (run after `make demo`)

    python benchmarks/sample_task.py [--model models/candidate] [--split data/split]

Generates greedy answers for the held-out SFT test split with and without the adapter and
prints, for each: answers that are valid JSON with exactly the keys name/item/qty, the
share of correct fields among all expected fields, and exact match.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def score(answers: list[str], references: list[str]) -> dict[str, float]:
    valid = fields = exact = 0
    for answer, reference in zip(answers, references, strict=True):
        exact += answer == reference
        want = json.loads(reference)
        try:
            got = json.loads(answer)
        except ValueError:
            continue
        if isinstance(got, dict) and set(got) == set(want):
            valid += 1
            fields += sum(got[k] == want[k] for k in want)
    n = len(references)
    return {"valid_json": valid / n, "field_accuracy": fields / (3 * n), "exact_match": exact / n}


def _is_order(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/candidate"))
    parser.add_argument("--split", type=Path, default=Path("data/split"))
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    from tuneline.models.trained import generate, load_trained
    from tuneline.stages.split import split_path

    rows = [json.loads(line) for line in split_path(args.split, "sft", "test").read_text().splitlines() if line]
    rows = [r for r in rows if _is_order(r["messages"][-1]["content"])]  # the orders→JSON task only
    conversations = [r["messages"][:-1] for r in rows]
    references = [r["messages"][-1]["content"] for r in rows]
    print(f"\n{len(rows)} held-out test records · {args.model}\n")
    print("| model | valid JSON | field accuracy | exact match |")
    print("|---|---:|---:|---:|")
    for name, adapter in (("base (untouched)", False), ("fine-tuned", True)):
        model, tokenizer = load_trained(args.model, adapter=adapter)
        s = score(generate(model, tokenizer, conversations, args.max_new_tokens), references)
        print(f"| {name} | {s['valid_json']:.0%} | {s['field_accuracy']:.0%} | {s['exact_match']:.0%} |")


if __name__ == "__main__":
    main()
