"""The one typed configuration of tuneline.

``params.yaml`` is an instance of :class:`TunelineConfig`. DVC stages, the CLI and the
Kubeflow pipeline all load it through :func:`tuneline.config.load_config`; defaults live
here and nowhere else, and every field's description is its documentation (it feeds the
JSON Schema that editors use through ``params.schema.json``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from tuneline.redact import secret_looking_key, url_problem

#: The generate stage's records, inside paths.generated (what ingest reads with generate.enabled).
GENERATED_RECORDS = "generated.jsonl"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable, numbers are finite
    (``.inf`` and ``.nan`` are refused: they would reach the pipeline spec and MLflow as ``Infinity``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------------------- paths
class PathsConfig(Section):
    """Where each stage reads and writes on a workstation (``dvc repro``).

    dvc.yaml interpolates these (``${paths.ingested}``) instead of restating them.
    """

    raw: str = Field("data/raw", description="Bundled or local raw data; ingested when data.sources is empty.")
    ingested: str = Field("data/ingested", description="Output directory of the ingest stage.")
    cleaned: str = Field("data/cleaned", description="Output directory of the clean stage.")
    split: str = Field("data/split", description="Output directory of the split stage.")
    model: str = Field(
        "models/candidate", description="Output directory of the train stage (adapter, tokenizer, summary)."
    )
    checkpoints: str = Field(
        "checkpoints/train", description="Training checkpoints; kept between runs so an interrupted run resumes."
    )
    eval: str = Field("reports/eval", description="Output directory of the evaluate stage (report, metrics, gate).")
    judge_cache: str = Field(
        "cache/judge.sqlite", description="Cache of judge calls, kept between runs so a re-run does not pay twice."
    )
    registration: str = Field("reports/registration.json", description="What the register stage registered.")
    generated: str = Field(
        "data/generated",
        description="Output directory of the generate stage; with generate.enabled, ingest reads its "
        f"{GENERATED_RECORDS} beside data.sources.",
    )
    generate_cache: str = Field(
        "cache/generate.sqlite",
        description="Cache of teacher and judge calls of the generate stage: a killed run resumes without paying "
        "for a call twice.",
    )


# ----------------------------------------------------------------------------- data
RecordFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "preference", "kto"]
# The record fields ingest's readers understand; a source's ``columns`` maps them onto its own names.
Column = Literal[
    "messages",
    "conversations",
    "system",
    "tools",
    "instruction",
    "input",
    "output",
    "history",
    "prompt",
    "question",
    "chosen",
    "rejected",
    "completion",
    "label",
]
Role = Literal["system", "user", "assistant", "tool", "tool_call"]
FileKind = Literal["auto", "jsonl", "json", "csv", "parquet", "hf"]


class Source(Section):
    """One input: a path, glob, directory, ``s3://``/``gs://``/``https://`` URI or HF dataset."""

    uri: str = Field(
        description="Local path/glob/dir, s3://, gs://, https:// URI, or hf:NAME / a saved HF dataset dir."
    )
    format: RecordFormat = Field("auto", description="Record format; 'auto' detects it per record.")
    kind: FileKind = Field("auto", description="File kind; 'auto' infers it from the extension.")
    hf_split: str = Field("train", description="Split to read from a Hugging Face dataset.")
    columns: dict[Column, str] = Field(
        default_factory=dict,
        description="The source's own field names: {messages: conversation, chosen: better, ...} (what "
        "LLaMA-Factory's dataset_info columns and axolotl's field_messages declare).",
    )
    role_key: str | None = Field(None, description="Message key holding the role, when not role/from.")
    content_key: str | None = Field(None, description="Message key holding the text, when not content/value.")
    roles: dict[str, Role] = Field(
        default_factory=dict,
        description="The source's role tags → roles, e.g. {agent: assistant, customer: user}; tool_call marks "
        "an assistant turn whose text is a tool call (ShareGPT's function_call).",
    )


def _source_from_str(value: object) -> object:
    return {"uri": value} if isinstance(value, str) else value


class RayClusterConfig(Section):
    """The KubeRay ``RayJob`` the KFP data steps submit when ``data.engine`` is ``ray`` (its head and workers)."""

    workers: int = Field(4, ge=1, le=1000, description="Ray worker pods.")
    worker_cpu: int = Field(4, ge=1, description="CPU cores per worker pod (its Ray num-cpus).")
    worker_memory: str = Field("8Gi", description="Memory request and limit per worker pod (Kubernetes quantity).")
    head_cpu: int = Field(2, ge=1, description="CPU cores of the head pod (it runs the driver: the stage itself).")
    head_memory: str = Field("8Gi", description="Memory of the head pod.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels of the CPU pool the head and workers run on ({} = any node)."
    )
    spot: bool = Field(
        True,
        description="Run the workers on spot/preemptible capacity (Ray retries the tasks of a lost worker; the "
        "head stays on regular nodes).",
    )
    ray_version: str = Field("2.60.0", description="Ray version of images.cpu (KubeRay's rayVersion).")
    service_account: str = Field(
        "tuneline-ray",
        description="Service account of the Ray head and workers (infra/ makes it: the pipeline's workload "
        "identity to the bucket, no Kubernetes role and no mounted API token, so code that reaches Ray cannot "
        "act as the pipeline in the cluster).",
    )
    stage_uri: str | None = Field(
        None,
        description="s3:// or gs:// prefix the step and the RayJob exchange inputs and outputs through "
        "(per run and step); required for data.engine=ray on Kubernetes. The step removes what it staged once it "
        "has the output; infra/'s `stage_uri` output is a prefix the bucket also expires after 7 days.",
    )
    timeout_s: int = Field(86400, ge=60, description="Give up following the RayJob after this long.")
    cpu_hourly_usd: float = Field(
        0.048,
        ge=0,
        description="Price of one vCPU-hour of the pool the head and workers run on (on-demand list price of "
        "m6i/n2-standard, edit for yours); `benchmarks/data_prep.py --scaling` extrapolates the cost of a run with it.",
    )


class RayConfig(Section):
    """How the data stages run with ``data.engine: ray`` (Ray tasks over the same stage logic as ``local``)."""

    address: str | None = Field(
        None,
        description="Ray cluster to join ('auto', ray://host:10001); null: RAY_ADDRESS if set, else a local "
        "Ray started on this machine.",
    )
    num_cpus: int = Field(0, ge=0, description="CPUs of the local Ray started when there is no address; 0 = all.")
    max_retries: int = Field(
        4, ge=0, description="Times Ray re-runs a block whose worker died (tasks are idempotent: nothing doubles)."
    )
    cluster: RayClusterConfig = RayClusterConfig()


class DataConfig(Section):
    """Ingestion: where records come from and how many bad ones are tolerated."""

    engine: Literal["local", "ray"] = Field(
        "local",
        description="What runs ingest, clean and split: 'local' (worker processes on this machine) or 'ray' "
        "(Ray tasks; on Kubernetes a KubeRay RayJob). Both keep and remove exactly the same records.",
    )
    block_records: int = Field(
        16384,
        ge=1024,
        description="Records per block: the unit of work of both engines (and of Ray's retries).",
    )
    ray: RayConfig = RayConfig()

    sources: list[Annotated[Source, BeforeValidator(_source_from_str)]] = Field(
        default_factory=list,
        description="Inputs to ingest (a string is shorthand for {uri: ...}); empty means every file under paths.raw.",
    )
    max_bad_fraction: float = Field(
        0.2, ge=0.0, le=1.0, description="Fail the ingest when more than this share of records is quarantined."
    )
    raw_preview_chars: int = Field(
        500, ge=0, description="How much of a rejected record's raw text the quarantine keeps."
    )
    max_record_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Longest JSONL line read as a record; a longer one is quarantined with its line and size, "
        "and never held in memory whole.",
    )
    allow_insecure_sources: bool = Field(
        False,
        description="Read plain http:// URLs and URLs naming this machine or a private or link-local address "
        "(off: a source URL must not reach a pod's metadata server or internal services).",
    )
    source_options: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="fsspec storage options per protocol (e.g. {s3: {endpoint_url: ...}}); secrets belong in env vars.",
    )


# ---------------------------------------------------------------------------- clean
class NormalizeRule(Section):
    enabled: bool = Field(True, description="Unicode-normalize text and strip control characters.")
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = Field(
        "NFC",
        description="Unicode normalization form. NFC changes no meaning; NFKC also folds compatibility forms, "
        "which rewrites Chinese full-width punctuation to ASCII and superscripts (m/s², CO₃²⁻) to digits.",
    )


class ToggleRule(Section):
    enabled: bool = Field(True, description="Whether the rule runs.")


class NearDedupRule(Section):
    enabled: bool = Field(
        True, description="Drop near duplicates found by MinHash LSH (datasketch's signature scheme)."
    )
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Estimated Jaccard similarity that counts as duplicate.")
    num_perm: int = Field(64, ge=16, le=512, description="MinHash permutations (accuracy vs. speed).")
    shingle_words: int = Field(3, ge=1, le=10, description="Words per shingle.")


class PiiRule(Section):
    enabled: bool = Field(True, description="Redact PII with typed placeholders such as [EMAIL].")
    email: bool = True
    phone: bool = Field(True, description="Valid phone numbers by libphonenumber (international, or of phone_region).")
    phone_region: str = Field(
        "US",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 region of phone numbers written without a +country code (e.g. DE reads 030 98820959).",
    )
    credit_card: bool = Field(True, description="Card numbers that pass the Luhn check.")
    ssn: bool = True
    ip_address: bool = True
    iban: bool = Field(True, description="IBANs that pass the ISO 13616 mod-97 check.")
    secrets: bool = Field(True, description="Cloud access keys, API tokens, private keys, JWTs.")
    names: bool = Field(False, description="Person names via Presidio NER (needs the 'ner' extra).")


class QualityRule(Section):
    enabled: bool = Field(True, description="Drop records outside the length/turn/repetition bounds.")
    min_chars: int = Field(2, ge=0, description="Minimum characters over all turns.")
    max_chars: int = Field(32000, ge=1, description="Maximum characters over all turns.")
    min_turns: int = Field(2, ge=1, description="Minimum messages per conversation (system included).")
    max_turns: int = Field(128, ge=1, description="Maximum messages per conversation.")
    max_repetition: float = Field(
        0.5, gt=0.0, le=1.0, description="Maximum share of repeated word 3-grams in any one message."
    )

    @model_validator(mode="after")
    def _bounds(self) -> QualityRule:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        if self.min_turns > self.max_turns:
            raise ValueError(f"min_turns ({self.min_turns}) must not exceed max_turns ({self.max_turns})")
        return self


class TokenLengthRule(Section):
    enabled: bool = Field(False, description="Drop records longer than max_tokens under the configured tokenizer.")
    max_tokens: int = Field(2048, ge=1, description="Token budget per record (usually model.max_seq_length).")
    tokenizer: str | None = Field(
        None, description="Tokenizer directory or hub id; defaults to model.base when that is not builtin."
    )


class CleanConfig(Section):
    """Cleaning rules, each switchable; applied in the order listed here."""

    normalize: NormalizeRule = NormalizeRule()
    pii: PiiRule = PiiRule()
    quality: QualityRule = QualityRule()
    token_length: TokenLengthRule = TokenLengthRule()
    exact_dedup: ToggleRule = ToggleRule()
    near_dedup: NearDedupRule = NearDedupRule()
    workers: int = Field(0, ge=0, description="Worker processes for per-record rules; 0 = one per CPU core.")
    examples_per_rule: int = Field(3, ge=0, description="Examples per rule kept in the clean report.")


# ---------------------------------------------------------------------------- split
class SplitRatios(Section):
    train: float = Field(0.8, ge=0.0, le=1.0)
    val: float = Field(0.1, ge=0.0, le=1.0)
    test: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitRatios:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1.0, got {total:g}")
        return self


class LeakageConfig(Section):
    check: bool = Field(True, description="Look for exact and near duplicate prompts between train and val/test.")
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Near-duplicate Jaccard threshold (MinHash).")
    action: Literal["report", "remove", "fail"] = Field(
        "remove", description="What to do with leaked val/test records: report only, remove them, or fail the stage."
    )


class SplitConfig(Section):
    """How cleaned records are divided into train/val/test, deterministically."""

    strategy: Literal["random", "stratified", "temporal", "group"] = Field(
        "random",
        description="random; stratified by `field`; temporal by timestamp `field` (oldest to train); "
        "group keeps all records of a `field` value (default: source) in one split.",
    )
    field: str | None = Field(
        None, description="Record field for stratified/temporal/group, e.g. 'meta.category' or 'source'."
    )
    ratios: SplitRatios = SplitRatios()
    seed: int = Field(42, description="Seed of every random choice in the split.")
    leakage: LeakageConfig = LeakageConfig()

    @model_validator(mode="after")
    def _field_needed(self) -> SplitConfig:
        if self.strategy in ("stratified", "temporal") and not self.field:
            raise ValueError(f"strategy '{self.strategy}' needs split.field (e.g. 'meta.category')")
        return self


# ------------------------------------------------------------- model and training
class ModelConfig(Section):
    """The base model that training adapts."""

    base: str = Field(
        "builtin:tiny",
        description="Base model: 'builtin:tiny' (built offline, mechanics only), a hub id, a local dir, or s3:// gs://.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of a hub base model.")
    max_seq_length: int = Field(512, ge=16, description="Longest tokenized record used in training.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel; flash_attention_2 needs the flash-attn package and a GPU."
    )


class LoraConfig(Section):
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: int = Field(16, ge=1, description="LoRA scaling alpha.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["auto"] = Field(
        "auto", description="Modules to adapt; 'auto' picks every linear projection of the architecture."
    )


class ReferenceTuning(Section):
    """What preference methods share: a frozen reference model (the base, or an SFT run) and a KL strength."""

    beta: float = Field(0.1, gt=0.0, description="Strength of the KL pull towards the reference model.")
    sft_adapter: str | None = Field(
        None,
        description="Model dir of an SFT run (its adapter/ is trained further and is the reference); "
        "null starts a fresh adapter on the base.",
    )
    load_in_4bit: bool = Field(True, description="Load the base in 4-bit NF4 (QLoRA-style).")


class DpoConfig(ReferenceTuning):
    """Direct preference optimisation on the preference split (train.method: dpo): paired chosen/rejected."""

    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO loss variant.")


class KtoConfig(ReferenceTuning):
    """Kahneman-Tversky optimisation on the kto split (train.method: kto): unpaired answers labelled
    desirable or not (LLaMA-Factory's kto_tag, axolotl's KTO label). Needs train.batch_size >= 2: the KL
    term compares each answer with another prompt's in the same batch."""

    desirable_weight: float = Field(
        1.0, gt=0.0, description="Weight of desirable answers' loss (raise it when they are the minority)."
    )
    undesirable_weight: float = Field(1.0, gt=0.0, description="Weight of undesirable answers' loss.")


# Methods that tune against a frozen reference, each on its own record kind (TrainConfig.reference_tuning).
REFERENCE_METHODS = ("dpo", "kto")


class TrainConfig(Section):
    """Fine-tuning: method, schedule, checkpoints."""

    method: Literal["qlora", "lora", "dpo", "kto"] = Field(
        "qlora",
        description="qlora: LoRA on a 4-bit NF4 base; lora: LoRA on a 16-bit base; dpo: paired preference tuning; "
        "kto: unpaired (desirable/undesirable) preference tuning.",
    )
    full_finetune: bool = Field(
        False, description="Train every weight instead of a LoRA adapter (method lora only; 4-bit weights are frozen)."
    )
    epochs: float = Field(5.0, gt=0.0)
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: run all epochs).")
    learning_rate: float = Field(
        2e-3, gt=0.0, description="Peak learning rate (high for the random-init built-in model; ~2e-4 for real models)."
    )
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="Fraction of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    batch_size: int = Field(8, ge=1, description="Sequences per device per step.")
    eval_batch_size: int = Field(16, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    seed: int = Field(42, description="Seeds data order, dropout, adapter init and the built-in model.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Compute dtype; auto: bf16 where the GPU supports it, else fp16 on GPU, fp32 on CPU."
    )
    optimizer: Literal["auto", "paged_adamw_8bit", "adamw_8bit", "adamw_torch"] = Field(
        "auto", description="auto: paged 8-bit AdamW for qlora on GPU, adamw_torch elsewhere."
    )
    gradient_checkpointing: bool = Field(True, description="Recompute activations in backward to save memory.")
    packing: bool = Field(False, description="Pack several records into one sequence (no padding waste).")
    assistant_only_loss: bool = Field(True, description="Train on assistant tokens only.")
    logging_steps: int = Field(5, ge=1, description="Log loss, tokens/s and learning rate every N steps.")
    eval_steps: int = Field(25, ge=1, description="Validation loss every N steps.")
    save_steps: int = Field(25, ge=1, description="Checkpoint every N steps (a multiple of logging_steps).")
    save_total_limit: int = Field(
        3,
        ge=1,
        description="Complete checkpoints kept on disk (and in the mirror); older ones are deleted only after "
        "a newer one is marked complete, so a kill at any point leaves one to resume from.",
    )
    keep_rejected: int = Field(
        3, ge=0, description="Unusable checkpoints set aside in <checkpoints>/rejected/ that are kept (newest first)."
    )
    mirror_after_finish: Literal["keep", "last", "delete"] = Field(
        "last",
        description="What a finished run leaves in checkpoint_uri: every kept checkpoint, the last one "
        "(a re-run of the same run resumes at its end), or nothing.",
    )
    checkpoint_uri: str | None = Field(
        None, description="Also mirror checkpoints to this s3:// gs:// or local prefix (survives a lost node)."
    )
    merge: bool = Field(False, description="Also write a merged 16-bit model (base reloaded in 16-bit first).")
    num_gpus: int = Field(
        1,
        ge=1,
        description="GPUs per node; above 1 training (CLI, dvc repro or the KFP step) runs under torchrun (DDP).",
    )
    num_nodes: int = Field(
        1, ge=1, description="Nodes; above 1 the KFP train step runs a Kubeflow Trainer TrainJob (or a PyTorchJob)."
    )
    memory_fraction: float = Field(
        0.9, gt=0.0, le=1.0, description="Share of device memory the pre-flight plan may use."
    )
    dpo: DpoConfig = DpoConfig()
    kto: KtoConfig = KtoConfig()

    @model_validator(mode="after")
    def _coherent(self) -> TrainConfig:
        if self.full_finetune and self.method != "lora":
            raise ValueError(
                f"full_finetune is only possible with method 'lora' (got '{self.method}'): "
                "4-bit quantized weights cannot be trained; use method: lora, or full_finetune: false"
            )
        if self.save_steps % self.logging_steps:
            raise ValueError(
                f"save_steps ({self.save_steps}) must be a multiple of logging_steps ({self.logging_steps}) "
                "so that a NaN loss is seen before a checkpoint is written"
            )
        if self.method == "kto" and self.batch_size < 2:
            raise ValueError(
                f"batch_size must be at least 2 with method kto (got {self.batch_size}): KTO's KL term pairs "
                "each answer with another example's prompt in the same batch"
            )
        return self

    @property
    def reference_tuning(self) -> ReferenceTuning | None:
        """The settings of a preference method (dpo, kto); None for SFT methods."""
        return {"dpo": self.dpo, "kto": self.kto}.get(self.method)


ReferenceMetric = Literal["exact_match", "rouge_l", "token_f1", "valid_json", "field_accuracy"]
# the tool-calling records' accuracies (tuneline.results.TOOL_METRICS), scored by BFCL's rules
ToolMetric = Literal["tool_call_accuracy", "tool_name_accuracy", "tool_argument_accuracy", "tool_irrelevance_accuracy"]
# the benchmarks' summaries (eval.benchmarks): BFCL accuracy over the categories run, lm-eval's mean task score
BenchmarkMetric = Literal["bfcl_accuracy", "lm_eval_score"]
GateMetric = Literal[ReferenceMetric, ToolMetric, BenchmarkMetric]


class EvalGate(Section):
    """Quality gate: every check must pass for the registry to get the ``candidate`` alias."""

    min_judge_score: float = Field(
        5.0, ge=1.0, le=10.0, description="Minimum mean judge score (1-10) of the candidate."
    )
    min_win_rate: float = Field(
        0.5, ge=0.0, le=1.0, description="Minimum pairwise win rate against the baseline (ties count half)."
    )
    max_regression: float = Field(
        0.02, ge=0.0, description="Largest tolerated drop from the baseline on any metric in regression_metrics."
    )
    regression_metrics: list[GateMetric] = Field(
        default_factory=lambda: [
            "exact_match",
            "rouge_l",
            "token_f1",
            "tool_call_accuracy",
            "bfcl_accuracy",
            "lm_eval_score",
        ],  # fmt: skip
        description="Reference, tool-call or benchmark metrics (higher is better, 0-1) checked against the baseline "
        "(each skipped where it is not measured, e.g. tool_call_accuracy on a split without tool-calling records, "
        "bfcl_accuracy with eval.benchmarks.bfcl off).",
    )
    max_judge_parse_failures: float = Field(
        0.2, ge=0.0, le=1.0, description="Largest tolerated share of judge outputs without a readable verdict."
    )
    primary_metric: GateMetric | None = Field(
        "field_accuracy",
        description="Reference or tool-call metric on which the candidate must beat the baseline by more than "
        "min_improvement "
        "(skipped where it is not measured, e.g. field_accuracy on answers that are not JSON; null: no such check).",
    )
    min_improvement: float = Field(
        0.0, ge=0.0, le=1.0, description="The candidate's primary_metric must exceed the baseline's by more than this."
    )
    min_judge_kappa: float | None = Field(
        0.2,
        ge=-1.0,
        le=1.0,
        description="Judge-truth agreement (Cohen's kappa of pairwise verdicts, else single grades, against reference "
        "correctness) below which the judge is not trusted; measured only where correctness is known. null: trust it.",
    )
    min_judge_accuracy: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="Judge-truth accuracy required instead when kappa is undefined (all true labels alike).",
    )
    untrusted_judge: Literal["reference_only", "fail"] = Field(
        "reference_only",
        description="When the judge is not trusted: reference_only skips the judge's checks (score, win rate) and "
        "decides on the reference metrics; fail fails the gate.",
    )


class JudgeConfig(Section):
    """LLM-as-judge (MT-Bench method): single-answer grading and pairwise comparison in both orders."""

    model: str = Field(
        "builtin:tiny",
        description="Local judge: builtin:tiny, builtin:smollm2-135m, a model dir or a cached hub id; run in-process "
        "in logprobs mode, served by `transformers serve` on 127.0.0.1 in generate mode. Ignored when endpoint is set.",
    )
    mode: Literal["logprobs", "generate"] = Field(
        "logprobs",
        description="logprobs: the verdict is the judge's first token, read from its probabilities (always a verdict; "
        "needs the chat API when endpoint is set); generate: the judge explains, then the verdict is parsed from text.",
    )
    top_logprobs: int = Field(
        5, ge=1, le=20, description="Alternatives requested per logprob judgement from an endpoint (TGI allows 5)."
    )
    endpoint: str | None = Field(
        None, description="URL of a running TGI, vLLM or OpenAI-compatible server to use as judge instead."
    )
    api: Literal["chat", "generate"] = Field(
        "chat", description="chat: /v1/chat/completions (TGI, vLLM, OpenAI); generate: TGI's native /generate."
    )
    prompts_dir: str | None = Field(
        None, description="Directory with single.txt, pairwise.txt and/or rubric.txt replacing the bundled ones."
    )
    pairwise: bool = Field(True, description="Also compare candidate and baseline answers pairwise.")
    max_new_tokens: int = Field(256, ge=1, description="Token budget of one judgement.")
    concurrency: int = Field(4, ge=1, description="Judge requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one request.")
    max_retries: int = Field(3, ge=0, description="Retries of a request on timeouts, 429 and 5xx, with backoff.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry.")
    token_env: str = Field(
        "TUNELINE_JUDGE_TOKEN",
        description="Environment variable holding the judge endpoint's bearer token (its own, never HF_TOKEN's).",
    )
    human_labels: str | None = Field(
        None, description="JSONL of {id, winner: candidate|baseline|tie} to measure judge agreement against."
    )

    @model_validator(mode="after")
    def _logprobs_need_chat(self) -> JudgeConfig:
        if self.mode == "logprobs" and self.endpoint and self.api != "chat":
            raise ValueError(
                "eval.judge.api: logprobs mode reads token probabilities from the chat API; set api: chat "
                "or mode: generate"
            )
        return self


# BFCL v4's single-turn Python categories, checked by its AST rules (tuneline.stages.evaluate.toolcalls); the
# Java/JavaScript ones have their own type rules, multi-turn, memory and web search need live state or APIs
BfclCategory = Literal[
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
]  # fmt: skip


class BfclConfig(Section):
    """The Berkeley Function Calling Leaderboard (v4) offline: questions and possible answers from the installed
    ``bfcl-eval`` wheel, asked with their functions as tools, scored by BFCL's AST rules."""

    categories: list[BfclCategory] = Field(
        default_factory=list, description="Categories to run on candidate and baseline (empty: BFCL off)."
    )
    n: int = Field(25, ge=1, description="Questions per category, drawn with seed (a category with fewer: all).")
    seed: int = Field(0, description="Seed of the question sample (the same questions for both models).")


class LmEvalConfig(Section):
    """EleutherAI's lm-evaluation-harness tasks, on the in-process models or the endpoints (chat completions)."""

    tasks: list[str] = Field(default_factory=list, description="Task names (empty: lm-eval off).")
    include_path: str | None = Field(
        None,
        description="Directory of task YAMLs (e.g. a task over a local JSONL file); with it, only these tasks are "
        "indexed, not the harness's own hundreds.",
    )
    limit: int | None = Field(None, ge=1, description="Examples per task (None: all).")
    num_fewshot: int | None = Field(None, ge=0, description="Few-shot examples (None: each task's default).")
    batch_size: int = Field(8, ge=1, description="In-process batch size (endpoints are asked one at a time).")
    max_gen_toks: int = Field(256, ge=1, description="Answer length where a task sets none (endpoints).")


class BenchmarksConfig(Section):
    """Standard benchmarks beside the judge, each on the candidate and the baseline, in-process or through the
    same endpoints as the answers (eval.candidate_endpoint, eval.baseline_endpoint)."""

    bfcl: BfclConfig = BfclConfig()
    lm_eval: LmEvalConfig = LmEvalConfig()


class EvalConfig(Section):
    """Evaluation of the candidate against a baseline on the held-out split."""

    split: Literal["test", "val"] = Field("test", description="Split to evaluate on.")
    max_examples: int | None = Field(None, ge=1, description="Evaluate only the first N examples (None: all).")
    max_new_tokens: int = Field(64, ge=1, description="Answer length when generating candidate and baseline answers.")
    tool_max_new_tokens: int = Field(
        160, ge=1, description="Answer length of tool-calling prompts (the split's and BFCL's): calls run longer."
    )
    batch_size: int = Field(16, ge=1, description="Generation batch size in-process.")
    candidate_endpoint: str | None = Field(
        None, description="Generate candidate answers through this endpoint instead of in-process."
    )
    candidate_token_env: str = Field(
        "TUNELINE_CANDIDATE_TOKEN", description="Environment variable holding candidate_endpoint's bearer token."
    )
    candidate_model: str | None = Field(
        None,
        description="Model name sent to candidate_endpoint (vLLM: the adapter's served name, as `tuneline serve` "
        "prints it); None: the first model the endpoint lists.",
    )
    baseline: Literal["auto", "base", "champion", "none"] = Field(
        "auto", description="auto: the registry's champion when one exists, else the untouched base model."
    )
    baseline_endpoint: str | None = Field(None, description="Generate baseline answers through this endpoint.")
    baseline_token_env: str = Field(
        "TUNELINE_BASELINE_TOKEN", description="Environment variable holding baseline_endpoint's bearer token."
    )
    baseline_model: str | None = Field(
        None, description="Model name sent to baseline_endpoint; None: the first model the endpoint lists."
    )
    judge: JudgeConfig = JudgeConfig()
    gate: EvalGate = EvalGate()
    benchmarks: BenchmarksConfig = BenchmarksConfig()


class RegistryConfig(Section):
    tracking_uri: str = Field("sqlite:///mlruns.db", description="MLflow tracking URI (MLFLOW_TRACKING_URI wins).")
    experiment: str = Field("tuneline", min_length=1, description="MLflow experiment of training and evaluation runs.")
    model_name: str = Field("tuneline-chat", min_length=1, description="Registered model name.")


class EnvironmentConfig(Section):
    """One deployment environment: where Argo CD syncs the chart and which MLflow alias marks what it serves."""

    alias: str = Field(
        pattern=r"^[a-z][a-z0-9_-]*$",
        description="MLflow alias set on the version this environment serves, once merged.",
    )
    namespace: str = Field("tuneline", description="Namespace of the release (the serving identity is bound here).")
    cluster: str = Field("https://kubernetes.default.svc", description="Argo CD destination server of this env.")
    require_gate: bool = Field(True, description="Refuse to promote a version whose evaluation gate failed.")
    auto_sync: bool = Field(True, description="Argo CD syncs on merge (false: someone presses Sync).")


def _default_environments() -> dict[str, EnvironmentConfig]:
    return {
        "dev": EnvironmentConfig(alias="dev", namespace="tuneline-dev", require_gate=False),
        "staging": EnvironmentConfig(alias="staging", namespace="tuneline-staging"),
        "prod": EnvironmentConfig(alias="champion", auto_sync=False),
    }


class EngineConfig(Section):
    """Limits of the serving engine: `tuneline serve` passes them to vLLM and the chart renders the same values
    (through files/platform.json), so a model that serves locally serves the same way in the cluster."""

    max_model_len: int = Field(4096, ge=64, description="Longest prompt + answer in tokens (vLLM --max-model-len).")
    max_loras: int = Field(
        4,
        ge=1,
        le=64,
        description="Adapters resident at once (vLLM --max-loras): room for a new version beside the old.",
    )
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256, 320, 512] = Field(
        64, description="Largest LoRA rank an adapter may have (vLLM --max-lora-rank; one of vLLM's sizes)."
    )
    tool_call_parser: str | None = Field(
        "hermes",
        pattern=r"^[a-z0-9_]+$",
        description="vLLM's parser of the model's tool calls into the API's tool_calls (--enable-auto-tool-choice "
        "--tool-call-parser): hermes reads the <tool_call> JSON tuneline's chat template trains; null: requests "
        "with tools are refused by vLLM.",
    )


class LocalServeConfig(Section):
    """`tuneline serve` on a workstation: vLLM's OpenAI-compatible server from its own venv (`make serve-setup`)."""

    python: str = Field(
        ".venv-serve/bin/python",
        description="Interpreter of the venv that has vLLM (its pins clash with the app's: it cannot share .venv).",
    )
    host: str = Field("127.0.0.1", description="Address the server binds (127.0.0.1: this machine only).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the OpenAI-compatible API.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Weights dtype; float32 on CPU gives exactly the in-process (PEFT) answers, bf16 does not.",
    )
    enforce_eager: bool = Field(
        True, description="Skip torch.compile and CUDA graphs: ~25 s start-up on CPU instead of ~100 s."
    )
    kv_cache_gib: int = Field(1, ge=1, description="CPU KV cache in GiB (VLLM_CPU_KVCACHE_SPACE).")
    startup_timeout_s: float = Field(600.0, gt=0, description="Give up when the server is not healthy by then.")
    adapter_store: str = Field(
        "cache/adapters",
        description="Directory vLLM's LoRA resolver loads unknown adapter names from (one sub-directory per name).",
    )
    chat_python: str = Field(
        ".venv-chat/bin/python", description="Interpreter of the venv that has Open WebUI (`tuneline serve --chat`)."
    )
    chat_port: int = Field(8080, ge=1, le=65535, description="Port of the Open WebUI chat page.")
    chat_data_dir: str = Field("cache/open-webui", description="Open WebUI's database and uploads.")


class ServeConfig(Section):
    """Serving: the engine's limits, local serving, the chart's defaults, the environments and GitOps promotion."""

    runtime: Literal["tgi", "vllm"] = Field(
        "vllm", description="Serving runtime rendered by the chart (TGI is in maintenance upstream; still selectable)."
    )
    engine: EngineConfig = EngineConfig()
    local: LocalServeConfig = LocalServeConfig()
    gpu: str = Field("l4", description="Default GPU pool of the chart (one of infra.gpu_pools).")
    chart: str = Field("charts/tuneline", description="The serving chart, relative to the repository root.")
    values_dir: str = Field("deploy/environments", description="One values file per environment (differences only).")
    apps_dir: str = Field("deploy/argocd", description="One Argo CD Application per environment (generated).")
    environments: dict[str, EnvironmentConfig] = Field(
        default_factory=_default_environments, description="Deployment environments, in promotion order."
    )
    repo_url: str = Field("https://github.com/tuneline/tuneline.git", description="Git repository Argo CD syncs.")
    base_branch: str = Field("main", description="Branch that promotion pull requests target.")
    remote: str = Field("origin", description="Git remote that promotion branches are pushed to.")
    github_api: str = Field("https://api.github.com", description="GitHub REST API (GitHub Enterprise: its /api/v3).")
    token_env: str = Field("GITHUB_TOKEN", description="Environment variable holding the token for pull requests.")

    @field_validator("github_api")
    @classmethod
    def _https_only(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not loopback:
            raise ValueError(f"must be an https:// URL (the promotion token is sent to it), got {value!r}")
        return value

    @field_validator("environments")
    @classmethod
    def _env_names(cls, value: dict[str, EnvironmentConfig]) -> dict[str, EnvironmentConfig]:

        if not value:
            raise ValueError("at least one environment is needed")
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise ValueError(f"environment name '{name}' must be lowercase letters, digits and '-'")
        return value


# ------------------------------------------------------------------ images, Kubeflow
class ImagesConfig(Section):
    """Container images: the one place that the KFP pipeline, the serving chart and the CI image build read."""

    cpu: str = Field("ghcr.io/tuneline/tuneline:0.1.0", description="Data, evaluation and registration steps.")
    gpu: str = Field("ghcr.io/tuneline/tuneline-cuda:0.1.0", description="Training step (CUDA, bitsandbytes).")
    tgi: str = Field(
        "ghcr.io/huggingface/text-generation-inference:3.3.6",
        description="TGI serving runtime (the chart's flags are checked against this version).",
    )
    vllm: str = Field(
        "vllm/vllm-openai:v0.32.0",
        description="vLLM serving runtime (the release line the local serving tests run: vllm-cpu 0.32.0).",
    )
    chat_ui: str = Field(
        "ghcr.io/open-webui/open-webui:v0.12.4",
        description="The chart's optional chat page (the Open WebUI release `tuneline serve --chat` runs).",
    )

    @model_validator(mode="after")
    def _pinned(self) -> ImagesConfig:
        for key in ("cpu", "gpu", "tgi", "vllm", "chat_ui"):
            ref = getattr(self, key)
            if "@sha256:" not in ref and (":" not in ref.rsplit("/", 1)[-1] or ref.endswith(":latest")):
                raise ValueError(f"images.{key}: '{ref}' needs an exact tag or digest (not 'latest')")
        return self


class StepResources(Section):
    cpu: str = Field(description="CPU request (Kubernetes quantity).")
    memory: str = Field(description="Memory request and limit (Kubernetes quantity).")


class SecretsConfig(Section):
    """Kubernetes Secrets mounted as env vars into the steps (kfp-kubernetes); never pipeline parameters."""

    hub_token: str | None = Field("hf-token", description="Secret with key HF_TOKEN (gated base models); null: none.")
    mlflow: str | None = Field(
        "mlflow-credentials", description="Secret with MLFLOW_TRACKING_URI (+ _USERNAME/_PASSWORD/_TOKEN); null: none."
    )
    object_store: str | None = Field(
        None, description="Secret with AWS_*/GOOGLE_* keys; leave null with workload identity (the default on infra/)."
    )
    teacher: str | None = Field(
        None,
        description="Secret holding generate.teacher.token_env (the generate step's teacher endpoint); null: none.",
    )


class KubeflowConfig(Section):
    """How the KFP pipeline runs on a cluster (``tuneline pipeline compile|submit``)."""

    pipeline_name: str = Field("tuneline", description="Pipeline name shown in the KFP UI.")
    host: str | None = Field(None, description="KFP API endpoint; null: in-cluster or the kube config's proxy.")
    namespace: str = Field("kubeflow", description="Namespace (profile) runs are created in.")
    experiment: str = Field("tuneline", description="KFP experiment runs are filed under.")
    token_env: str = Field("KFP_TOKEN", description="Env var holding a bearer token for the KFP API, if any.")
    train_gpu: str = Field("l4", description="GPU (an infra.gpu_pools entry) the train step is scheduled on.")
    service_account: str = Field(
        "tuneline-pipeline",
        description="Service account of the steps and training pods (infra/ makes it: workload identity to the "
        "bucket, no Secret reads; upstream's pipeline-runner may read every Secret in the namespace).",
    )
    cpu_step: StepResources = StepResources(cpu="2", memory="8Gi")
    train_step: StepResources = StepResources(cpu="8", memory="48Gi")
    retries: int = Field(3, ge=0, description="Retries of the train step (spot preemption); it resumes.")
    retry_backoff: str = Field("120s", description="Wait before the first retry (doubles after each).")
    cache_data_steps: bool = Field(True, description="Reuse ingest/clean/split outputs when inputs and config match.")
    multi_node_api: Literal["trainjob", "pytorchjob"] = Field(
        "trainjob", description="train.num_nodes > 1: Kubeflow Trainer v2 TrainJob, or Training Operator v1 PyTorchJob."
    )
    training_runtime: str = Field("torch-distributed", description="ClusterTrainingRuntime a TrainJob refers to.")
    job_timeout_s: int = Field(86400, ge=60, description="Give up following a multi-node job after this long.")
    checkpoint_pvc: str | None = Field(
        None,
        description="PersistentVolumeClaim mounted into the train step; with train.checkpoint_uri unset, "
        "checkpoints are kept on it so a retried pod resumes without object storage (use ReadWriteMany: EFS, "
        "Filestore, so the retried pod can mount it on another node). Single-node training only.",
    )
    secrets: SecretsConfig = SecretsConfig()


# -------------------------------------------------------------------------- planner
class GpuSpec(Section):
    """One accelerator of the catalogue: what the planner sizes against and how to schedule onto it."""

    name: str = Field(description="Short name, also the node-pool suffix (gpu-<name>).")
    memory_gib: float = Field(gt=0, description="Accelerator memory.")
    bf16_tflops: float = Field(gt=0, description="Dense 16-bit tensor TFLOP/s (fp16 where bf16 is unsupported).")
    bf16: bool = Field(True, description="Supports bfloat16 compute.")
    hourly_usd: float = Field(ge=0, description="On-demand price of one GPU per hour (list price; edit for yours).")
    eks_instance_type: str | None = Field(None, description="EC2 instance type of the EKS node pool.")
    gke_accelerator: str | None = Field(None, description="GKE accelerator type (cloud.google.com/gke-accelerator).")
    gke_machine_type: str | None = Field(None, description="GCE machine type of the GKE node pool.")
    eks_gpus_per_node: int = Field(1, ge=1, description="GPUs on one node of the EKS instance type.")
    gke_gpus_per_node: int = Field(1, ge=1, description="GPUs attached to one node of the GKE machine type.")


def _default_gpus() -> list[GpuSpec]:
    rows = [
        ("t4", 16, 65, False, 0.53, "g4dn.xlarge", "nvidia-tesla-t4", "n1-standard-8"),
        ("l4", 24, 121, True, 0.80, "g6.xlarge", "nvidia-l4", "g2-standard-8"),
        ("a10g", 24, 125, True, 1.01, "g5.xlarge", None, None),
        ("l40s", 48, 362, True, 1.86, "g6e.xlarge", None, None),
        ("a100-40gb", 40, 312, True, 3.67, "p4d.24xlarge", "nvidia-tesla-a100", "a2-highgpu-1g"),
        ("a100-80gb", 80, 312, True, 5.07, "p4de.24xlarge", "nvidia-a100-80gb", "a2-ultragpu-1g"),
        ("h100-80gb", 80, 989, True, 11.06, "p5.48xlarge", "nvidia-h100-80gb", "a3-highgpu-1g"),
    ]
    keys = [
        "name",
        "memory_gib",
        "bf16_tflops",
        "bf16",
        "hourly_usd",
        "eks_instance_type",
        "gke_accelerator",
        "gke_machine_type",
    ]
    eight_gpu_instances = {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge"}
    return [
        GpuSpec(**dict(zip(keys, row, strict=True)), eks_gpus_per_node=8 if row[5] in eight_gpu_instances else 1)
        for row in rows
    ]


class PlanConfig(Section):
    """Memory and cost planner (``tuneline plan`` and training's pre-flight)."""

    gpus: list[GpuSpec] = Field(default_factory=_default_gpus, description="GPU catalogue, smallest first.")
    mfu: dict[str, float] = Field(
        default_factory=lambda: {"qlora": 0.30, "lora": 0.40, "full": 0.40, "dpo": 0.30, "kto": 0.30},
        description="Assumed model-FLOPs utilisation per method (qlora calibrated on HF's Llama-2-7B A100 figure).",
    )
    overhead_gib: float = Field(1.0, ge=0, description="CUDA context and allocator overhead per GPU.")


# ---------------------------------------------------------------------------- infra
class GpuTaint(Section):
    """The taint every GPU node carries, so that only pods asking for a GPU land (and scale up) there."""

    key: str = Field("nvidia.com/gpu", description="Taint key (GKE puts this one on GPU nodes itself).")
    value: str = Field("present", description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field("NoSchedule", description="Taint effect.")


class GpuPool(Section):
    """One autoscaled GPU node pool; its machine shape comes from the ``plan.gpus`` entry of the same name."""

    gpu: str = Field(description="Name of a plan.gpus entry; the pool is called gpu-<name>.")
    max_nodes: int = Field(2, ge=1, description="Autoscaling ceiling; the floor is always 0 (scale from zero).")
    spot: bool = Field(True, description="Spot (EKS) / Spot VMs (GKE): cheaper, may be preempted mid-run.")
    disk_gib: int = Field(200, ge=50, description="Node boot disk (images with CUDA are large).")


class InfraConfig(Section):
    """GPU node pools: the one place that infra/ (Terraform), the training step and the serving chart read.

    ``tuneline infra export`` writes the pools into each Terraform root as ``gpu_pools.auto.tfvars.json``.
    """

    cloud: Literal["eks", "gke"] = Field("eks", description="Whose node-label conventions pods are scheduled by.")
    label_prefix: str = Field("tuneline.io", description="Prefix of the labels tuneline puts on its node pools.")
    gpu_taint: GpuTaint = GpuTaint()
    gpu_pools: list[GpuPool] = Field(
        default_factory=lambda: [GpuPool(gpu="l4", max_nodes=2), GpuPool(gpu="a100-80gb", max_nodes=1, spot=False)],
        description="GPU node pools the clusters get.",
    )


# ------------------------------------------------------------------------- generate
class TeacherConfig(Section):
    """The model that writes synthetic data: an OpenAI-compatible chat endpoint (vLLM, TGI, a hosted API) through
    the judge's client, or a local model in-process."""

    endpoint: str | None = Field(None, description="URL of the teacher's server (None: model, in-process).")
    served_model: str | None = Field(
        None, description="Model name sent to the endpoint (None: the first model it lists)."
    )
    model: str = Field(
        "builtin:smollm2-135m",
        description="In-process teacher when endpoint is unset: a packaged built-in, a model directory (a tuneline "
        "model dir: its fine-tune), or a cached hub id.",
    )
    api: Literal["chat"] = Field("chat", description="The endpoint's API (chat completions).")
    token_env: str = Field(
        "TUNELINE_TEACHER_TOKEN", description="Environment variable holding the endpoint's bearer token."
    )
    concurrency: int = Field(4, ge=1, description="Teacher requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one request.")
    max_retries: int = Field(3, ge=0, description="Retries on timeouts, 429 and 5xx, with backoff.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry.")


class GenerateConfig(Section):
    """Synthetic data from a teacher (``tuneline generate``): new instructions in the seeds' style
    (self_instruct), the teacher's answers to the seeds' prompts (distil), or two answers ranked by the judge
    (preference). Filtered, deduplicated, with provenance on every record; resumable and bounded by a budget."""

    enabled: bool = Field(
        False,
        description="Run generate as the pipeline's first step (dvc repro, the KFP pipeline) and ingest its "
        "records beside data.sources. `tuneline generate` runs whatever this says.",
    )
    gpu: bool = Field(
        False, description="KFP: run the generate step on the GPU pool, as train (an in-process teacher)."
    )
    method: Literal["self_instruct", "distil", "preference"] = Field("self_instruct", description="What to make.")
    seeds: str = Field(
        "data/raw/orders_messages.jsonl",
        description="JSONL of seed records: conversations (messages), or prompt/completion, instruction/output "
        "pairs. self_instruct imitates them; distil and preference answer their prompts.",
    )
    n: int = Field(40, ge=1, description="self_instruct: new instructions asked for; distil, preference: prompts.")
    samples: int = Field(1, ge=1, description="distil: answers per prompt (sampled with different seeds).")
    few_shot: int = Field(3, ge=1, description="self_instruct: seed instructions shown per request.")
    temperature: float = Field(0.8, ge=0.0, le=2.0, description="Sampling temperature of new text.")
    preference_temperatures: tuple[float, float] = Field(
        (0.2, 1.2), description="preference: the two answers' temperatures (the judge decides which is chosen)."
    )
    max_new_tokens: int = Field(128, ge=1, description="Length of one teacher answer.")
    max_similarity: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="self_instruct: drop a new instruction whose ROUGE-L F with any seed or kept instruction is "
        "above this (Self-Instruct's filter).",
    )
    min_judge_score: float | None = Field(
        None,
        ge=1.0,
        le=10.0,
        description="Keep an answer only when the judge (eval.judge, logprob mode) rates it at least this "
        "(1-10); None: no judge filter. preference always asks the judge.",
    )
    max_tokens: int | None = Field(
        None, ge=1, description="Budget of teacher tokens (prompt + completion) for one run; None: unbounded."
    )
    price_per_million_tokens: float | None = Field(
        None, ge=0.0, description="The teacher's price, for the report's cost (None: not reported)."
    )
    kto: bool = Field(
        False,
        description="Write the judge's verdicts as unpaired KTO records (prompt, completion, label) instead: "
        "preference's chosen and rejected answers apart; self_instruct and distil label each judged answer by "
        "min_judge_score (required) rather than dropping the low ones.",
    )
    seed: int = Field(0, description="Seed of every sampled choice and teacher call.")
    teacher: TeacherConfig = TeacherConfig()

    @model_validator(mode="after")
    def _kto_needs_a_verdict(self) -> GenerateConfig:
        if self.kto and self.method != "preference" and self.min_judge_score is None:
            raise ValueError(
                "generate.kto: self_instruct and distil label answers by the judge; set generate.min_judge_score"
            )
        return self


# ----------------------------------------------------------------------------- root
class TunelineConfig(Section):
    """Root of params.yaml."""

    paths: PathsConfig = PathsConfig()
    data: DataConfig = DataConfig()
    clean: CleanConfig = CleanConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    registry: RegistryConfig = RegistryConfig()
    serve: ServeConfig = ServeConfig()
    generate: GenerateConfig = GenerateConfig()
    images: ImagesConfig = ImagesConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()
    plan: PlanConfig = PlanConfig()
    infra: InfraConfig = InfraConfig()

    @model_validator(mode="after")
    def _no_secrets(self) -> TunelineConfig:
        """The config is compiled into the pipeline spec, logged to MLflow and committed: no credential may be in it."""
        for proto, options in self.data.source_options.items():
            for key in options:
                if secret_looking_key(key):
                    raise ValueError(
                        f"data.source_options.{proto}.{key}: looks like a credential, and the config is "
                        "compiled into the pipeline and committed; set it in the environment instead "
                        "(e.g. AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS)"
                    )

        def walk(node: object, where: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, f"{where}.{k}" if where else str(k))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{where}.{i}")
            elif isinstance(node, str) and (problem := url_problem(node)):
                raise ValueError(f"{where}: the URL {problem}")

        walk(self.model_dump(), "")
        return self

    @model_validator(mode="after")
    def _pools_in_catalogue(self) -> TunelineConfig:
        known = {g.name: g for g in self.plan.gpus}
        names = [p.gpu for p in self.infra.gpu_pools]
        for i, name in enumerate(names):
            if name not in known:
                raise ValueError(f"infra.gpu_pools.{i}.gpu: '{name}' is not in plan.gpus ({', '.join(known)})")
            if names.index(name) != i:
                raise ValueError(f"infra.gpu_pools.{i}.gpu: '{name}' is listed twice")
            gpu = known[name]
            if not (gpu.eks_instance_type and gpu.gke_accelerator and gpu.gke_machine_type):
                raise ValueError(
                    f"infra.gpu_pools.{i}.gpu: '{name}' needs eks_instance_type, gke_accelerator and gke_machine_type "
                    "in plan.gpus to get a pool on both clouds"
                )
        if self.serve.gpu not in names:
            raise ValueError(f"serve.gpu: '{self.serve.gpu}' has no node pool; infra.gpu_pools has {', '.join(names)}")
        if self.kubeflow.train_gpu not in names:
            raise ValueError(
                f"kubeflow.train_gpu: '{self.kubeflow.train_gpu}' has no node pool; infra.gpu_pools has {', '.join(names)}"
            )
        return self
