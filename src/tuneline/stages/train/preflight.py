"""Pre-flight: everything that can be known to fail is checked before a large model is loaded.

Checks, in order: the config is coherent for the device (precision, optimizer, quantized
merges), the data fits ``model.max_seq_length``, and the planner's memory estimate fits
the device. Decisions the device forces (fp32 on CPU, no paged optimizer without CUDA)
are logged once, each with its reason, and recorded in the train summary.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from tuneline.config.schema import TunelineConfig
from tuneline.planner import GIB, Plan, make_plan
from tuneline.stages.train.errors import TrainError

log = logging.getLogger("tuneline.train")


@dataclass(frozen=True)
class Device:
    kind: str  # "cuda" | "cpu"
    name: str
    memory_bytes: int
    bf16: bool
    count: int = 1


def detect_device() -> Device:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Device("cuda", props.name, props.total_memory, torch.cuda.is_bf16_supported(), torch.cuda.device_count())
    import psutil

    return Device("cpu", "cpu", psutil.virtual_memory().available, bf16=False)


@dataclass
class Decisions:
    """What the pre-flight settled; the trainer follows it and the summary records it."""

    device: Device
    precision: str
    optimizer: str
    quantize_4bit: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["device"] = asdict(self.device)
        return out


def decide(config: TunelineConfig, device: Device) -> Decisions:
    """Precision and optimizer for this device, refusing settings it cannot run, with a note for each choice."""
    train = config.train
    notes: list[str] = []
    quantize = train.method == "qlora" or bool(train.reference_tuning and train.reference_tuning.load_in_4bit)
    precision = _precision(train.precision, device, notes)
    optimizer = _optimizer(train.optimizer, quantize, device, notes)
    if config.model.attn_implementation == "flash_attention_2" and device.kind != "cuda":
        raise TrainError("model.attn_implementation=flash_attention_2 needs a GPU: use sdpa")
    if train.merge and quantize:
        notes.append("merge: the adapter was trained on a 4-bit base; the base is reloaded in 16-bit to merge")
    for note in notes:
        log.info("pre-flight: %s", note)
    return Decisions(device, precision, optimizer, quantize, notes)


def _precision(wanted: str, device: Device, notes: list[str]) -> str:
    if device.kind == "cpu":
        if wanted in ("bf16", "fp16"):
            raise TrainError(
                f"train.precision={wanted} needs a GPU; this machine has none: set train.precision to auto or fp32"
            )
        notes.append("no GPU: computing in fp32 on CPU (slow; fine for models of a few hundred million parameters)")
        return "fp32"
    if wanted == "auto":
        if not device.bf16:
            notes.append(f"{device.name} has no bf16: computing in fp16")
        return "bf16" if device.bf16 else "fp16"
    if wanted == "bf16" and not device.bf16:
        raise TrainError(f"train.precision=bf16 is not supported by {device.name}: set train.precision to auto or fp16")
    return wanted


def _optimizer(wanted: str, quantize: bool, device: Device, notes: list[str]) -> str:
    if wanted == "auto":
        if quantize and device.kind != "cuda":
            notes.append("no GPU: paged 8-bit AdamW needs CUDA, using adamw_torch")
        return "paged_adamw_8bit" if quantize and device.kind == "cuda" else "adamw_torch"
    if wanted in ("paged_adamw_8bit", "adamw_8bit") and device.kind != "cuda":
        raise TrainError(f"train.optimizer={wanted} needs a GPU: set train.optimizer to auto or adamw_torch")
    return wanted


def check_lengths(lengths: list[int], ids: list[str], max_len: int, where: str) -> None:
    """Fail when records would be truncated: a cut-off answer teaches the model to stop mid-way."""
    too_long = [(n, i) for n, i in zip(lengths, ids, strict=True) if n > max_len]
    if too_long:
        longest = max(too_long)
        examples = ", ".join(i for _, i in sorted(too_long, reverse=True)[:5])
        raise TrainError(
            f"{len(too_long)} of {len(lengths)} records in {where} exceed model.max_seq_length={max_len} tokens "
            f"(longest: {longest[0]} tokens, ids: {examples}); raise model.max_seq_length or lower "
            "clean.token_length.max_tokens and re-run clean"
        )


def check_memory(config: TunelineConfig, device: Device, train_tokens: int, base: str | None = None) -> Plan:
    plan = make_plan(config, base=base, train_tokens=train_tokens)
    budget = device.memory_bytes * config.train.memory_fraction
    need = plan.memory.total - (plan.memory.overhead if device.kind == "cpu" else 0)
    log.info(
        "pre-flight: memory plan %.2f GiB for %s %s (seq %d × batch %d) on %s with %.1f GiB",
        need / GIB,
        plan.base,
        plan.method,
        plan.seq_len,
        plan.batch_size,
        device.name,
        device.memory_bytes / GIB,
    )
    if need > budget:
        suggestion = (
            f"; a {plan.recommended.name} ({plan.recommended.memory_gib:g} GiB) fits" if plan.recommended else ""
        )
        raise TrainError(
            f"the memory plan ({need / GIB:.1f} GiB) exceeds {config.train.memory_fraction:.0%} of {device.name}'s "
            f"{device.memory_bytes / GIB:.1f} GiB: lower train.batch_size or model.max_seq_length, use method qlora, "
            f"or enable train.gradient_checkpointing{suggestion} (see `tuneline plan`)"
        )
    return plan
