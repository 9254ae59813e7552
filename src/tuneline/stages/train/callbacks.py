"""Trainer callbacks: progress with tokens/s and ETA, the NaN guard, checkpoint markers, MLflow metrics."""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tuneline.progress import stage_progress
from tuneline.stages.train import checkpoints
from tuneline.stages.train.errors import TrainError

log = logging.getLogger("tuneline.train")


class Progress(TrainerCallback):
    """A rich bar on a terminal; one log line per logging step otherwise (DVC, KFP, CI)."""

    def __init__(self) -> None:
        self._ctx: Any = None
        self._bar: Any = None
        self._task: Any = None
        self._start = 0.0
        self._start_step = 0
        self.start_tokens = 0
        self.tokens_per_second = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start, self._start_step = time.perf_counter(), state.global_step
        self.start_tokens = state.num_input_tokens_seen
        if sys.stderr.isatty():
            self._ctx = stage_progress("train")
            self._bar = self._ctx.__enter__()
            self._task = self._bar.add_task("steps", total=state.max_steps, completed=state.global_step, rate="")

    def _rate(self, state) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        done = state.global_step - self._start_step
        tps = (state.num_input_tokens_seen - self.start_tokens) / elapsed
        eta = (state.max_steps - state.global_step) * elapsed / max(done, 1)
        return tps, eta

    def on_step_end(self, args, state, control, **kwargs):
        self.tokens_per_second, _ = self._rate(state)
        if self._bar is not None:
            self._bar.update(self._task, completed=state.global_step, rate=f"{self.tokens_per_second:,.0f} tok/s")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._bar is not None or not logs:
            return
        tps, eta = self._rate(state)
        shown = {k: logs[k] for k in ("loss", "eval_loss", "learning_rate", "grad_norm") if k in logs}
        log.info(
            "step %d/%d  %s  %.0f tok/s  eta %ds",
            state.global_step,
            state.max_steps,
            "  ".join(f"{k} {v:.4g}" for k, v in shown.items()),
            tps,
            eta,
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = self._bar = None


class NanGuard(TrainerCallback):
    """Stop at the first non-finite loss, before it can be checkpointed (save_steps % logging_steps == 0)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "eval_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                last = checkpoints.checkpoints(Path(args.output_dir))
                kept = f"the last good checkpoint {last[0]} is kept" if last else "no checkpoint was written yet"
                raise TrainError(
                    f"{key} became {value} at step {state.global_step}; training stopped and {kept}. "
                    "Lower train.learning_rate, keep train.max_grad_norm, or use train.precision=fp32/bf16 "
                    "instead of fp16"
                )


class CheckpointMarker(TrainerCallback):
    """Mark each checkpoint complete once the Trainer has written it, mirror it, then rotate old ones.

    The Trainer's own rotation (``save_total_limit``) deletes old checkpoints before this marker exists, so a kill
    in between could leave none complete; here the oldest are deleted only after the newest is marked (and
    mirrored), keeping ``keep`` complete ones.

    ``mlflow_run_id`` is set once the run is open; the marker carries it so that a resume on another node
    (no local state but the pulled checkpoint) continues the same MLflow run."""

    def __init__(self, fingerprint: str, mirror_uri: str | None, keep: int) -> None:
        self.fingerprint = fingerprint
        self.mirror_uri = mirror_uri
        self.keep = keep
        self.mlflow_run_id: str | None = None

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"{checkpoints.PREFIX}{state.global_step}"
        if not ckpt.is_dir():
            return
        checkpoints.mark_complete(ckpt, state.global_step, self.fingerprint, self.mlflow_run_id)
        if self.mirror_uri:
            checkpoints.push(ckpt, self.mirror_uri)
        kept = checkpoints.rotate(ckpt.parent, self.keep)
        if self.mirror_uri:
            checkpoints.prune_remote(self.mirror_uri, kept)


class MlflowMetrics(TrainerCallback):
    """Per-step metrics into the active MLflow run (loss, eval_loss, learning rate, grad norm, tokens/s)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        if not logs or mlflow.active_run() is None:
            return
        metrics = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        if "loss" in logs:
            metrics["tokens_per_second"] = self.progress.tokens_per_second
            metrics["tokens_seen"] = float(state.num_input_tokens_seen)
        mlflow.log_metrics(metrics, step=state.global_step)


class KeepTrainableDtype(TrainerCallback):
    """Give resumed trainable weights (and their optimizer state) the dtype they had when the trainer was built.

    TRL keeps QLoRA adapters in bf16, but the Trainer reloads a checkpoint's adapter through
    PEFT, which upcasts it to fp32: without this, a resumed run would continue in another
    precision and end with a different adapter than an uninterrupted one.
    """

    def __init__(self, model: Any) -> None:
        self.dtypes = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        changed = []
        for name, param in model.named_parameters():
            want = self.dtypes.get(name)
            if want is not None and param.dtype != want:
                param.data = param.data.to(want)
                changed.append(param)
        if optimizer is not None and changed:
            inner = getattr(optimizer, "optimizer", optimizer)
            for param in changed:
                for key, value in inner.state.get(param, {}).items():
                    if key != "step" and hasattr(value, "is_floating_point") and value.is_floating_point():
                        inner.state[param][key] = value.to(param.dtype)
