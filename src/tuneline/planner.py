"""Memory and cost planner: will this model + method + batch fit, on which GPU, for how long and how much.

The estimate is arithmetic on the architecture's shapes, so it runs before anything is
loaded (training's pre-flight calls it) and for models that are not on this machine
(presets of public architectures). Terms, per GPU:

- weights: 4-bit NF4 (+ double-quantisation constants) for the linear layers under qlora,
  16-bit otherwise; embeddings and lm_head stay 16-bit, as bitsandbytes leaves them;
- trainable parameters (LoRA in fp32, or every weight for a full fine-tune) with their
  gradients and optimizer state (8-bit AdamW: 2 bytes/param, AdamW: 8, plus fp32 master
  weights for a full fine-tune);
- activations: with gradient checkpointing one 16-bit hidden state per layer plus one
  layer's full activations being recomputed, without it every layer's;
- logits: 16-bit logits, their fp32 upcast and gradient for every token;
- a fixed CUDA context / allocator overhead.

Throughput is peak 16-bit FLOP/s × an assumed model-FLOPs utilisation (params.yaml
``plan.mfu``) over the FLOPs per token (forward 2N, backward 2N for activation gradients,
+2N for weight gradients of a full fine-tune, +2N for recomputation under checkpointing).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tuneline.config.schema import REFERENCE_METHODS, GpuSpec, TunelineConfig
from tuneline.gpu_pools import CLOUDS, node_selector
from tuneline.models.catalogue import SHAPES, builtin_name, is_builtin, is_packaged

GIB = 1024**3
NF4_BITS = 4 + 0.127  # 4-bit codes + double-quantised absmax constants (QLoRA paper, section 3)


@dataclass(frozen=True)
class Architecture:
    """The shapes of a decoder-only transformer that memory and FLOPs depend on."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    tie_word_embeddings: bool = False

    @property
    def kv_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads * self.num_key_value_heads

    @property
    def linear_params_per_layer(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return 2 * h * h + 2 * h * self.kv_dim + 3 * h * i

    @property
    def linear_params(self) -> int:
        return self.linear_params_per_layer * self.num_hidden_layers

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def total_params(self) -> int:
        norms = (2 * self.num_hidden_layers + 1) * self.hidden_size
        return self.linear_params + self.embedding_params + norms

    def lora_params(self, r: int) -> int:
        """LoRA parameters when every linear projection (q k v o gate up down) is adapted."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_dim
        per_layer = r * ((h + h) * 2 + (h + kv) * 2 + (h + i) * 3)
        return per_layer * self.num_hidden_layers

    @classmethod
    def from_hf_config(cls, cfg: object) -> Architecture:
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        heads = text.num_attention_heads
        return cls(
            vocab_size=text.vocab_size,
            hidden_size=text.hidden_size,
            intermediate_size=text.intermediate_size,
            num_hidden_layers=text.num_hidden_layers,
            num_attention_heads=heads,
            num_key_value_heads=getattr(text, "num_key_value_heads", None) or heads,
            tie_word_embeddings=bool(getattr(text, "tie_word_embeddings", False)),
        )


# Public architectures (from their published config.json), so plans need no download.
PRESETS: dict[str, Architecture] = {
    "llama-2-7b": Architecture(32000, 4096, 11008, 32, 32, 32),
    "llama-2-13b": Architecture(32000, 5120, 13824, 40, 40, 40),
    "llama-2-70b": Architecture(32000, 8192, 28672, 80, 64, 8),
    "mistral-7b": Architecture(32000, 4096, 14336, 32, 32, 8),
    "llama-3-8b": Architecture(128256, 4096, 14336, 32, 32, 8),
    "qwen2.5-0.5b": Architecture(151936, 896, 4864, 24, 14, 2, tie_word_embeddings=True),
}


def architecture_of(base: str) -> Architecture:
    """Shapes of ``base``: a preset name, ``builtin:*``, a local model dir, or a hub id in the local cache."""
    if base in PRESETS:
        return PRESETS[base]
    if is_packaged(base):
        from tuneline.models.packaged import materialize

        base = str(materialize(builtin_name(base)))  # real numbers from the converted model's config.json
    elif is_builtin(base):
        shape = {k: v for k, v in SHAPES[builtin_name(base)].items() if k != "initializer_range"}
        return Architecture(**{k: int(v) for k, v in shape.items()}, tie_word_embeddings=True)
    config_file = Path(base) / "config.json"
    if config_file.is_file():
        from transformers import AutoConfig

        return Architecture.from_hf_config(AutoConfig.from_pretrained(base))
    try:
        from transformers import AutoConfig

        return Architecture.from_hf_config(AutoConfig.from_pretrained(base, local_files_only=True))
    except OSError as exc:
        raise ValueError(
            f"cannot read the architecture of {base!r}: not a preset ({', '.join(PRESETS)}), "
            "not builtin:*, not a local model dir, and not in the local hub cache"
        ) from exc


Method = str  # "qlora" | "lora" | "full" | "dpo" | "kto"


@dataclass(frozen=True)
class MemoryPlan:
    weights: float
    trainable: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float
    trainable_params: int

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.trainable
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.overhead
        )

    def rows(self) -> list[tuple[str, float]]:
        items = asdict(self)
        items.pop("trainable_params")
        return [(k, v / GIB) for k, v in items.items()] + [("total", self.total / GIB)]


def estimate_memory(
    arch: Architecture,
    method: Method,
    seq_len: int,
    batch_size: int,
    lora_r: int = 8,
    gradient_checkpointing: bool = True,
    optimizer: str = "auto",
    overhead_gib: float = 1.0,
    quantized: bool | None = None,
) -> MemoryPlan:
    """Peak accelerator bytes of one training step (see the module docstring for the terms).

    ``quantized`` (default: qlora, dpo, kto) loads the linear layers in 4-bit; DPO runs chosen and
    rejected sequences together, KTO each answer and a mismatched KL one, so both hold twice the
    activations of SFT at the same batch.
    """
    full = method == "full"
    quantized = method in ("qlora", *REFERENCE_METHODS) if quantized is None else quantized
    linear_bytes = NF4_BITS / 8 if quantized else 2.0
    weights = arch.linear_params * linear_bytes + (arch.total_params - arch.linear_params) * 2.0
    trainable_params = arch.total_params if full else arch.lora_params(lora_r)
    eight_bit = optimizer in ("paged_adamw_8bit", "adamw_8bit") or (optimizer == "auto" and quantized)
    if full:
        trainable = 4.0 * trainable_params  # fp32 master weights (the 16-bit copy is in `weights`)
        gradients = 2.0 * trainable_params
    else:
        trainable = 4.0 * trainable_params
        gradients = 4.0 * trainable_params
    optimizer_bytes = (2.0 if eight_bit else 8.0) * trainable_params

    sequences = batch_size * (2 if method in REFERENCE_METHODS else 1)
    tokens = sequences * seq_len
    h, i = arch.hidden_size, arch.intermediate_size
    per_layer_token = 2.0 * (7 * h + 4 * i)  # 16-bit: q k v, attn out, norms, mlp in, gate, up, act, product
    if gradient_checkpointing:
        activations = tokens * (2.0 * h * arch.num_hidden_layers + per_layer_token)
    else:
        activations = tokens * per_layer_token * arch.num_hidden_layers
    if quantized:  # one layer's weights dequantised to 16-bit at a time
        activations += arch.linear_params_per_layer * 2.0
    logits = tokens * arch.vocab_size * (2 + 4 + 4)
    return MemoryPlan(
        weights=weights,
        trainable=trainable,
        gradients=gradients,
        optimizer=optimizer_bytes,
        activations=activations,
        logits=logits,
        overhead=overhead_gib * GIB,
        trainable_params=trainable_params,
    )


def flops_per_token(arch: Architecture, method: Method, gradient_checkpointing: bool, seq_len: int) -> float:
    n = arch.total_params
    passes = 2 + 2 + (2 if method == "full" else 0) + (2 if gradient_checkpointing else 0)
    attention = 2 * arch.num_hidden_layers * seq_len * arch.hidden_size * passes / 2
    return passes * n + attention


def tokens_per_second(
    arch: Architecture, method: Method, gpu: GpuSpec, mfu: float, gradient_checkpointing: bool, seq_len: int
) -> float:
    return mfu * gpu.bf16_tflops * 1e12 / flops_per_token(arch, method, gradient_checkpointing, seq_len)


@dataclass(frozen=True)
class GpuOption:
    gpu: GpuSpec
    fits: bool
    tokens_per_second: float
    hours: float
    cost_usd: float


@dataclass(frozen=True)
class Plan:
    base: str
    method: Method
    seq_len: int
    batch_size: int
    total_params: int
    memory: MemoryPlan
    options: list[GpuOption]
    recommended: GpuSpec | None
    train_tokens: int

    def to_dict(self) -> dict:
        return {
            "base": self.base,
            "method": self.method,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "total_params": self.total_params,
            "trainable_params": self.memory.trainable_params,
            "memory_gib": {k: round(v, 3) for k, v in self.memory.rows()},
            "train_tokens": self.train_tokens,
            "recommended": self.recommended.name if self.recommended else None,
            "node_selector": node_selectors(self.recommended) if self.recommended else None,
            "options": [
                {
                    "gpu": o.gpu.name,
                    "memory_gib": o.gpu.memory_gib,
                    "fits": o.fits,
                    "tokens_per_second": round(o.tokens_per_second),
                    "hours": round(o.hours, 3),
                    "cost_usd": round(o.cost_usd, 2),
                }
                for o in self.options
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def node_selectors(gpu: GpuSpec) -> dict[str, dict[str, str]]:
    """Node labels that pin a pod to this GPU's pool, per cloud."""
    return {cloud: sel for cloud in CLOUDS if (sel := node_selector(gpu, cloud))}


def make_plan(
    config: TunelineConfig,
    base: str | None = None,
    method: Method | None = None,
    seq_len: int | None = None,
    batch_size: int | None = None,
    train_tokens: int = 0,
) -> Plan:
    """Plan for the configured (or given) model/method; ``train_tokens`` is tokens per epoch."""
    base = base or config.model.base
    if method is None:
        method = "full" if config.train.full_finetune else config.train.method
    seq_len = seq_len or config.model.max_seq_length
    batch_size = batch_size or config.train.batch_size
    arch = architecture_of(base)
    memory = estimate_memory(
        arch,
        method,
        seq_len,
        batch_size,
        lora_r=config.lora.r,
        gradient_checkpointing=config.train.gradient_checkpointing,
        optimizer=config.train.optimizer,
        overhead_gib=config.plan.overhead_gib,
        quantized=method == "qlora" or (method in REFERENCE_METHODS and getattr(config.train, method).load_in_4bit),
    )
    mfu = config.plan.mfu.get(method, 0.3)
    total_tokens = train_tokens * config.train.epochs * (2 if method in REFERENCE_METHODS else 1)
    options = []
    for gpu in config.plan.gpus:
        fits = memory.total <= gpu.memory_gib * GIB * config.train.memory_fraction
        tps = tokens_per_second(arch, method, gpu, mfu, config.train.gradient_checkpointing, seq_len)
        hours = total_tokens / tps / 3600 if tps else 0.0
        options.append(GpuOption(gpu, fits, tps, hours, hours * gpu.hourly_usd))
    fitting = [o.gpu for o in options if o.fits]
    recommended = min(fitting, key=lambda g: (g.memory_gib, g.hourly_usd)) if fitting else None
    return Plan(base, method, seq_len, batch_size, arch.total_params, memory, options, recommended, int(train_tokens))
