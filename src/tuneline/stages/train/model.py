"""Loading the base model for training (4-bit NF4 or 16/32-bit) and the LoRA configuration."""

from __future__ import annotations

import logging
from typing import Any

from tuneline.config.schema import TunelineConfig
from tuneline.models.resolve import linear_target_modules, pretrained_kwargs
from tuneline.stages.train.errors import TrainError
from tuneline.stages.train.preflight import Decisions

log = logging.getLogger("tuneline.train")


def torch_dtype(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_base(path: str, config: TunelineConfig, decisions: Decisions, quantize: bool | None = None) -> Any:
    """Load ``path`` for training; ``quantize`` overrides the decision (merging reloads in 16-bit)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = torch_dtype(decisions.precision)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": config.model.attn_implementation}
    kwargs.update(pretrained_kwargs(config.model.revision))
    quantize = decisions.quantize_4bit if quantize is None else quantize
    if quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    if decisions.device.kind == "cuda":
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantize and decisions.device.kind == "cpu":
        _keep_cpu_4bit_layout(model)
    if quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


def lora_config(config: TunelineConfig, model: Any) -> Any:
    from peft import LoraConfig

    targets = config.lora.target_modules
    if targets == "auto":
        targets = linear_target_modules(model)
        log.info("LoRA targets (auto): %s", ", ".join(targets))
    else:
        present = set(linear_target_modules(model))
        missing = sorted(set(targets) - present)
        if missing:
            raise TrainError(
                f"lora.target_modules {missing} are not linear layers of this model; available: {sorted(present)}"
            )
    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def _keep_cpu_4bit_layout(model: Any) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference during evaluation.

    On CPUs with AVX512-BF16 an eval-mode forward repacks the NF4 weights and their quant
    state, and saving a checkpoint unpacks them again, not bit-exactly: training after an
    evaluation would then differ from training after a resume. One layout keeps runs
    reproducible (a resumed run ends with the same adapter as an uninterrupted one).
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
