"""A probe router over signals the low model and the history give for free.

Before a step the low model has already scored the candidate actions (score mode), and the
history shows loops; no sentence encoder is needed to read either. :class:`ProbeRouter` is a
logistic regression over a few such features:

- the low model's action distribution: entropy, top-1 probability, top-2 margin, log of the
  number of candidates;
- loops: how often the last action was played in the recent window, an A-B-A-B pattern,
  repeated observations, the share of recent steps the game answered "Nothing happens.";
- the step index.

It is trained from labelled steps (:func:`train_probe`: counterfactual, KL or disagreement
labels) and saved as JSON (no pickle). ``score(state)`` is its ``p_high``, so it calibrates to a
target share like any scored router.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from precision_router.errors import PrecisionRouterError
from precision_router.routing.base import RouteDecision, RoutingState, threshold_name

__all__ = [
    "FEATURES",
    "LOW_MODEL_FEATURES",
    "ProbeCheckpointError",
    "ProbeRouter",
    "ProbeTrainingError",
    "probe_features",
    "train_probe",
    "train_uplift_probe",
]

logger = logging.getLogger(__name__)

FORMAT = "precision-router-probe/1"
WINDOW = 8
FEATURES: tuple[str, ...] = (
    "entropy",
    "top1",
    "margin",
    "log_candidates",
    "last_repeats",
    "abab",
    "same_observation",
    "nothing_happens",
    "step",
)
"""Feature names, in the order of the probe's weights."""
LOW_MODEL_FEATURES: tuple[str, ...] = FEATURES[:4]
"""The features read from the low model's scores (0 on a step without them)."""


class ProbeCheckpointError(PrecisionRouterError):
    """A probe file that is not one, or of another version; retrain it with ``train_probe``."""


class ProbeTrainingError(PrecisionRouterError, ValueError):
    """The labelled steps cannot train a probe (none, or one class only)."""


def probe_features(state: RoutingState) -> list[float]:
    """The probe's features of ``state`` (low-model features are 0 without ``extras["low_logprobs"]``)."""
    log_probs = sorted((float(v) for v in state.extras.get("low_logprobs") or ()), reverse=True)
    if log_probs:
        entropy = -sum(math.exp(v) * v for v in log_probs if v > -math.inf)
        top1 = math.exp(log_probs[0])
        margin = log_probs[0] - log_probs[1] if len(log_probs) > 1 else 10.0
        log_candidates = math.log(len(log_probs))
    else:
        entropy = top1 = margin = log_candidates = 0.0
    history = state.history[-WINDOW:]
    actions = [a for a, _ in history]
    observations = [o for _, o in history]
    last_repeats = actions[:-1].count(actions[-1]) if actions else 0
    abab = float(len(actions) >= 4 and actions[-1] == actions[-3] and actions[-2] == actions[-4])
    same_observation = float(len(observations) >= 2 and observations[-1] == observations[-2])
    nothing = sum(o.strip().startswith("Nothing happens") for o in observations) / max(len(observations), 1)
    return [
        entropy,
        top1,
        min(margin, 10.0),
        log_candidates,
        float(last_repeats),
        abab,
        same_observation,
        nothing,
        state.step_index / 10.0,
    ]


class ProbeRouter:
    """Logistic regression over :data:`FEATURES`; high when ``p_high >= threshold``.

    Args:
        weights: one weight per feature (on standardised features).
        bias: the intercept.
        mean: per-feature mean used to standardise.
        std: per-feature standard deviation used to standardise.
        threshold: ``p_high`` at or above which a step goes high.
        name: policy name recorded in traces.
    """

    def __init__(
        self,
        weights: Sequence[float],
        bias: float,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        threshold: float = 0.5,
        name: str = "probe",
    ) -> None:
        n = len(FEATURES)
        if not (len(weights) == len(mean) == len(std) == n):
            got = f"{len(weights)}/{len(mean)}/{len(std)}"
            msg = f"a probe needs {n} weights, means and stds (one per feature), got {got}"
            raise ProbeCheckpointError(msg)
        if not all(math.isfinite(float(v)) for v in [*weights, bias, *mean, *std, threshold]):
            msg = "a probe's weights, normalisation and threshold must be finite numbers"
            raise ProbeCheckpointError(msg)
        self.weights = [float(w) for w in weights]
        self.bias = float(bias)
        self.mean = [float(m) for m in mean]
        self.std = [max(float(s), 1e-6) for s in std]
        self.threshold = float(threshold)
        self.name = name

    @property
    def needs_scores(self) -> tuple[str, ...]:
        """``("low",)`` (the low model scores the candidates before each step), or ``()``.

        ``()`` when every low-model feature has weight 0 (an uplift probe trained on steps without them).
        """
        return ("low",) if any(self.weights[FEATURES.index(f)] for f in LOW_MODEL_FEATURES) else ()

    @property
    def version(self) -> str:
        """A short fingerprint of the weights (names evaluation runs)."""
        import hashlib

        text = json.dumps([self.weights, self.bias, self.mean, self.std])
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def __repr__(self) -> str:
        return f"ProbeRouter(threshold={self.threshold:.4g}, version={self.version!r})"

    def with_threshold(self, threshold: float) -> ProbeRouter:
        """The same probe at another threshold (named ``<name>@<threshold>``)."""
        return ProbeRouter(
            self.weights, self.bias, self.mean, self.std, threshold=threshold, name=threshold_name(self.name, threshold)
        )

    def score(self, state: RoutingState) -> float:
        """``p_high`` of ``state``."""
        x = probe_features(state)
        z = self.bias + sum(w * (v - m) / s for w, v, m, s in zip(self.weights, x, self.mean, self.std, strict=True))
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def decide(self, state: RoutingState) -> RouteDecision:
        """High when ``p_high`` reaches the threshold."""
        p = self.score(state)
        return RouteDecision("high" if p >= self.threshold else "low", p)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the probe as JSON."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "format": FORMAT,
            "features": list(FEATURES),
            "weights": self.weights,
            "bias": self.bias,
            "mean": self.mean,
            "std": self.std,
            "threshold": self.threshold,
        }
        out.write_text(json.dumps(data, indent=1))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, threshold: float | None = None) -> ProbeRouter:
        """Read a probe written by :meth:`save`.

        Raises:
            ProbeCheckpointError: the file is missing, not a probe, or of other features.
        """
        file = Path(path)
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            msg = f"cannot read a probe from {file}: {exc}; train one with `precision-router train-probe`"
            raise ProbeCheckpointError(msg) from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("features") != list(FEATURES):
            msg = f"{file} is not a {FORMAT} file with features {list(FEATURES)}; retrain it with this version"
            raise ProbeCheckpointError(msg)
        try:
            return cls(
                data["weights"],
                data["bias"],
                data["mean"],
                data["std"],
                threshold=float(data["threshold"] if threshold is None else threshold),
                name=f"probe:{file.name}",
            )
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"{file} is a damaged probe file ({exc}); retrain it"
            raise ProbeCheckpointError(msg) from exc


def train_probe(
    states: Sequence[RoutingState],
    labels: Sequence[int],
    *,
    epochs: int = 300,
    lr: float = 0.05,
    l2: float = 1e-3,
    seed: int = 0,
) -> ProbeRouter:
    """Fit a class-weighted logistic regression on labelled states (1 = route high).

    Raises:
        ProbeTrainingError: no states, mismatched lengths, or a single class.
    """
    import torch

    if len(states) != len(labels) or not states:
        msg = f"train_probe needs as many labels as states (>0), got {len(states)} and {len(labels)}"
        raise ProbeTrainingError(msg)
    y = torch.tensor([int(v) for v in labels], dtype=torch.float64)
    positives = float(y.sum())
    if positives in (0.0, float(len(y))):
        msg = (
            f"the {len(y)} labelled steps hold one class only ({int(positives)} high): label more steps or games "
            "(both outcomes are needed to learn a probe)"
        )
        raise ProbeTrainingError(msg)
    x = torch.tensor([probe_features(s) for s in states], dtype=torch.float64)
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
    z = (x - mean) / std
    torch.manual_seed(seed)
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    weight = torch.where(y > 0, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    optimizer = torch.optim.Adam([w, b], lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, weight=weight) + l2 * (w * w).sum()
        loss.backward()
        optimizer.step()
    logger.info("probe trained on %d steps (%d positive): loss %.4f", len(y), int(positives), float(loss.detach()))
    return ProbeRouter(w.detach().tolist(), float(b.detach()), mean.tolist(), std.tolist())


def train_uplift_probe(
    states: Sequence[RoutingState],
    effects: Sequence[float],
    *,
    features: Sequence[str] | None = None,
    l2: float = 10.0,
) -> ProbeRouter:
    """Fit a probe whose score ranks steps by the estimated effect of routing them high.

    ``effects`` are unbiased but noisy per-step estimates of that effect, such as the
    inverse-propensity-weighted outcomes of randomised routes
    (:func:`~precision_router.training.labels.uplift_records`); a ridge regression of them on the
    standardised ``features`` estimates the expected effect given the features. The other
    features get weight 0. Default features: all of :data:`FEATURES` when every state carries the
    low model's scores, else all but :data:`LOW_MODEL_FEATURES` (a random policy scores only the
    acting model, so those would be missing exactly on the high steps, and a regression on them
    would learn the route, not the state). The probe's ``p_high`` is a monotone transform of that
    estimate, not a probability: calibrate it to a share.

    Raises:
        ProbeTrainingError: no states, mismatched lengths, or an unknown feature.
    """
    import torch

    if len(states) != len(effects) or not states:
        msg = f"train_uplift_probe needs as many effects as states (>0), got {len(states)} and {len(effects)}"
        raise ProbeTrainingError(msg)
    if features is None:
        scored = all(s.extras.get("low_logprobs") for s in states)
        features = FEATURES if scored else tuple(f for f in FEATURES if f not in LOW_MODEL_FEATURES)
    chosen = list(features)
    unknown = sorted(set(chosen) - set(FEATURES))
    if unknown or not chosen:
        msg = f"unknown probe features {unknown}; choose among {list(FEATURES)}"
        raise ProbeTrainingError(msg)
    columns = [FEATURES.index(f) for f in FEATURES if f in chosen]
    x = torch.tensor([probe_features(s) for s in states], dtype=torch.float64)
    y = torch.tensor([float(v) for v in effects], dtype=torch.float64)
    mean, std = x.mean(dim=0), x.std(dim=0).nan_to_num(1.0).clamp_min(1e-6)
    z = ((x - mean) / std)[:, columns]
    a = torch.cat([z, torch.ones(len(z), 1, dtype=torch.float64)], dim=1)
    ridge = l2 * torch.eye(a.shape[1], dtype=torch.float64)
    ridge[-1, -1] = 0.0  # the intercept is not shrunk
    solution = torch.linalg.solve(a.T @ a + ridge, a.T @ y)
    # scaled so that a one-SD change of the estimated effect moves the logit by ~1
    scale = float((z @ solution[:-1]).std().nan_to_num(0.0))
    factor = 1.0 / scale if scale > 1e-12 else 1.0
    weights = [0.0] * len(FEATURES)
    for column, w in zip(columns, solution[:-1].tolist(), strict=True):
        weights[column] = w * factor
    logger.info(
        "uplift probe on %d steps, features %s: weights %s (mean effect %.4f)",
        len(y),
        [FEATURES[c] for c in columns],
        [round(weights[c], 3) for c in columns],
        float(y.mean()),
    )
    return ProbeRouter(weights, float(solution[-1]) * factor, mean.tolist(), std.tolist())


def recorded_extras(step: Any) -> dict[str, Any]:
    """The signals a trace step recorded, as the ``extras`` the probe reads (``low_logprobs``)."""
    from precision_router.evaluation.calibration import recorded_state

    return dict(recorded_state(step).extras)
