"""QLoRA throughput benchmark: tuneline's trainer vs. the seed recipe, on the same model and data.

    python benchmarks/qlora_throughput.py                 # Llama-2-7B shape, needs a CUDA GPU
    python benchmarks/qlora_throughput.py --size tiny     # builtin:tiny shape, runs on CPU (CI smoke)

Builds a model of the requested shape with random weights (no hub: ``--size 7b`` uses
Llama-2-7B's published config), writes synthetic records of ``--seq-len`` tokens, then
runs a fixed number of optimizer steps twice, each in its own process so that peak
memory is measured cleanly:

- ``tuneline``: ``run_train`` with the project's settings from params.yaml (4-bit NF4,
  double quantisation, every linear projection adapted, gradient checkpointing, paged
  8-bit AdamW and bf16 on GPU);
- ``recipe``: the seed recipe written directly against TRL: ``SFTTrainer``, NF4,
  ``paged_adamw_8bit``, r=8 on q/v projections, no packing.

Prints tokens/s, peak accelerator memory (``torch.cuda.max_memory_allocated``; process
peak RSS on CPU), model-FLOPs utilisation (6·N FLOPs per token with checkpointing, over
the GPU's dense bf16 peak from the params.yaml catalogue) and the planner's estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = [
    "order",
    "lamp",
    "chair",
    "kettle",
    "Alice",
    "Bob",
    "quantity",
    "deliver",
    "address",
    "invoice",
    "refund",
    "json",
    "name",
    "item",
    "qty",
    "please",
    "send",
    "notebook",
    "pencil",
    "basket",
]


def make_base(size: str, out: Path) -> Path:
    """A random-weight base model dir of the requested shape, with a BPE tokenizer and chat template."""
    from tuneline.models.builtin import build_builtin, build_tokenizer

    texts = [" ".join(random.Random(i).choices(WORDS, k=40)) for i in range(200)]
    if size == "tiny":
        return build_builtin("builtin:tiny", texts, out, seed=0)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tuneline.planner import PRESETS

    arch = PRESETS["llama-2-7b"]
    tokenizer = build_tokenizer(texts, 1024)
    config = LlamaConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_split(root: Path, n: int, seq_len: int) -> Path:
    """Records of about ``seq_len`` tokens (the built tokenizer packs ~1 word per token here)."""
    rng = random.Random(0)
    for split, count in (("train", n), ("val", 0)):
        path = root / "sft" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            for i in range(count):
                words = seq_len // 2 - 8
                user = " ".join(rng.choices(WORDS, k=words // 2))
                answer = " ".join(rng.choices(WORDS, k=words - words // 2))
                msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
                fh.write(json.dumps({"id": f"r{i}", "messages": msgs}) + "\n")
    return root


def peak_memory() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1024**3


def run_tuneline(base: Path, split: Path, work: Path, args: argparse.Namespace) -> dict:
    from tuneline.config import load_config
    from tuneline.stages.train import run_train

    overrides = [
        f"model.base={base}",
        f"model.max_seq_length={args.seq_len + 64}",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch}",
        "train.logging_steps=1",
        f"train.save_steps={args.steps * 10}",
        "train.learning_rate=0.0002",
        f"registry.tracking_uri=sqlite:///{work / 'mlruns.db'}",
    ]
    config = load_config(None, overrides)
    summary = run_train(config, split, work / "model", work / "ckpt").summary
    return {
        "tokens_per_second": summary.tokens_per_second,
        "peak_gib": peak_memory(),
        "planned_gib": summary.planned_memory_gib,
        "steps": summary.steps,
    }


def run_recipe(base: Path, split: Path, work: Path, args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
    )
    model = AutoModelForCausalLM.from_pretrained(
        base, quantization_config=quant, dtype=dtype, device_map={"": 0} if cuda else None
    )
    model = prepare_model_for_kbit_training(model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = [json.loads(line) for line in (split / "sft" / "train.jsonl").read_text().splitlines()]
    data = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    config = SFTConfig(
        output_dir=str(work / "recipe"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=2e-4,
        optim="paged_adamw_8bit" if cuda else "adamw_torch",
        bf16=cuda,
        use_cpu=not cuda,
        gradient_checkpointing=True,
        packing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        max_length=args.seq_len + 64,
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
    )
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {
        "tokens_per_second": trainer.state.num_input_tokens_seen / seconds,
        "peak_gib": peak_memory(),
        "planned_gib": None,
        "steps": trainer.state.global_step,
    }


def mfu(tokens_per_second: float, size: str) -> float | None:
    import torch

    from tuneline.config import TunelineConfig
    from tuneline.planner import PRESETS, architecture_of

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0).lower()
    gpus = TunelineConfig().plan.gpus
    gpu = next((g for g in gpus if g.name.split("-")[0] in name), None)
    if gpu is None:
        return None
    arch = PRESETS["llama-2-7b"] if size == "7b" else architecture_of("builtin:tiny")
    return tokens_per_second * 6 * arch.total_params / (gpu.bf16_tflops * 1e12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "7b"], default="7b")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--variant", choices=["tuneline", "recipe"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process: one variant, result as JSON on the last stdout line
        base, split = args.work / "base", args.work / "split"
        run = run_tuneline if args.variant == "tuneline" else run_recipe
        result = run(base, split, args.work / args.variant, args)
        result["mfu"] = mfu(result["tokens_per_second"], args.size)
        print(json.dumps(result))
        return

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA)"
    with tempfile.TemporaryDirectory(prefix="qlora-bench-") as tmp:
        work = Path(tmp)
        make_base(args.size, work / "base")
        make_split(work / "split", n=args.steps * args.batch, seq_len=args.seq_len)
        results = {}
        for variant in ("recipe", "tuneline"):
            cmd = [
                sys.executable,
                __file__,
                "--variant",
                variant,
                "--work",
                str(work),
                "--size",
                args.size,
                "--steps",
                str(args.steps),
                "--seq-len",
                str(args.seq_len),
                "--batch",
                str(args.batch),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])

    recipe = results["recipe"]
    print(
        f"\nQLoRA throughput · {args.size} · seq {args.seq_len} × batch {args.batch} · {args.steps} steps · {device}\n"
    )
    print("| trainer | tokens/s | peak memory GiB | MFU | planner estimate GiB | speed vs recipe | memory vs recipe |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        mfu_s = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        plan = f"{r['planned_gib']:.2f}" if r["planned_gib"] is not None else "-"
        print(
            f"| {name} | {r['tokens_per_second']:,.0f} | {r['peak_gib']:.2f} | {mfu_s} | {plan} | "
            f"{r['tokens_per_second'] / recipe['tokens_per_second']:.2f}× | {r['peak_gib'] / recipe['peak_gib']:.2f}× |"
        )
    if not torch.cuda.is_available():
        print("\nCPU run: a smoke test of the mechanics; memory is process RSS, not accelerator memory.")


if __name__ == "__main__":
    main()
