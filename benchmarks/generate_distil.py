"""The generate stage on the demo task: distil with the demo's fine-tune as teacher, in-process.

    tuneline ingest && tuneline clean && tuneline split && tuneline train   # or dvc repro train
    python benchmarks/generate_distil.py models/candidate --n 40

Two runs of ``generate.method=distil`` (greedy, ``max_new_tokens`` 64), each printed as one row:

* *unanswered prompts*: N new order requests from the sample task's generator (``tuneline.sample``, another seed
  than the bundled data), given to the teacher as prompts only; every kept answer is compared with what the
  generator knows is right (name, item, quantity), so the row says how much of the generated data is correct.
* *the bundled seeds*: the first N conversations of ``data/raw/orders_messages.jsonl``, answers included; an
  answer equal to the seed's own is a duplicate of existing data and dropped (the stage's dedup against the seeds).

Outputs go to a scratch directory; the repository's data and caches are untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TUNELINE_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher", type=Path, help="a tuneline model dir (the demo's fine-tune: models/candidate)")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seeds", type=Path, default=Path("data/raw/orders_messages.jsonl"))
    args = ap.parse_args()

    from tuneline.config import load_config
    from tuneline.progress import setup_logging
    from tuneline.sample import order
    from tuneline.stages.generate import run_generate

    setup_logging()
    work = Path(tempfile.mkdtemp(prefix="tuneline-generate-"))
    rng = random.Random(7)
    truth = {}
    with open(work / "prompts.jsonl", "w") as fh:
        for _ in range(args.n):
            prompt, answer, _ = order(rng)
            truth[prompt] = json.loads(answer)
            fh.write(json.dumps({"prompt": prompt}) + "\n")
    rows = []
    for name, seeds in (("unanswered prompts", work / "prompts.jsonl"), ("the bundled seeds", args.seeds)):
        config = load_config(
            None,
            ["generate.method=distil", f"generate.teacher.model={args.teacher}", f"generate.n={args.n}",
             "generate.max_new_tokens=64", f"generate.seeds={seeds}",
             f"paths.generate_cache={work / (name[:3] + '.sqlite')}"],
        )  # fmt: skip
        start = time.perf_counter()
        report = run_generate(config, work / name.replace(" ", "-"))
        secs = time.perf_counter() - start
        kept = [json.loads(line) for line in (work / name.replace(" ", "-") / "generated.jsonl").open()]
        right = (
            sum(_answer(r) == truth.get(r["messages"][-2]["content"]) for r in kept) if seeds != args.seeds else None
        )
        rows.append((name, report, right, secs))

    print(f"\ngenerate distil, teacher {args.teacher} in-process, {args.n} prompts per run\n")
    print("| seeds | kept | dropped | kept answers right | teacher tokens | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r, right, secs in rows:
        dropped = ", ".join(f"{k} {v}" for k, v in r.dropped.items()) or "0"
        shown = "n/a (seeds have answers)" if right is None else f"{right}/{r.kept}"
        print(f"| {name} | {r.kept} | {dropped} | {shown} | {r.prompt_tokens + r.completion_tokens:,} | {secs:.0f} |")


def _answer(record: dict) -> object:
    try:
        return json.loads(record["messages"][-1]["content"])
    except ValueError:
        return None


if __name__ == "__main__":
    main()
