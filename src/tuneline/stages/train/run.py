"""``run_train``: split dir in, model dir out.

Model dir layout (the contract evaluate, register and serve rely on)::

    adapter/                 LoRA adapter (safetensors + adapter_config.json) and tokenizer with chat template
                             (for a full fine-tune: the whole model)
    base/                    the base model when it is not a hub id (builtin:* or an object-store copy)
    merged/                  base + adapter merged in 16-bit (train.merge)
    tuneline_model.json      manifest: base reference, method, MLflow run id, data lineage
    train_summary.json       steps, tokens, tokens/s, peak memory, wall time, final losses (DVC metrics)
    plots/{train,val}_loss.csv, loss_curve.png

The output dir is written atomically; checkpoints live in ``paths.checkpoints`` so that a
re-run after any interruption resumes instead of starting over.

Under torchrun (``train.num_gpus > 1`` or a multi-node job) every rank runs this function: all of them train
and evaluate (collectives), while only global rank 0 tracks to MLflow, marks and mirrors checkpoints and writes
the model dir; each node's local rank 0 pulls mirrored checkpoints before the others look for one to resume.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.config.schema import TunelineConfig
from tuneline.io.atomic import atomic_dir, check_output
from tuneline.models.resolve import pretrained_kwargs, resolve_base
from tuneline.models.trained import ModelDirError, read_manifest
from tuneline.planner import GIB
from tuneline.results import MODEL_MANIFEST, TRAIN_SUMMARY, ModelManifest, TrainSummary
from tuneline.stages.train import checkpoints, data
from tuneline.stages.train.callbacks import CheckpointMarker, KeepTrainableDtype, MlflowMetrics, NanGuard, Progress
from tuneline.stages.train.curves import write_curves
from tuneline.stages.train.errors import TrainError
from tuneline.stages.train.model import load_base, lora_config
from tuneline.stages.train.preflight import check_lengths, check_memory, decide, detect_device
from tuneline.tracking import digest, flatten, git_commit, mlflow_run, split_lineage, tracking_uri

log = logging.getLogger("tuneline.train")
WRITER = "tuneline train"


@dataclass(frozen=True)
class TrainResult:
    out: Path
    summary: TrainSummary | None  # None on ranks other than 0, which write nothing


def fingerprint(config: TunelineConfig, lineage: dict[str, str]) -> str:
    """Identity of a training run: checkpoints from another fingerprint are never resumed."""
    train = config.train.model_dump(
        exclude={
            "save_total_limit",
            "keep_rejected",
            "mirror_after_finish",
            "checkpoint_uri",
            "merge",
            "memory_fraction",
        }
    )
    return digest(
        {
            "model": config.model.model_dump(),
            "lora": config.lora.model_dump(),
            "train": train,
            "data": {k: v for k, v in lineage.items() if k != "dvc.lock"},
        }
    )


def _peak_memory(device_kind: str) -> tuple[int, str]:
    if device_kind == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated()), "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "process peak RSS"


def _sft_rows_for_template(tokenizer: Any, rows: list[dict[str, Any]], assistant_only: bool) -> tuple[list, bool]:
    """Conversations when the chat template can mask what is not trained, else prompt/completion rows.

    A template with ``{% generation %}`` markers (or one TRL can patch) trains every assistant turn. Turns with
    ``weight: 0`` are context: tuneline's own template leaves them outside the markers; with any other template,
    each trained turn becomes its own prompt → completion row (the turns before it as the prompt). A template
    TRL cannot patch trains the last trained assistant turn of each conversation.
    """
    if not assistant_only:
        return rows, False
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tokenizer.chat_template or ""
    weighted = any(m.get("weight") == 0 for r in rows for m in r["messages"])
    if weighted and not (has_generation_markers(template) and "weight" in template):
        log.info("the chat template cannot mask weight-0 turns: each trained assistant turn becomes its own row")
        return [pair for r in rows for pair in _trained_turns(r)], False
    if has_generation_markers(template):
        return rows, True
    try:
        get_training_chat_template(tokenizer)
        return rows, True
    except Exception:  # noqa: BLE001 - TRL raises for templates it cannot patch
        log.info("chat template has no {%% generation %%} markers: training on the last assistant turn only")
        return [last for r in rows for last in _trained_turns(r)[-1:]], False


def _trained_turns(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One prompt → completion row per assistant turn to train (weight not 0), the turns before it as prompt."""
    msgs = row["messages"]
    return [
        {"id": row["id"], "prompt": msgs[:i], "completion": [m], "tools": row["tools"]}
        for i, m in enumerate(msgs)
        if m["role"] == "assistant" and m.get("weight") != 0 and i > 0
    ]


def _common_args(config: TunelineConfig, decisions: Any, ckpt_dir: Path, has_val: bool) -> dict[str, Any]:
    t = config.train
    return dict(
        output_dir=str(ckpt_dir),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=decisions.optimizer,
        bf16=decisions.precision == "bf16",
        fp16=decisions.precision == "fp16",
        use_cpu=decisions.device.kind == "cpu",
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5 name
        activation_checkpointing_kwargs={"use_reentrant": False},
        ddp_find_unused_parameters=False,  # every trainable (LoRA) weight is used in each forward pass
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_val else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,  # CheckpointMarker rotates, after the newer checkpoint is marked complete
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        max_length=config.model.max_seq_length,
        dataloader_num_workers=0,
    )


def _build_trainer(config, decisions, model, tokenizer, train_rows, val_rows, ckpt_dir, peft_cfg):
    t = config.train
    common = _common_args(config, decisions, ckpt_dir, bool(val_rows))
    if t.method == "dpo":
        from trl import DPOConfig as Args
        from trl import DPOTrainer as Trainer

        args = Args(**common, beta=t.dpo.beta, loss_type=[t.dpo.loss_type])
    elif t.method == "kto":
        from trl import KTOConfig as Args
        from trl import KTOTrainer as Trainer

        k = t.kto
        args = Args(**common, beta=k.beta, desirable_weight=k.desirable_weight, undesirable_weight=k.undesirable_weight)
    else:
        from trl import SFTConfig as Args
        from trl import SFTTrainer as Trainer

        train_rows, assistant_only = _sft_rows_for_template(tokenizer, train_rows, t.assistant_only_loss)
        val_rows, _ = _sft_rows_for_template(tokenizer, val_rows, t.assistant_only_loss) if val_rows else ([], False)
        args = Args(**common, packing=t.packing, assistant_only_loss=assistant_only)
    return Trainer(
        model=model,
        args=args,
        train_dataset=data.dataset(train_rows),
        eval_dataset=data.dataset(val_rows) if val_rows else None,
        processing_class=tokenizer,
        peft_config=peft_cfg,
    )


def run_train(
    config: TunelineConfig,
    split_dir: str | Path,
    out: str | Path,
    checkpoint_dir: str | Path,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fine-tune the configured base on ``split_dir`` and write the model dir ``out``.

    The paths are the caller's (the CLI defaults them to ``paths.*``). ``callbacks`` are extra
    ``transformers.TrainerCallback`` objects (tests observe weights through them).
    """
    started = time.perf_counter()
    t = config.train
    split_dir, out, ckpt_dir = Path(split_dir), Path(out), Path(checkpoint_dir)
    prep = _preflight(config, split_dir, out, ckpt_dir)
    # RANK from torchrun's environment: the process group must not exist yet while each rank builds the
    # built-in base below, or transformers' save_pretrained would write it on rank 0 only
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with atomic_dir(out, WRITER, prep.inputs) if main_rank else _scratch_dir() as tmp:
        base_ref, base_path = _place_base(config, prep, split_dir, tmp)
        tokenizer, train_tokens = _load_tokenizer(config, prep, base_ref, base_path)
        plan = check_memory(config, prep.decisions.device, train_tokens=train_tokens, base=base_path)
        ranks = _ranks(cpu=prep.decisions.device.kind == "cpu")
        resume = _resume_point(config, ranks, ckpt_dir, prep.fingerprint)
        marker = CheckpointMarker(prep.fingerprint, t.checkpoint_uri, t.save_total_limit)
        trainer, progress = _trainer(config, prep, base_path, tokenizer, ckpt_dir, ranks, marker, callbacks)
        with ExitStack() as stack:
            run_ref = _open_run(stack, config, prep, ranks, marker, resume, plan)
            fit = _fit(trainer, resume, has_val=bool(prep.val_rows))
            trainer.save_model(str(tmp / "adapter"))
            tokenizer.save_pretrained(str(tmp / "adapter"))
            if not ranks.is_main_process:  # the others only had to join the collectives of train and evaluate
                return TrainResult(out=out, summary=None)
            if t.merge and not t.full_finetune:
                _merge(config, prep.decisions, base_path, tmp)
            summary = _summary(config, prep, trainer, fit, progress, plan, resume, run_ref, base_ref, started)
            summary.write(tmp / TRAIN_SUMMARY)
            curve_files = write_curves(trainer.state.log_history, tmp)
            _manifest(config, prep, base_ref, Path(base_path), tmp, run_ref).write(tmp / MODEL_MANIFEST)
            _log_run_outputs(summary, tmp / TRAIN_SUMMARY, curve_files)
    if t.checkpoint_uri:
        checkpoints.finish_mirror(t.checkpoint_uri, t.mirror_after_finish)
    log.info("train: %d steps, final loss %.4f, model in %s", summary.steps, summary.final_train_loss, out)
    return TrainResult(out=out, summary=summary)


@dataclass(frozen=True)
class _Preflight:
    """What is known before anything large is loaded: the rows, the SFT adapter a preference run starts
    from, the run's identity and the device decisions."""

    kind: str
    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    sft_dir: Path | None
    sft_manifest: ModelManifest | None
    inputs: list[Path]
    lineage: dict[str, str]
    fingerprint: str
    decisions: Any


def _preflight(config: TunelineConfig, split_dir: Path, out: Path, ckpt_dir: Path) -> _Preflight:
    t = config.train
    kind = data.kind_for(t.method)
    train_rows = data.rows_for(kind, data.load_records(split_dir, kind, "train"), t.seed)
    val_rows = data.rows_for(kind, data.load_records(split_dir, kind, "val", required=False), t.seed)
    reference = t.reference_tuning
    sft_dir = Path(reference.sft_adapter) if reference and reference.sft_adapter else None
    try:
        sft_manifest = read_manifest(sft_dir) if sft_dir else None
    except ModelDirError as exc:
        raise TrainError(f"train.{t.method}.sft_adapter: {exc}") from None
    inputs = [split_dir, ckpt_dir, *([sft_dir] if sft_dir else [])]
    check_output(out, WRITER, inputs)  # before the expensive part, not only at the swap
    lineage = split_lineage(split_dir)
    decisions = decide(config, detect_device())
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    return _Preflight(
        kind, train_rows, val_rows, sft_dir, sft_manifest, inputs, lineage, fingerprint(config, lineage), decisions
    )


def _place_base(config: TunelineConfig, prep: _Preflight, split_dir: Path, tmp: Path) -> tuple[str, str]:
    """The base's reference (as configured, or the SFT adapter's) and a path ``from_pretrained`` loads."""
    if prep.sft_manifest and prep.sft_dir:
        if prep.sft_manifest.base_dir:
            shutil.copytree(prep.sft_dir / prep.sft_manifest.base_dir, tmp / "base")
            return prep.sft_manifest.base, str(tmp / "base")
        base_ref = prep.sft_manifest.base
    else:
        base_ref = config.model.base
    try:
        return base_ref, resolve_base(base_ref, tmp / "base", lambda: data.texts(split_dir), seed=config.train.seed)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainError(f"model.base: {exc}") from None


def _load_tokenizer(config: TunelineConfig, prep: _Preflight, base_ref: str, base_path: str) -> tuple[Any, int]:
    """The tokenizer (the SFT adapter's, where a preference run starts from one), after checking that every
    record fits ``model.max_seq_length``; returns it with the training set's token count."""
    from transformers import AutoTokenizer

    source = str(prep.sft_dir / "adapter") if prep.sft_dir else base_path
    tokenizer = AutoTokenizer.from_pretrained(source, **pretrained_kwargs(config.model.revision))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise TrainError(f"the tokenizer of {base_ref} has no chat template; use an instruct/chat base model")
    limit = config.model.max_seq_length
    lengths = data.token_lengths(tokenizer, prep.train_rows)
    check_lengths(lengths, [r["id"] for r in prep.train_rows], limit, f"{prep.kind}/train")
    val_lengths = data.token_lengths(tokenizer, prep.val_rows)
    check_lengths(val_lengths, [r["id"] for r in prep.val_rows], limit, f"{prep.kind}/val")
    return tokenizer, sum(lengths)


def _resume_point(config: TunelineConfig, ranks: Any, ckpt_dir: Path, run_fp: str) -> Path | None:
    """The newest complete checkpoint of this very run (same fingerprint), pulled from the mirror if needed."""
    t = config.train
    if ranks.is_local_main_process:  # once per node: fetch, and set unusable checkpoints aside
        if t.checkpoint_uri:
            checkpoints.pull(t.checkpoint_uri, ckpt_dir)
        checkpoints.latest_resumable(ckpt_dir, run_fp)
        checkpoints.prune_rejected(ckpt_dir, t.keep_rejected)
    ranks.wait_for_everyone()
    resume = checkpoints.latest_resumable(ckpt_dir, run_fp)
    if resume:
        log.info("resuming from %s", resume)
    return resume


def _trainer(
    config: TunelineConfig, prep: _Preflight, base_path: str, tokenizer: Any, ckpt_dir: Path, ranks: Any,
    marker: CheckpointMarker, callbacks: list[Any] | None,
) -> tuple[Any, Progress]:  # fmt: skip
    """The base with its adapter (new, or the SFT one a preference run continues) in a TRL trainer, with
    tuneline's callbacks: progress, checkpoint markers and MLflow metrics on rank 0 only."""
    from transformers.trainer_callback import PrinterCallback

    model = load_base(base_path, config, prep.decisions)
    peft_cfg = None
    if prep.sft_dir:  # TRL copies the SFT adapter into a frozen "ref" adapter: the reference is the SFT model
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(prep.sft_dir / "adapter"), is_trainable=True)
    elif not config.train.full_finetune:
        peft_cfg = lora_config(config, model)
    trainer = _build_trainer(
        config, prep.decisions, model, tokenizer, prep.train_rows, prep.val_rows, ckpt_dir, peft_cfg
    )
    trainer.remove_callback(PrinterCallback)
    progress = Progress()
    main = ranks.is_main_process
    for callback in (
        KeepTrainableDtype(trainer.model),
        *((progress,) if main else ()),
        NanGuard(),
        *((marker, MlflowMetrics(progress)) if main else ()),
        *(callbacks or ()),
    ):
        trainer.add_callback(callback)
    return trainer, progress


def _open_run(
    stack: ExitStack, config: TunelineConfig, prep: _Preflight, ranks: Any, marker: CheckpointMarker,
    resume: Path | None, plan: Any,
) -> str | None:  # fmt: skip
    """Rank 0's MLflow run: the resumed checkpoint's run, or a new one with the run's inputs logged."""
    if not ranks.is_main_process:
        return None
    run_id = checkpoints.mlflow_run_of(resume) if resume else None
    uri = tracking_uri(config.registry.tracking_uri)
    try:
        run = stack.enter_context(
            mlflow_run(uri, config.registry.experiment, run_name=f"train-{config.train.method}", run_id=run_id)
        )
    except ConnectionError as exc:
        raise TrainError(str(exc)) from None
    run_ref = marker.mlflow_run_id = run.info.run_id
    if run_ref != run_id:  # a new run, not the resumed one
        _log_run_inputs(config, prep.lineage, prep.fingerprint, plan, prep.decisions)
    return run_ref


@dataclass(frozen=True)
class _Fit:
    training_loss: float
    seconds: float
    final_val: float | None


def _fit(trainer: Any, resume: Path | None, has_val: bool) -> _Fit:
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    final_val = trainer.evaluate()["eval_loss"] if has_val else None
    if final_val is not None and not math.isfinite(final_val):
        raise TrainError(f"validation loss is {final_val} after training; the adapter was not written")
    return _Fit(float(output.training_loss), seconds, final_val)


def _summary(
    config: TunelineConfig, prep: _Preflight, trainer: Any, fit: _Fit, progress: Progress, plan: Any,
    resume: Path | None, run_ref: str | None, base_ref: str, started: float,
) -> TrainSummary:  # fmt: skip
    decisions, state = prep.decisions, trainer.state
    peak, peak_kind = _peak_memory(decisions.device.kind)
    tokens_seen = int(state.num_input_tokens_seen)
    session_tokens = tokens_seen - progress.start_tokens  # this invocation only, resumed or not
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    return TrainSummary(
        method=config.train.method,
        base=base_ref,
        steps=int(state.global_step),
        epochs=float(state.epoch or 0.0),
        tokens_seen=tokens_seen,
        tokens_per_second=round(session_tokens / max(fit.seconds, 1e-9), 2),
        peak_memory_gib=round(peak / GIB, 4),
        peak_memory_kind=peak_kind,
        planned_memory_gib=round(plan.memory.total / GIB, 4),
        wall_time_s=round(time.perf_counter() - started, 2),
        train_time_s=round(fit.seconds, 2),
        final_train_loss=float(losses[-1]) if losses else fit.training_loss,
        final_val_loss=fit.final_val,
        trainable_params=int(sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)),
        resumed_from=resume.name if resume else None,
        precision=decisions.precision,
        optimizer=decisions.optimizer,
        device=decisions.device.name,
        notes=decisions.notes,
        mlflow_run_id=run_ref,
        fingerprint=prep.fingerprint,
        world_size=int(trainer.args.world_size),
    )


def _manifest(
    config: TunelineConfig, prep: _Preflight, base_ref: str, base_path: Path, tmp: Path, run_ref: str | None
) -> ModelManifest:
    t = config.train
    return ModelManifest(
        base=base_ref,
        base_dir="base" if base_path == tmp / "base" else None,
        adapter_dir="adapter",
        full_finetune=t.full_finetune,
        merged_dir="merged" if (tmp / "merged").is_dir() else None,
        method=t.method,
        sft_adapter=str(prep.sft_dir) if prep.sft_dir else None,
        mlflow_run_id=run_ref,
        git_commit=git_commit(),
        data=prep.lineage,
        params_digest=digest(config.model_dump(include={"model", "lora", "train"})),
        base_provenance=_provenance(base_path),
    )


def _provenance(base_path: Path) -> dict[str, str] | None:
    """A built-in base's provenance record (licence, source package, sha256), when the base has one."""
    import json

    from tuneline.models.packaged import PROVENANCE

    path = base_path / PROVENANCE
    if not path.is_file():
        return None
    return {k: str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k != "default_system"}


def _ranks(cpu: bool) -> Any:
    """The torchrun process group: accelerate's shared state, which the Trainer then reuses (hence ``cpu``,
    as ``use_cpu`` would have set it: gloo instead of NCCL). One process of rank 0 outside torchrun."""
    from accelerate import PartialState

    return PartialState(cpu=cpu)


@contextmanager
def _scratch_dir() -> Iterator[Path]:
    """Where a rank other than 0 puts what it builds on the way (the bundled base); discarded."""
    with tempfile.TemporaryDirectory(prefix="tuneline-rank-") as tmp:
        yield Path(tmp)


def _merge(config: TunelineConfig, decisions: Any, base_path: str, tmp: Path) -> None:
    """Merge on a 16-bit reload of the base: merging into 4-bit weights would round the update away."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if decisions.precision == "bf16" else torch.float16
    if decisions.device.kind == "cpu":
        dtype = torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype, **pretrained_kwargs(config.model.revision))
    merged = PeftModel.from_pretrained(base, str(tmp / "adapter")).merge_and_unload()
    merged.save_pretrained(str(tmp / "merged"))
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(tmp / "adapter")).save_pretrained(str(tmp / "merged"))


def _log_run_inputs(config: TunelineConfig, lineage: dict[str, str], run_fp: str, plan: Any, decisions: Any) -> None:
    import mlflow

    params = flatten(config.model_dump(include={"model", "lora", "train"}))
    mlflow.log_params({k: v for k, v in params.items() if v is not None})
    tags = {f"data.{k}": v for k, v in lineage.items()}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags.update(
        {
            "tuneline.stage": "train",
            "tuneline.fingerprint": run_fp,
            "tuneline.device": decisions.device.name,
            "tuneline.precision": decisions.precision,
            "tuneline.optimizer": decisions.optimizer,
        }
    )
    mlflow.set_tags(tags)
    mlflow.log_dict(plan.to_dict(), "plan.json")


def _log_run_outputs(summary: TrainSummary, summary_path: Path, curve_files: list[Path]) -> None:
    import mlflow

    mlflow.log_metrics({f"summary.{k}": v for k, v in summary.numeric().items()})
    mlflow.log_artifact(str(summary_path))
    for path in curve_files:
        mlflow.log_artifact(str(path), artifact_path="plots" if path.suffix == ".csv" else None)
