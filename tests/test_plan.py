"""The memory/cost planner against public figures, and the `plan` and `train` CLI shells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import tuneline
from tuneline.config import TunelineConfig
from tuneline.planner import GIB, PRESETS, architecture_of, estimate_memory, make_plan

CFG = TunelineConfig()


def test_parameter_counts_match_the_published_models():
    assert PRESETS["llama-2-7b"].total_params == pytest.approx(6.74e9, rel=0.01)
    assert PRESETS["llama-2-13b"].total_params == pytest.approx(13.0e9, rel=0.01)
    assert PRESETS["mistral-7b"].total_params == pytest.approx(7.24e9, rel=0.01)
    # LoRA r=8 on every projection of Llama-2-7B: 20.0M trainable parameters (as peft reports)
    assert PRESETS["llama-2-7b"].lora_params(8) == 19_988_480


@pytest.mark.parametrize(
    ("base", "method", "gpu", "fits"),
    [
        ("llama-2-7b", "qlora", "t4", True),  # QLoRA paper / HF blog: 7B fine-tunes on a 16 GB T4
        ("llama-2-13b", "qlora", "l4", True),  # 13B QLoRA fits 24 GB
        ("llama-2-7b", "full", "a100-80gb", False),  # 7B fp16 full fine-tune with AdamW needs > 80 GB
        ("llama-2-70b", "qlora", "a100-40gb", False),  # 70B QLoRA needs an 48 GB+ card
        ("llama-2-70b", "qlora", "a100-80gb", True),
    ],
)
def test_fits_agree_with_public_figures(base, method, gpu, fits):
    plan = make_plan(CFG, base=base, method=method, seq_len=512, batch_size=1)
    assert {o.gpu.name: o.fits for o in plan.options}[gpu] is fits


def test_memory_terms_behave():
    arch = PRESETS["llama-2-7b"]
    qlora = estimate_memory(arch, "qlora", 512, 4)
    lora = estimate_memory(arch, "lora", 512, 4)
    assert 3.4 < qlora.weights / GIB < 3.8 and 12.3 < lora.weights / GIB < 12.8  # 4-bit vs 16-bit weights
    with_ckpt = estimate_memory(arch, "qlora", 2048, 4, gradient_checkpointing=True)
    without = estimate_memory(arch, "qlora", 2048, 4, gradient_checkpointing=False)
    assert without.activations > 10 * with_ckpt.activations
    assert estimate_memory(arch, "qlora", 512, 8).total > qlora.total
    full = estimate_memory(arch, "full", 512, 1)
    assert full.optimizer / arch.total_params == 8 and full.trainable_params == arch.total_params


def test_recommendation_is_the_smallest_fitting_gpu_with_pool_labels_and_cost():
    plan = make_plan(CFG, base="llama-2-13b", method="qlora", seq_len=1024, batch_size=4, train_tokens=50_000_000)
    d = plan.to_dict()
    fitting = [o for o in d["options"] if o["fits"]]
    assert d["recommended"] == min(fitting, key=lambda o: o["memory_gib"])["gpu"]
    assert d["node_selector"]["gke"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"} or d["recommended"] != "l4"
    h100 = next(o for o in d["options"] if o["gpu"] == "h100-80gb")
    t4 = next(o for o in d["options"] if o["gpu"] == "t4")
    assert h100["tokens_per_second"] > 10 * t4["tokens_per_second"] / 2 and h100["hours"] < t4["hours"]
    assert h100["cost_usd"] == pytest.approx(h100["hours"] * 11.06, rel=0.01)


def test_qlora_throughput_is_calibrated_on_the_public_a100_figure():
    # HF's QLoRA Llama-2-7B runs at ~2.4k tokens/s on an A100-40GB
    plan = make_plan(CFG, base="llama-2-7b", method="qlora", seq_len=512, batch_size=4)
    a100 = next(o for o in plan.options if o.gpu.name == "a100-40gb")
    assert 1800 < a100.tokens_per_second < 3000


def test_architecture_from_a_model_dir_and_builtin(tmp_path):
    from tuneline.models.builtin import build_builtin

    model = build_builtin("builtin:tiny", ["some text"] * 10, tmp_path / "m")
    from_dir, from_name = architecture_of(str(model)), architecture_of("builtin:tiny")
    assert from_dir.hidden_size == from_name.hidden_size and from_dir.num_hidden_layers == from_name.num_hidden_layers
    with pytest.raises(ValueError, match="not a preset"):
        architecture_of("no-such/model-anywhere")


def test_plan_cli_prints_tables_and_json(tmp_path: Path):
    r = tuneline("plan", "--model", "llama-2-7b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "recommended: t4" in r.stdout and "node.kubernetes.io/instance-type=g4dn.xlarge" in r.stdout
    r = tuneline("plan", "--model", "llama-2-7b", "--method", "full", "--json", cwd=tmp_path)
    assert json.loads(r.stdout)["recommended"] is None
    r = tuneline("plan", "--method", "sideways", cwd=tmp_path)
    assert r.returncode == 2 and "--method" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_train_cli_runs_and_fails_clearly(tmp_path: Path, split_dir: Path):
    r = tuneline(
        "train",
        str(split_dir),
        "--out",
        "m",
        "--checkpoints",
        "c",
        "-S",
        "train.max_steps=2",
        "-S",
        "train.logging_steps=1",
        "-S",
        "train.save_steps=2",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "train → m: 2 steps" in r.stdout and "mlflow run" in r.stdout
    assert "step 2/2" in r.stderr, "per-step progress lines when not on a terminal"

    r = tuneline("train", str(split_dir), "-S", "train.method=sft", cwd=tmp_path)
    assert r.returncode == 2 and "train.method: Input should be 'qlora', 'lora', 'dpo' or 'kto'" in r.stderr
    r = tuneline("train", str(split_dir), "-S", "train.full_finetune=true", cwd=tmp_path)
    assert r.returncode == 2 and "full_finetune is only possible with method 'lora'" in r.stderr
    r = tuneline("train", "no-such-dir", cwd=tmp_path)
    assert r.returncode == 1 and "missing split file no-such-dir/sft/train.jsonl" in r.stderr
    assert all("Traceback" not in x for x in (r.stderr, r.stdout))
