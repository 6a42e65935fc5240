"""Plots people look at: the KL histogram, training curves, success vs high-precision share."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_grpo_history", "plot_kl_histogram", "plot_training_curves", "save_figure"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG (parents created) and close it."""
    plt = _pyplot()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_kl_histogram(
    kls: Sequence[float], threshold: float, path: str | os.PathLike[str], *, tau: float | None = None
) -> Path:
    """Histogram of per-step ``KL(pi_low || pi_high)`` (log scale) with the label threshold marked."""
    plt = _pyplot()
    floor = 1e-6
    values = [math.log10(max(k, floor)) for k in kls]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.hist(values, bins=40, color="#4C72B0", alpha=0.85)
    cut = math.log10(max(threshold, floor))
    label = f"threshold {threshold:.3g} nats" + (f" (CDF = {tau:g})" if tau is not None else "")
    ax.axvline(cut, color="#C44E52", linestyle="--", label=label)
    ax.set_xlabel("log10 KL(π_low ‖ π_high)  [nats]")
    ax.set_ylabel("steps")
    ax.set_title(f"Per-step KL divergence ({len(kls)} steps)")
    ax.legend()
    return save_figure(fig, path)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str]) -> Path:
    """Train / validation loss and validation accuracy, precision, recall per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    left.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    left.plot(epochs, [r["val_loss"] for r in history], marker="o", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("weighted cross-entropy")
    left.legend()
    for key in ("val_accuracy", "val_precision", "val_recall"):
        right.plot(epochs, [r[key] for r in history], marker="o", label=key.removeprefix("val_"))
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    return save_figure(fig, path)


def plot_grpo_history(history: Sequence[Mapping[str, float]], path: str | os.PathLike[str]) -> Path:
    """GRPO per iteration: rollout success, high-precision share and return; KL to the start policy."""
    plt = _pyplot()
    iterations = [row["iteration"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for key, label in (("success", "success"), ("high_share", "high share"), ("return", "return")):
        left.plot(iterations, [r[key] for r in history], marker="o", label=label)
    left.set_xlabel("iteration")
    left.set_title("rollouts of the iteration")
    left.legend()
    right.plot(iterations, [r["kl"] for r in history], marker="o", color="#555555")
    right.set_xlabel("iteration")
    right.set_ylabel("KL(pi_theta || pi_theta0)")
    return save_figure(fig, path)
