"""Stage 1 of router training, KL-ST: supervise the router with KL-divergence labels.

From episodes rolled out with the high model acting and both precisions' action distributions
recorded (``Step.kl = KL(pi_low || pi_high)``), keep the successful episodes, label a step
"needs high" when the empirical CDF of its KL is at least ``tau``, and train :class:`RouterNet`
with class-weighted cross-entropy, keeping the checkpoint with the best validation loss.

The same trainer takes the other label sources of :mod:`precision_router.training.labels`
(``KLSTConfig(labels="disagree" | "counterfactual")``), and a router that also reads the low
model's signals (``RouterConfig(n_signals=len(probe.FEATURES))``): text only, signals only (the
probe) and both can be compared on the same labels.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from precision_router.errors import EmptyTraceSetError
from precision_router.routing.network import RouterConfig, RouterNet, pad_sequences
from precision_router.traces.schema import Episode
from precision_router.training.data import EmbeddingCache, StepRecord, episode_states, sequences, signal_rows

__all__ = ["KLSTConfig", "KLSTResult", "kl_labels", "klst_records", "train_klst"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KLSTConfig:
    """KL-ST settings (defaults from the paper: 5 epochs, batch 64, lr 1e-4, tau at the 85th percentile).

    Attributes:
        tau: a step is labelled "needs high" when the empirical CDF of its KL is >= ``tau``.
        epochs: passes over the training steps.
        batch_size: steps per batch.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        val_fraction: share of episodes held out for validation (split by episode).
        seed: seed of the split, the initialisation and the batch order.
        successful_only: learn from successful episodes only (the paper); ``False`` also uses
            failed ones, for settings where the high model rarely wins.
        router: the router architecture (``embed_dim`` and ``encoder`` follow the encoder).
        labels: ``kl`` (the paper), ``disagree`` (the precisions' top candidates differ) or
            ``counterfactual`` (going high there wins a lost game; ``collect-counterfactual``
            traces, whose labelled base episodes are used whether they succeeded or not).
    """

    tau: float = 0.85
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.01
    val_fraction: float = 0.2
    seed: int = 0
    successful_only: bool = True
    router: RouterConfig = field(default_factory=RouterConfig)
    labels: str = "kl"

    def __post_init__(self) -> None:
        if self.labels not in ("kl", "disagree", "counterfactual"):
            msg = f"labels must be kl, disagree or counterfactual, got {self.labels!r}"
            raise ValueError(msg)
        if not 0.0 < self.tau < 1.0:
            msg = f"tau must be in (0, 1), got {self.tau}"
            raise ValueError(msg)
        if not 0.0 <= self.val_fraction < 1.0:
            msg = f"val_fraction must be in [0, 1), got {self.val_fraction}"
            raise ValueError(msg)


@dataclass
class KLSTResult:
    """What KL-ST produced and measured."""

    checkpoint: Path
    kl_threshold: float
    episodes: int
    steps: int
    positive_share: float
    history: list[dict[str, float]]
    best_epoch: int
    best: dict[str, float]
    kl_values: list[float]
    plots: list[Path] = field(default_factory=list)
    labels: str = "kl"

    def summary(self) -> str:
        """A few lines for the terminal."""
        b = self.best
        if self.labels == "kl":
            kls = sorted(self.kl_values)
            under = sum(k < 0.05 for k in kls) / len(kls)
            p85 = kls[min(len(kls) - 1, math.ceil(0.85 * len(kls)) - 1)]
            data = [
                f"  {self.episodes} episodes, {self.steps} steps; KL < 0.05 nats at {under:.1%} of steps, "
                f"85th percentile {p85:.4f}",
                f"  label 'needs high' for KL >= {self.kl_threshold:.4f}: {self.positive_share:.1%} of steps",
            ]
        else:
            data = [
                f"  {self.episodes} episodes, {self.steps} labelled steps; {self.labels} labels: "
                f"{self.positive_share:.1%} of steps 'needs high'"
            ]
        return "\n".join(
            [
                f"KL-ST router -> {self.checkpoint}",
                *data,
                f"  best epoch {self.best_epoch}: val loss {b['val_loss']:.4f}, accuracy {b['val_accuracy']:.3f}, "
                f"precision {b['val_precision']:.3f}, recall {b['val_recall']:.3f} (majority {b['val_majority']:.3f})",
            ]
        )


def kl_labels(kls: Sequence[float], tau: float) -> tuple[torch.Tensor, float]:
    """Labels (1 = needs high) where the empirical CDF of the KL is ``>= tau``, and the KL cut-off."""
    values = torch.tensor(list(kls), dtype=torch.float64)
    if values.numel() == 0:
        msg = "no KL values to label"
        raise EmptyTraceSetError(msg)
    ecdf = (values[None, :] <= values[:, None]).double().mean(dim=1)
    labels = (ecdf >= tau).long()
    threshold = float(values[labels.bool()].min()) if labels.any() else float(values.max())
    return labels, threshold


def klst_records(episodes: Sequence[Episode], successful_only: bool = True) -> list[StepRecord]:
    """Steps of the (successful) episodes that carry a KL value.

    Raises:
        EmptyTraceSetError: no episodes, none successful (with ``successful_only``), or none with KL values.
    """
    if not episodes:
        msg = "the trace set is empty: collect episodes first (precision-router collect-kl)"
        raise EmptyTraceSetError(msg)
    won = [e for e in episodes if e.success] if successful_only else list(episodes)
    if not won:
        msg = (
            f"none of the {len(episodes)} episodes succeeded, and KL-ST learns from successful episodes "
            "only: collect more episodes, use a setting where the high model wins some games, or "
            "train on all episodes (successful_only=False, --all-episodes)"
        )
        raise EmptyTraceSetError(msg)
    records = [r for e in won for r in episode_states(e, signals=True) if r.kl is not None and math.isfinite(r.kl)]
    if not records:
        msg = (
            "the successful episodes carry no KL values: record both precisions' distributions "
            "(precision-router collect-kl, or alfworld run --policy high --score-both)"
        )
        raise EmptyTraceSetError(msg)
    return records


def _split(records: list[StepRecord], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    episode_ids = sorted({r.episode_id for r in records})
    random.Random(seed).shuffle(episode_ids)
    n_val = round(len(episode_ids) * fraction)
    if fraction > 0 and len(episode_ids) > 1:
        n_val = max(1, min(n_val, len(episode_ids) - 1))
    val_ids = set(episode_ids[:n_val])
    train = [i for i, r in enumerate(records) if r.episode_id not in val_ids]
    val = [i for i, r in enumerate(records) if r.episode_id in val_ids]
    return train, val


def _training_steps(episodes: Sequence[Episode], config: KLSTConfig) -> tuple[list[StepRecord], torch.Tensor, float]:
    """The labelled steps, their labels and the KL cut-off (``nan`` for other label sources)."""
    if config.labels == "kl":
        records = klst_records(episodes, config.successful_only)
        labels, threshold = kl_labels([float(r.kl) for r in records], config.tau)  # type: ignore[arg-type]
        return records, labels, threshold
    from precision_router.training.labels import labelled_records

    # counterfactual labels sit on the base episodes, which mostly lost: keep them all
    keep_all = not config.successful_only or config.labels == "counterfactual"
    pool = list(episodes) if keep_all else [e for e in episodes if e.success]
    records, values = labelled_records(pool, config.labels, tau=config.tau)  # type: ignore[arg-type]
    if len(set(values)) < 2:
        msg = (
            f"the {len(values)} {config.labels}-labelled steps hold one class only ({sum(values)} 'needs high'): "
            "label more steps or games (both classes are needed to train a router)"
        )
        raise EmptyTraceSetError(msg)
    return records, torch.tensor(values), float("nan")


@torch.no_grad()
def _evaluate(
    net: RouterNet,
    seqs: list[torch.Tensor],
    labels: torch.Tensor,
    weights: torch.Tensor,
    batch: int,
    signals: torch.Tensor | None = None,
) -> dict[str, float]:
    net.eval()
    preds, losses = [], []
    for start in range(0, len(seqs), batch):
        x, valid = pad_sequences(seqs[start : start + batch], net.config.max_steps)
        logits = net(x, valid, None if signals is None else signals[start : start + batch])
        y = labels[start : start + batch]
        losses.append(F.cross_entropy(logits, y, weight=weights, reduction="sum").item())
        preds.append(logits.argmax(dim=-1))
    pred = torch.cat(preds)
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    n = len(labels)
    return {
        "loss": sum(losses) / float(weights[labels].sum()),
        "accuracy": float((pred == labels).float().mean()),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "majority": max(float(labels.float().mean()), 1 - float(labels.float().mean())) if n else float("nan"),
        "predicted_high": float((pred == 1).float().mean()),
    }


def train_klst(
    episodes: Sequence[Episode],
    out: str | os.PathLike[str],
    *,
    encoder: Any = None,
    config: KLSTConfig | None = None,
    embedding_cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    plots: bool = True,
) -> KLSTResult:
    """Train a router by KL-ST and save the best-validation checkpoint to ``out``.

    Args:
        episodes: traces with per-step ``kl`` (successful episodes are used).
        out: checkpoint path; plots are written next to it (``*-kl.png``, ``*-training.png``).
        encoder: the step encoder (default: all-MiniLM-L6-v2).
        config: training settings.
        embedding_cache: file where step embeddings are cached (default: ``out`` + ``.emb.pt``).
        progress: show progress bars.
        plots: write the KL histogram and the training curves.

    Raises:
        EmptyTraceSetError: nothing to train on (see :func:`klst_records`).
    """
    from tqdm.auto import tqdm

    config = config or KLSTConfig()
    records, labels, threshold = _training_steps(episodes, config)
    if encoder is None:
        from precision_router.routing.encoder import StepEncoder

        encoder = StepEncoder()
    router_config = replace(config.router, embed_dim=encoder.dim, encoder=encoder.name)
    out = Path(out)
    cache = EmbeddingCache(encoder, embedding_cache or out.with_name(out.name + ".emb.pt"))
    seqs = sequences(records, cache, router_config.max_steps, progress=progress)
    kls = [float(r.kl) for r in records if r.kl is not None]
    signals = signal_rows(records) if router_config.n_signals else None
    train_idx, val_idx = _split(records, config.val_fraction, config.seed)
    if not val_idx:
        logger.warning("too few episodes for a validation split: validating on the training steps")
        val_idx = train_idx
    counts = torch.bincount(labels[train_idx], minlength=2).double()
    weights = (counts.sum() / (2 * counts.clamp(min=1))).float()
    torch.manual_seed(config.seed)
    net = RouterNet(router_config)
    if signals is not None:
        net.set_signal_scale(signals[train_idx])
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    val_seqs = [seqs[i] for i in val_idx]
    val_labels = labels[val_idx]
    val_signals = None if signals is None else signals[val_idx]
    rng = random.Random(config.seed)
    history: list[dict[str, float]] = []
    best: dict[str, float] | None = None
    best_epoch = 0
    for epoch in tqdm(range(1, config.epochs + 1), desc="KL-ST epochs", disable=not progress):
        net.train()
        order = train_idx[:]
        rng.shuffle(order)
        total, count = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            x, valid = pad_sequences([seqs[i] for i in batch], router_config.max_steps)
            batch_signals = None if signals is None else signals[batch]
            loss = F.cross_entropy(net(x, valid, batch_signals), labels[batch], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
        metrics = _evaluate(net, val_seqs, val_labels, weights, config.batch_size, val_signals)
        row = {"epoch": epoch, "train_loss": total / max(count, 1), **{f"val_{k}": v for k, v in metrics.items()}}
        history.append(row)
        logger.info("epoch %d: %s", epoch, row)
        if best is None or row["val_loss"] < best["val_loss"]:
            best, best_epoch = row, epoch
            net.save(
                out,
                stage="klst",
                labels=config.labels,
                tau=config.tau,
                kl_threshold=threshold,
                epoch=epoch,
                metrics=row,
                config=asdict(config),
            )
    assert best is not None
    result = KLSTResult(
        checkpoint=out,
        kl_threshold=threshold,
        episodes=len({r.episode_id for r in records}),
        steps=len(records),
        positive_share=float(labels.float().mean()),
        history=history,
        best_epoch=best_epoch,
        best=best,
        kl_values=kls,
        labels=config.labels,
    )
    if plots:
        from precision_router.evaluation.plots import plot_kl_histogram, plot_training_curves

        if config.labels == "kl":
            result.plots.append(plot_kl_histogram(kls, threshold, out.with_name(out.stem + "-kl.png"), tau=config.tau))
        result.plots.append(plot_training_curves(history, out.with_name(out.stem + "-training.png")))
    return result
