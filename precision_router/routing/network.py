"""The router network: a small Transformer encoder over step embeddings (read top to bottom)."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from precision_router.errors import CheckpointMismatchError
from precision_router.routing.base import router_window

__all__ = ["CHECKPOINT_FORMAT", "RouterConfig", "RouterNet", "pad_sequences"]

CHECKPOINT_FORMAT = 1
"""Version of the router checkpoint layout written by :meth:`RouterNet.save`."""


@dataclass(frozen=True)
class RouterConfig:
    """Architecture of :class:`RouterNet`.

    Attributes:
        embed_dim: dimension of the step embeddings (384 for all-MiniLM-L6-v2).
        d_model: width of the Transformer.
        n_layers: Transformer encoder layers (the paper uses 2).
        n_heads: attention heads.
        max_steps: ``L_max``: only the last ``max_steps`` steps are kept (the task always is).
        n_routes: ``K``, the number of precisions (index 0 = low, index K-1 = high).
        dropout: dropout inside the encoder layers.
        encoder: name of the sentence encoder whose embeddings the router reads.
        n_signals: 0 (text only, the paper's router), or ``len(probe.FEATURES)``: the low model's
            signals at the step (:func:`~precision_router.routing.probe.probe_features`: entropy,
            top-1, margin, candidates, loop signals, step index) are standardised, projected and
            added to the pooled text representation before the head.
    """

    embed_dim: int = 384
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    max_steps: int = 32
    n_routes: int = 2
    dropout: float = 0.1
    encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    n_signals: int = 0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "d_model", "n_layers", "n_heads", "max_steps", "n_routes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive integer, got {value!r}"
                raise ValueError(msg)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            msg = f"dropout must be a number in [0, 1), got {self.dropout!r}"
            raise ValueError(msg)
        if not isinstance(self.encoder, str):
            msg = f"encoder must be a model name, got {self.encoder!r}"
            raise ValueError(msg)
        if self.d_model % self.n_heads:
            msg = f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            raise ValueError(msg)
        if self.n_routes < 2:
            msg = f"n_routes must be at least 2, got {self.n_routes}"
            raise ValueError(msg)
        if self.max_steps < 1:
            msg = f"max_steps must be positive, got {self.max_steps}"
            raise ValueError(msg)
        from precision_router.routing.probe import FEATURES

        if isinstance(self.n_signals, bool) or self.n_signals not in (0, len(FEATURES)):
            msg = f"n_signals must be 0 (text only) or {len(FEATURES)} (the probe's signals), got {self.n_signals!r}"
            raise ValueError(msg)


def weights_fingerprint(module: nn.Module) -> str:
    """Short content hash of a module's weights (what traces record as a router's version)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def pad_sequences(seqs: list[torch.Tensor], max_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``[z_task, z_1 .. z_t]`` sequences: keep the task and the last ``max_steps`` steps.

    Returns:
        ``x`` of shape ``(B, T, E)`` (right-padded with zeros) and ``valid`` of shape ``(B, T)``.
    """
    kept = [s[router_window(range(s.shape[0]), max_steps)] for s in seqs]
    longest = max(s.shape[0] for s in kept)
    x = kept[0].new_zeros(len(kept), longest, kept[0].shape[-1])
    valid = torch.zeros(len(kept), longest, dtype=torch.bool, device=x.device)
    for i, s in enumerate(kept):
        x[i, : s.shape[0]] = s
        valid[i, : s.shape[0]] = True
    return x, valid


class RouterNet(nn.Module):
    """``[z_task, z_1 .. z_t]`` -> logits over the K precisions.

    Step embeddings are projected to ``d_model``, learned absolute positions are added, a
    2-layer Transformer encoder runs with a key-padding mask, the last valid position is
    pooled and a linear head gives one logit per precision.
    """

    def __init__(self, config: RouterConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RouterConfig()
        self.proj = nn.Linear(config.embed_dim, config.d_model)
        self.pos = nn.Embedding(config.max_steps + 1, config.d_model)
        layer = nn.TransformerEncoderLayer(
            d_model=config.d_model,
            nhead=config.n_heads,
            dim_feedforward=4 * config.d_model,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.n_routes)
        self.signal_mean: torch.Tensor
        self.signal_std: torch.Tensor
        if config.n_signals:
            self.signal_proj = nn.Linear(config.n_signals, config.d_model)
            self.register_buffer("signal_mean", torch.zeros(config.n_signals))
            self.register_buffer("signal_std", torch.ones(config.n_signals))

    def set_signal_scale(self, signals: torch.Tensor) -> None:
        """Standardise the signals by these rows' mean and spread (the trainer calls it on its training steps)."""
        self.signal_mean.copy_(signals.mean(dim=0))
        self.signal_std.copy_(signals.std(dim=0).nan_to_num(1.0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, valid: torch.Tensor, signals: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, K)`` for embeddings ``x`` ``(B, T, E)`` with validity mask ``valid`` ``(B, T)``.

        ``signals`` ``(B, n_signals)``: the low model's signals at each step, for a router with
        ``config.n_signals``.
        """
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.proj(x) + self.pos(positions)[None]
        h = self.encoder(h, src_key_padding_mask=~valid)
        last = valid.long().sum(dim=1) - 1
        pooled = self.norm(h[torch.arange(h.shape[0], device=h.device), last])
        if self.config.n_signals:
            if signals is None:
                msg = "this router reads the low model's signals: pass signals (B, n_signals)"
                raise ValueError(msg)
            pooled = pooled + self.signal_proj((signals.to(pooled.dtype) - self.signal_mean) / self.signal_std)
        return self.head(pooled)

    @torch.inference_mode()
    def probs(self, seqs: list[torch.Tensor], signals: torch.Tensor | None = None) -> torch.Tensor:
        """Route probabilities ``(B, K)`` for unpadded sequences (eval mode, no grad)."""
        x, valid = pad_sequences(seqs, self.config.max_steps)
        return F.softmax(self(x, valid, signals), dim=-1)

    # -- checkpoints --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Short content hash of the weights (recorded as ``router_version`` in traces)."""
        return weights_fingerprint(self)

    def save(self, path: str | os.PathLike[str], **meta: Any) -> Path:
        """Write weights, config, encoder name, K and versions to ``path`` (``meta`` is kept too)."""
        from precision_router import __version__

        checkpoint = {
            "format": "precision-router/router",
            "format_version": CHECKPOINT_FORMAT,
            "library_version": __version__,
            "torch_version": str(torch.__version__),
            "config": asdict(self.config),
            "encoder": self.config.encoder,
            "embed_dim": self.config.embed_dim,
            "n_routes": self.config.n_routes,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "meta": meta,
        }
        return save_checkpoint(checkpoint, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: str | None = None,
        embed_dim: int | None = None,
        n_routes: int | None = None,
    ) -> RouterNet:
        """Load a checkpoint written by :meth:`save`, checking it against what the caller expects.

        Raises:
            CheckpointMismatchError: the file is not a router checkpoint, has an unknown format
                version, or its encoder, embedding dimension or K differ from the ones given.
        """
        try:
            checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except pickle.UnpicklingError:
            # torch's message suggests turning weights_only off, i.e. running the file's code: never do that
            msg = (
                f"{path} holds pickled Python objects besides weights, which are not loaded (they could run "
                "code); use a checkpoint written by RouterNet.save / precision-router train-klst"
            )
            raise CheckpointMismatchError(msg) from None
        except Exception as exc:
            msg = f"{path} is not a readable router checkpoint ({exc}); train one with precision-router train-klst"
            raise CheckpointMismatchError(msg) from exc
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != "precision-router/router":
            msg = f"{path} is not a precision-router router checkpoint"
            raise CheckpointMismatchError(msg)
        version = checkpoint.get("format_version")
        if version != CHECKPOINT_FORMAT:
            msg = (
                f"{path} has router checkpoint format {version}, this precision-router reads "
                f"format {CHECKPOINT_FORMAT}; retrain the router or use a matching version"
            )
            raise CheckpointMismatchError(msg)
        config = _checkpoint_config(path, checkpoint)
        expected = {"encoder": encoder, "embed_dim": embed_dim, "n_routes": n_routes}
        for key, want in expected.items():
            if want is not None and getattr(config, key) != want:
                msg = (
                    f"{path} was trained with {key}={getattr(config, key)!r} but {want!r} was expected; "
                    "use the encoder / model pair it was trained for, or retrain the router"
                )
                raise CheckpointMismatchError(msg)
        _check_weights(path, config, checkpoint.get("state_dict"))
        net = cls(config)
        net.load_state_dict(checkpoint["state_dict"])
        net.eval()
        net.meta = checkpoint.get("meta", {})  # type: ignore[assignment]
        return net


def _checkpoint_config(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> RouterConfig:
    """The checkpoint's :class:`RouterConfig`, validated (and consistent with its top-level fields)."""
    raw = checkpoint.get("config")
    if not isinstance(raw, dict):
        msg = f"{path} has no router config; it was not written by RouterNet.save"
        raise CheckpointMismatchError(msg)
    known = {f.name for f in fields(RouterConfig)}
    try:
        config = RouterConfig(**{k: v for k, v in raw.items() if k in known})
    except (TypeError, ValueError) as exc:
        msg = f"{path} has an invalid router config ({exc}); retrain the router"
        raise CheckpointMismatchError(msg) from None
    for key in ("encoder", "embed_dim", "n_routes"):
        if key in checkpoint and checkpoint[key] != getattr(config, key):
            msg = f"{path} is inconsistent: {key}={checkpoint[key]!r} but its config says {getattr(config, key)!r}"
            raise CheckpointMismatchError(msg)
    return config


def _check_weights(path: str | os.PathLike[str], config: RouterConfig, state_dict: Any) -> None:
    """Compare the saved weights' names and shapes with those ``config`` implies, allocating nothing."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        msg = f"{path} holds no weights (state_dict); it was not written by RouterNet.save"
        raise CheckpointMismatchError(msg)
    layers = {str(k).split(".")[2] for k in state_dict if str(k).startswith("encoder.layers.")}
    if len(layers) != config.n_layers:
        msg = f"{path}: the weights hold {len(layers)} encoder layers but the saved config says {config.n_layers}"
        raise CheckpointMismatchError(msg)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in RouterNet(config).state_dict().items()}
    saved = {name: tuple(t.shape) for name, t in state_dict.items()}
    if saved != expected:
        wrong = sorted(n for n in expected.keys() | saved.keys() if expected.get(n) != saved.get(n))
        msg = (
            f"{path}: the weights do not match the saved config ({wrong[0]}: saved {saved.get(wrong[0])}, "
            f"config implies {expected.get(wrong[0])}); the file is damaged or edited, retrain the router"
        )
        raise CheckpointMismatchError(msg)
