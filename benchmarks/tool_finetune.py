"""A tool-calling fine-tune, measured: SmolLM2-135M-Instruct before and after, on its own test split and on BFCL v4.

    python benchmarks/tool_finetune.py                        # 600 records, 30 steps of 4, 10 BFCL questions/category
    python benchmarks/tool_finetune.py --steps 80 --bfcl-n 25 --work /tmp/tools   # keep the outputs

Generates tool-calling records (``tuneline sample --task tools``: OpenAI's fine-tuning format, one to three tools
offered, single, parallel and no-call turns), then runs the pipeline's own stage functions on them in a scratch
directory: ingest → clean → split → train (params.yaml's training, ``--steps`` steps) → evaluate with
``eval.benchmarks.bfcl`` on, against the untouched base. Prints the split's tool-call metrics and BFCL's
per-category accuracy, base beside fine-tune, and what the gate (tool_call_accuracy to improve on,
bfcl_accuracy among the regression checks) decided. Nothing of the demo's outputs is touched.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TUNELINE_OFFLINE", "1")

CATEGORIES = ["simple_python", "multiple", "parallel", "irrelevance"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("params.yaml"))
    parser.add_argument("--n", type=int, default=600, help="tool-calling records generated")
    parser.add_argument("--steps", type=int, default=30, help="training steps")
    parser.add_argument("--batch-size", type=int, default=4, help="records per step (tool prompts are long)")
    parser.add_argument("--bfcl-n", type=int, default=10, help="BFCL questions per category")
    parser.add_argument("--categories", nargs="+", default=CATEGORIES)
    parser.add_argument("--work", type=Path, default=None, help="keep the outputs here (default: a scratch dir)")
    args = parser.parse_args()

    from tuneline.config import load_config
    from tuneline.progress import setup_logging
    from tuneline.stages.clean.run import run_clean
    from tuneline.stages.evaluate import run_evaluate
    from tuneline.stages.ingest.run import run_ingest
    from tuneline.stages.split.run import run_split
    from tuneline.stages.train.run import run_train
    from tuneline.tool_sample import write_tool_sample

    setup_logging()
    with tempfile.TemporaryDirectory(prefix="tuneline-tools-") as scratch:
        work = args.work or Path(scratch)
        overrides = [f"paths.{p}={work / p}" for p in ("raw", "ingested", "cleaned", "split", "model", "eval")]
        overrides += [
            f"paths.checkpoints={work / 'checkpoints'}",
            f"registry.tracking_uri=sqlite:///{work / 'mlruns.db'}",
            f"train.max_steps={args.steps}",
            f"train.batch_size={args.batch_size}",
            "model.max_seq_length=1024",  # three tool schemas in the prompt run past 512 tokens
            "eval.baseline=base",
            f"eval.benchmarks.bfcl.categories=[{','.join(args.categories)}]",
            f"eval.benchmarks.bfcl.n={args.bfcl_n}",
            "eval.gate.primary_metric=tool_call_accuracy",
        ]
        config = load_config(args.config, overrides)
        p, times = config.paths, {}
        write_tool_sample(p.raw, n=args.n, seed=0)
        for name, step in (
            ("ingest", lambda: run_ingest(config, None, p.ingested)),
            ("clean", lambda: run_clean(config, p.ingested, p.cleaned)),
            ("split", lambda: run_split(config, p.cleaned, p.split)),
            ("train", lambda: run_train(config, p.split, p.model, p.checkpoints)),
            ("evaluate", lambda: run_evaluate(config, p.model, p.split, p.eval, work / "judge.sqlite")),
        ):
            started = time.perf_counter()
            result = step()
            times[name] = time.perf_counter() - started
        report(result, args, config.model.base, times)


def report(result, args, base: str, times: dict[str, float]) -> None:  # noqa: ANN001 - an EvalResult
    from tuneline.results import TOOL_METRICS

    m = result.metrics
    print(f"\nTool-calling fine-tune of {base}: {args.n} generated records, {args.steps} steps of {args.batch_size}")
    print(f"({', '.join(f'{k} {v:.0f} s' for k, v in times.items())})\n")
    print(f"| split's test records ({m.tool_examples}) | base | fine-tune |\n|---|---:|---:|")
    for name in TOOL_METRICS:
        print(f"| {name} | {_fmt(m.baseline.get(name))} | {_fmt(m.candidate.get(name))} |")
    print(f"\n| BFCL v4 ({args.bfcl_n} per category) | base | fine-tune |\n|---|---:|---:|")
    for b in m.benchmarks:
        print(f"| {b.task} | {_fmt(b.baseline)} | {_fmt(b.candidate)} |")
    print(f"| **all** | **{_fmt(m.baseline.get('bfcl_accuracy'))}** | **{_fmt(m.candidate.get('bfcl_accuracy'))}** |")
    print(f"\ngate: {'PASS' if result.gate.passed else 'FAIL'}" + "".join(f"\n  - {r}" for r in result.gate.reasons))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
