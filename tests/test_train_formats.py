"""Training on what the new shapes produce: tool-calling SFT puts loss on the assistant's calls (and not on
the user's or the tool's text), and KTO learns from unpaired desirable/undesirable answers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, TrainerCallback

from tests.conftest import TINY_TRAIN, order_records, read_jsonl, write_jsonl
from tests.test_train import Snapshot, assert_every_lora_param_changed, losses
from tuneline.models.template import CHAT_TEMPLATE
from tuneline.models.trained import load_trained, read_manifest
from tuneline.stages.train import run_train

pytestmark = pytest.mark.slow

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "stock_level",
            "description": "Units of an item in a warehouse.",
            "parameters": {"type": "object", "properties": {"item": {"type": "string"}, "site": {"type": "string"}}},
        },
    }
]
ITEMS, SITES = ["lamp", "desk", "chair", "shelf"], ["Leeds", "Turin", "Osaka"]


def tool_record(i: int, rng: random.Random) -> dict:
    item, site, units = rng.choice(ITEMS), rng.choice(SITES), rng.randint(0, 90)
    call = {"type": "function", "function": {"name": "stock_level", "arguments": {"item": item, "site": site}}}
    return {
        "id": f"t{i}",
        "messages": [
            {"role": "user", "content": f"How many {item}s are left in {site}?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "stock_level", "content": json.dumps({"units": units})},
            {"role": "assistant", "content": f"{units} {item}s are left in {site}."},
        ],
        "tools": TOOLS,
    }


class FirstBatch(TrainerCallback):
    def __init__(self) -> None:
        self.batch = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.batch = next(iter(train_dataloader))


def test_tool_calling_sft_trains_on_the_calls_and_answers_only(make_config, tmp_path):
    rng = random.Random(0)
    split = tmp_path / "split"
    for name, n in (("train", 32), ("val", 8)):
        write_jsonl(split / "sft" / f"{name}.jsonl", [tool_record(i, rng) for i in range(n)])
    first = FirstBatch()
    cfg = make_config(*TINY_TRAIN, "train.max_steps=4", "train.method=lora")
    out = run_train(cfg, split, tmp_path / "model", tmp_path / "ckpt", callbacks=[first]).out

    tok = AutoTokenizer.from_pretrained(out / "adapter")
    ids, labels = first.batch["input_ids"][0], first.batch["labels"][0]
    text = tok.decode(ids[ids != tok.pad_token_id])
    trained = tok.decode(ids[labels != -100])
    assert "<tools>" in text and '"name": "stock_level"' in text, "the tools schema reaches the prompt"
    assert "<tool_call>" in trained and '"arguments": {"item": ' in trained, "the call is a training target"
    assert "left in" in trained, "so is the final answer"
    assert "How many" not in trained and "units" not in trained.split("</tool_call>")[1].split("left")[0], (
        "user and tool turns are context, not targets"
    )
    assert "<tools>" not in trained
    assert read_manifest(out).method == "lora"


def weighted_record(i: int, rng: random.Random) -> dict:
    item, site, units = rng.choice(ITEMS), rng.choice(SITES), rng.randint(0, 90)
    return {
        "id": f"w{i}",
        "messages": [
            {"role": "user", "content": "Good morning"},
            {"role": "assistant", "content": "Greetings from the depot desk.", "weight": 0},
            {"role": "user", "content": f"How many {item}s are left in {site}?"},
            {"role": "assistant", "content": f"{units} {item}s are left in {site}."},
        ],
    }


def test_weight_0_turns_are_context_and_weight_1_turns_are_targets(make_config, tmp_path):
    rng = random.Random(2)
    split = tmp_path / "split"
    for name, n in (("train", 32), ("val", 8)):
        write_jsonl(split / "sft" / f"{name}.jsonl", [weighted_record(i, rng) for i in range(n)])
    first = FirstBatch()
    cfg = make_config(*TINY_TRAIN, "train.max_steps=2", "train.method=lora")
    out = run_train(cfg, split, tmp_path / "model", tmp_path / "ckpt", callbacks=[first]).out

    tok = AutoTokenizer.from_pretrained(out / "adapter")
    for ids, labels in zip(first.batch["input_ids"], first.batch["labels"], strict=True):
        text = tok.decode(ids[ids != tok.pad_token_id])
        trained = tok.decode(ids[labels != -100])
        assert "Greetings from the depot desk." in text, "the weight-0 turn stays in the conversation"
        assert "Greetings" not in trained and "depot" not in trained, "but is not a training target"
        assert "left in" in trained and "How many" not in trained, "the weight-1 answer is the only target"


def test_a_template_that_cannot_mask_weights_trains_each_weighted_turn_as_its_own_row():
    from types import SimpleNamespace

    from tuneline.stages.train.run import _sft_rows_for_template

    rows = [{"id": "w0", "messages": weighted_record(0, random.Random(3))["messages"], "tools": None}]
    rows[0]["messages"].append({"role": "user", "content": "And in Turin?"})
    rows[0]["messages"].append({"role": "assistant", "content": "Four."})
    marked = "{% for m in messages %}{% generation %}{{ m['content'] }}{% endgeneration %}{% endfor %}"
    ours, masked = _sft_rows_for_template(SimpleNamespace(chat_template=CHAT_TEMPLATE), rows, True)
    assert masked and ours == rows, "tuneline's template masks weight-0 turns itself"
    pairs, masked = _sft_rows_for_template(SimpleNamespace(chat_template=marked), rows, True)
    assert not masked
    assert [p["completion"][0]["content"] for p in pairs] == [rows[0]["messages"][3]["content"], "Four."]
    assert pairs[1]["prompt"] == rows[0]["messages"][:5], "earlier turns, the weight-0 one included, are the prompt"


def test_builtin_template_renders_tools_only_when_given():
    from transformers.utils.chat_template_utils import render_jinja_template

    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    [text], _ = render_jinja_template([plain], chat_template=CHAT_TEMPLATE)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    rec = tool_record(0, random.Random(1))
    [text], _ = render_jinja_template([rec["messages"]], tools=rec["tools"], chat_template=CHAT_TEMPLATE)
    assert text.startswith("<|im_start|>system\n# Tools") and json.dumps(TOOLS[0]) in text
    call = rec["messages"][1]["tool_calls"][0]["function"]
    assert f'<tool_call>\n{{"name": "stock_level", "arguments": {json.dumps(call["arguments"])}}}\n</tool_call>' in text


def kto_split(root: Path) -> Path:
    """Right answers labelled desirable, answers with a wrong quantity undesirable, unpaired."""
    for split, n, seed in (("train", 48, 1), ("val", 8, 2)):
        rows = []
        for i, rec in enumerate(order_records(n, seed, preference=True)):
            good = i % 2 == 0
            rows.append(
                {
                    "id": rec["id"],
                    "prompt": rec["prompt"],
                    "completion": rec["chosen"] if good else rec["rejected"],
                    "label": good,
                }
            )
        write_jsonl(root / "kto" / f"{split}.jsonl", rows)
    return root


def test_kto_trains_every_lora_weight_and_lowers_the_loss(make_config, tmp_path):
    split = kto_split(tmp_path / "split")
    snap = Snapshot()
    cfg = make_config(*TINY_TRAIN, "train.method=kto", "train.kto.beta=0.5")
    out = run_train(cfg, split, tmp_path / "model", tmp_path / "ckpt", callbacks=[snap]).out

    assert snap.quantized, "kto loads the base in 4-bit by default (train.kto.load_in_4bit)"
    assert_every_lora_param_changed(snap)
    assert losses(out)[0] == pytest.approx(0.5, abs=0.05), "KTO starts at 0.5 when policy == reference"
    assert read_manifest(out).method == "kto"
    # What KTO optimises: the implicit reward log p(answer) - log p_ref(answer) rises for desirable answers
    # relative to undesirable ones (the loss itself is noisy: its KL baseline moves batch to batch).
    model, tok = load_trained(out)
    rewards: dict[bool, list[float]] = {True: [], False: []}
    for rec in read_jsonl(split / "kto" / "train.jsonl"):
        tuned = completion_logp(model, tok, rec["prompt"], rec["completion"])
        with model.disable_adapter():
            ref = completion_logp(model, tok, rec["prompt"], rec["completion"])
        rewards[rec["label"]].append(tuned - ref)
    margin = sum(rewards[True]) / len(rewards[True]) - sum(rewards[False]) / len(rewards[False])
    assert margin > 2.0, f"desirable answers gained only {margin:.2f} nats over undesirable ones"


def completion_logp(model, tok, prompt: list[dict], completion: list[dict]) -> float:
    """Summed log-probability of the completion's tokens after the prompt."""
    start = len(tok.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)["input_ids"])
    ids = torch.tensor([tok.apply_chat_template(prompt + completion, return_dict=True)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    return logp[torch.arange(len(targets)), targets][start - 1 :].sum().item()


def test_kto_needs_a_batch_of_two(make_config):
    from tuneline.config.loader import ConfigError

    with pytest.raises(ConfigError, match="batch_size must be at least 2 with method kto"):
        make_config("train.method=kto", "train.batch_size=1")
