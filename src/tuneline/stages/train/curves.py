"""Loss curves from the Trainer's log history: CSV files for ``dvc plots`` and a PNG for MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneline.io.atomic import write_text_atomic

TRAIN_CSV, VAL_CSV, PNG = "plots/train_loss.csv", "plots/val_loss.csv", "loss_curve.png"


def curves(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e]
    val = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e]
    return train, val


def write_curves(log_history: list[dict[str, Any]], out: Path) -> list[Path]:
    train, val = curves(log_history)
    paths = []
    for rel, rows in ((TRAIN_CSV, train), (VAL_CSV, val)):
        write_text_atomic(out / rel, "step,loss\n" + "".join(f"{s},{v:.6f}\n" for s, v in rows))
        paths.append(out / rel)
    paths.append(_plot(train, val, out / PNG))
    return paths


def _plot(train: list[tuple[int, float]], val: list[tuple[int, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("tuneline training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
