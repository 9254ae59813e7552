"""The train stage on CPU with builtin:tiny: SFT and DPO really learn, QLoRA is really 4-bit, outputs are complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from tests.conftest import TINY_TRAIN
from tuneline.models.trained import generate, load_trained, read_manifest
from tuneline.stages.train import TrainError, run_train

pytestmark = pytest.mark.slow


class Snapshot(TrainerCallback):
    """Trainable parameters at the start and end of training, to prove each one moved."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.quantized = False

    @staticmethod
    def _trainable(model) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import bitsandbytes as bnb

        self.before = self._trainable(model)
        self.quantized = any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = self._trainable(model)


def losses(out: Path, name: str = "train_loss") -> list[float]:
    rows = (out / "plots" / f"{name}.csv").read_text().splitlines()[1:]
    return [float(r.split(",")[1]) for r in rows]


def assert_every_lora_param_changed(snap: Snapshot) -> None:
    assert snap.before and set(snap.before) == set(snap.after)
    assert all("lora_" in name for name in snap.before), "only LoRA weights are trainable"
    unchanged = [n for n in snap.before if torch.equal(snap.before[n], snap.after[n])]
    assert not unchanged, f"{len(unchanged)} LoRA tensors did not change, e.g. {unchanged[:3]}"


def test_qlora_sft_trains_every_lora_weight_in_4bit_and_writes_a_loadable_model(make_config, split_dir, tmp_path):
    snap = Snapshot()
    result = run_train(make_config(*TINY_TRAIN), split_dir, tmp_path / "model", tmp_path / "ckpt", callbacks=[snap])
    out = result.out

    assert snap.quantized, "qlora must train on bitsandbytes Linear4bit layers"
    assert_every_lora_param_changed(snap)
    curve = losses(out)
    assert len(curve) == 8 and curve[-1] < curve[0] * 0.7, curve

    s = json.loads((out / "train_summary.json").read_text())
    assert s == result.summary.model_dump()
    assert s["steps"] == 16 and s["method"] == "qlora" and s["tokens_seen"] > 16 * 8 * 10
    assert s["tokens_per_second"] > 0 and s["peak_memory_gib"] > 0 and s["wall_time_s"] > 0
    assert s["final_val_loss"] is not None and s["final_train_loss"] == pytest.approx(curve[-1], abs=1e-5)
    assert s["precision"] == "fp32" and s["optimizer"] == "adamw_torch" and s["notes"]

    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert "{% generation %}" in (adapter / "chat_template.jinja").read_text()
    manifest = read_manifest(out)
    assert manifest.base_dir == "base" and (out / "base" / "config.json").is_file()
    assert manifest.data["sft/train.jsonl"] and manifest.mlflow_run_id == s["mlflow_run_id"]
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the adapter loads with peft and generates; it differs from the untouched base
    tuned, tok = load_trained(out)
    base, _ = load_trained(out, adapter=False)
    conv = [[{"role": "user", "content": "Order: 3 x lamp for Alice"}]]
    assert type(tuned).__name__ == "PeftModelForCausalLM"
    tuned_answer, base_answer = generate(tuned, tok, conv, 24)[0], generate(base, tok, conv, 24)[0]
    assert tuned_answer and tuned_answer != base_answer
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all(torch.isfinite(t).all() for t in weights.values())


def test_lora_with_merge_writes_a_merged_model_equal_to_base_plus_adapter(make_config, split_dir, tmp_path):
    cfg = make_config(*TINY_TRAIN, "train.method=lora", "train.max_steps=4", "train.merge=true")
    out = run_train(cfg, split_dir, tmp_path / "model", tmp_path / "ckpt").out
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    tuned, tok = load_trained(out)
    ids = tok("Order: 3 x lamp for Alice", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**ids).logits, tuned(**ids).logits, rtol=1e-4, atol=1e-4)
    assert read_manifest(out).merged_dir == "merged"


def test_dpo_from_the_sft_adapter_changes_every_lora_weight_and_lowers_the_loss(make_config, split_dir, tmp_path):
    sft = run_train(make_config(*TINY_TRAIN, "train.max_steps=8"), split_dir, tmp_path / "sft", tmp_path / "c1").out
    snap = Snapshot()
    cfg = make_config(*TINY_TRAIN, "train.method=dpo", f"train.dpo.sft_adapter={sft}", "train.learning_rate=0.002")
    out = run_train(cfg, split_dir, tmp_path / "dpo", tmp_path / "c2", callbacks=[snap]).out

    assert_every_lora_param_changed(snap)
    curve = losses(out)
    assert curve[0] == pytest.approx(0.693, abs=0.05), "DPO starts at ln 2 when policy == reference"
    assert curve[-1] < curve[0] - 0.05, curve
    manifest = read_manifest(out)
    assert manifest.method == "dpo" and manifest.sft_adapter == str(sft)
    # same bundled base as the SFT run it continues
    assert (out / "base/model.safetensors").read_bytes() == (sft / "base/model.safetensors").read_bytes()


def test_full_finetune_trains_every_weight(make_config, split_dir, tmp_path):
    snap = Snapshot()
    cfg = make_config(
        *TINY_TRAIN, "train.method=lora", "train.full_finetune=true", "train.max_steps=4", "train.learning_rate=0.001"
    )
    out = run_train(cfg, split_dir, tmp_path / "model", tmp_path / "ckpt", callbacks=[snap]).out
    assert len(snap.before) > 10 and not any("lora_" in n for n in snap.before)
    assert (out / "adapter/model.safetensors").is_file()
    assert read_manifest(out).full_finetune is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("model.max_seq_length=16",), "exceed model.max_seq_length=16"),
        (("train.precision=bf16",), "train.precision=bf16 needs a GPU"),
        (("train.optimizer=paged_adamw_8bit",), "paged_adamw_8bit needs a GPU"),
        (("lora.target_modules=[nope]",), "are not linear layers of this model"),
        (("train.memory_fraction=0.0001",), "exceeds"),
    ],
)
def test_preflight_rejects_incoherent_runs_before_training(make_config, split_dir, tmp_path, overrides, message):
    with pytest.raises(TrainError, match=message.replace(".", r"\.").replace("[", r"\[")):
        run_train(make_config(*TINY_TRAIN, *overrides), split_dir, tmp_path / "model", tmp_path / "ckpt")
    assert not (tmp_path / "model").exists()


def test_missing_split_is_a_clear_error(make_config, tmp_path):
    with pytest.raises(TrainError, match="missing split file .*sft/train.jsonl.*tuneline split"):
        run_train(make_config(*TINY_TRAIN), tmp_path / "nothing", tmp_path / "model", tmp_path / "ckpt")


def test_builtin_model_is_deterministic(tmp_path):
    from tuneline.models.builtin import build_builtin

    texts = ["Order: 3 x lamp for Alice", '{"name": "Alice", "item": "lamp", "qty": 3}'] * 20
    a = build_builtin("builtin:tiny", texts, tmp_path / "a", seed=1)
    b = build_builtin("builtin:tiny", texts, tmp_path / "b", seed=1)
    c = build_builtin("builtin:tiny", texts, tmp_path / "c", seed=2)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="unknown built-in model 'builtin:huge'"):
        build_builtin("builtin:huge", texts, tmp_path / "d")


def test_base_model_from_an_s3_prefix(make_config, split_dir, tmp_path, s3_endpoint, monkeypatch):
    import boto3

    from tuneline.models.builtin import build_builtin

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("TUNELINE_CACHE", str(tmp_path / "cache"))
    local = build_builtin("builtin:tiny", ["Order: 3 x lamp for Alice", "Bob wants 2 mug"] * 20, tmp_path / "b")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="models")
    for f in local.iterdir():
        s3.upload_file(str(f), "models", f"tiny/{f.name}")

    cfg = make_config(*TINY_TRAIN, "train.max_steps=2", "model.base=s3://models/tiny")
    out = run_train(cfg, split_dir, tmp_path / "model", tmp_path / "ckpt").out
    manifest = read_manifest(out)
    assert manifest.base == "s3://models/tiny" and manifest.base_dir is None
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 1, "downloaded once into the cache"
    model, tok = load_trained(out)
    assert generate(model, tok, [[{"role": "user", "content": "Bob wants 2 mug"}]], 8)[0] is not None

    cfg = make_config(*TINY_TRAIN, "model.base=s3://models/missing")
    with pytest.raises(TrainError, match="s3://models/missing has no config.json"):
        run_train(cfg, split_dir, tmp_path / "model2", tmp_path / "ckpt2")
