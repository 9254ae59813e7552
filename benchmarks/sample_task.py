"""Does the fine-tuned model beat the untouched base on the bundled task, and can the judge tell? (after `make demo`)

    python benchmarks/sample_task.py [--model models/candidate] [--split data/split] [--generate-examples 12]

Runs the evaluate stage itself (the same code as `dvc repro`), into a scratch directory, so
nothing of the demo's outputs is touched:

1. in logprob mode on the whole held-out test split: base vs fine-tuned on the reference
   metrics (answers that are valid JSON with exactly the reference's keys, field accuracy,
   exact match), and the judge's verdicts measured against that truth;
2. in generate mode (the judge writes, the verdict is parsed) on the first
   ``--generate-examples`` examples, served by `transformers serve`: slower, so fewer.

Prints two Markdown tables (the README's) and, with ``--json``, writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TUNELINE_OFFLINE", "1")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", type=Path, default=None, help="model dir (default: paths.model)")
    parser.add_argument("--split", type=Path, default=None, help="split dir (default: paths.split)")
    parser.add_argument("--generate-examples", type=int, default=12, help="examples judged in generate mode (0: skip)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    from tuneline.config import load_config
    from tuneline.models.trained import read_manifest
    from tuneline.progress import setup_logging
    from tuneline.stages.evaluate import run_evaluate

    setup_logging()
    base = load_config(args.config)
    model = args.model or Path(base.paths.model)
    split = args.split or Path(base.paths.split)
    manifest = read_manifest(model)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="tuneline-bench-") as scratch:
        work = Path(scratch)
        tracking = f"registry.tracking_uri=sqlite:///{work / 'mlruns.db'}"  # the demo's store stays as it is
        plans = [("logprobs", ("eval.judge.mode=logprobs", "eval.baseline=base", tracking))]
        if args.generate_examples:
            plans.append(
                (
                    "generate",
                    (
                        "eval.judge.mode=generate",
                        "eval.baseline=base",
                        f"eval.max_examples={args.generate_examples}",
                        tracking,
                    ),
                )
            )
        for mode, overrides in plans:
            config = load_config(args.config, overrides)
            started = time.perf_counter()
            result = run_evaluate(config, model, split, work / mode, work / f"{mode}.sqlite")
            runs[mode] = (result.metrics, round(time.perf_counter() - started, 1))

    metrics, _ = runs["logprobs"]
    steps = json.loads((model / "train_summary.json").read_text())["steps"]
    print(f"\n{metrics.examples} held-out test examples · base {manifest.base} · {manifest.method}, {steps} steps\n")
    print("| model | valid JSON with the right keys | field accuracy | exact match |")
    print("|---|---:|---:|---:|")
    for name, values in (("base (untouched)", metrics.baseline or {}), ("fine-tuned", metrics.candidate)):
        print(
            f"| {name} | {_pct(values.get('valid_json'))} | {_pct(values.get('field_accuracy'))} "
            f"| {_pct(values.get('exact_match'))} |"
        )
    print(f"\njudge: {base.eval.judge.endpoint or base.eval.judge.model}\n")
    print(
        "| mode | examples | parse failures | mean score fine-tuned / base | win rate | position consistency "
        "| single grade vs truth: accuracy, kappa | pairwise vs truth: accuracy, kappa | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, (m, seconds) in runs.items():
        j = m.judge
        pw, truth = j.pairwise, j.truth
        single = truth.single if truth else None
        pair = truth.pairwise if truth else None
        print(
            f"| {mode} | {m.examples} | {_pct(j.parse_failure_rate)} "
            f"| {_num(j.candidate_score.mean)} / {_num(j.baseline_score.mean if j.baseline_score else None)} "
            f"| {_num(pw.win_rate if pw else None)} | {_num(pw.position_consistency if pw else None)} "
            f"| {_num(single.accuracy if single else None)}, {_num(single.cohen_kappa if single else None)} "
            f"| {_num(pair.accuracy if pair else None)}, {_num(pair.cohen_kappa if pair else None)} | {seconds} |"
        )
    if args.json:
        payload = {mode: {"seconds": s, **m.model_dump(mode="json")} for mode, (m, s) in runs.items()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
