"""A TRIM-Agg-style router: a small network over aggregated step signals, trained with GRPO.

TRIM (Kapoor et al., ICLR 2026) routes the steps of a reasoning chain between a small and a
large model; its ``TRIM-Agg`` policy is a small network trained with reinforcement learning on a
few *aggregated* statistics of the chain so far instead of the whole sequence. Here the
statistics are the ones the low model and the episode give for free:

- this step's signals, as the probe reads them (:func:`~precision_router.routing.probe.probe_features`:
  the low model's entropy, top-1 probability, top-2 margin and number of candidates; loop signals;
  the step index);
- the episode so far: the share of past steps routed high, the steps since the last high one, the
  mean and minimum of the low model's past margins, the mean of its past entropies, and how this
  step's margin compares with the past mean.

The past needs memory, so :class:`AggregateRouter` is stateful per conversation: each
``decide`` records the step's signals and route under its ``conversation_id``. Offline, the same
features come from a recorded episode (:func:`episode_features`, used by GRPO and by threshold
calibration), computed by the same function as live.
"""

from __future__ import annotations

import math
import os
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from precision_router.errors import CheckpointMismatchError
from precision_router.locks import PicklableLock
from precision_router.routing.base import RouteDecision, RoutingState, keyed_uniform, threshold_name
from precision_router.routing.network import save_checkpoint, weights_fingerprint
from precision_router.routing.probe import FEATURES, probe_features

if TYPE_CHECKING:
    from precision_router.traces.schema import Episode

__all__ = [
    "AGGREGATE_FEATURES",
    "AggregateConfig",
    "AggregateNet",
    "AggregateRouter",
    "PastStep",
    "aggregate_features",
    "episode_features",
]

FORMAT = "precision-router/aggregate-router"
AGGREGATE_FEATURES: tuple[str, ...] = (
    *FEATURES,
    "past_high_share",
    "steps_since_high",
    "past_mean_margin",
    "past_min_margin",
    "past_mean_entropy",
    "margin_vs_past",
)
"""Feature names, in the order the network reads them."""

_ENTROPY, _MARGIN = FEATURES.index("entropy"), FEATURES.index("margin")
_NO_MARGIN = 10.0  # the probe's cap: "no second candidate" / "nothing recorded"


@dataclass(frozen=True)
class PastStep:
    """What the router keeps of one past step: the low model's signals (``None``: not scored) and the route."""

    margin: float | None
    entropy: float | None
    route: str


def aggregate_features(state: RoutingState, past: Sequence[PastStep]) -> list[float]:
    """The router's input for ``state`` after the ``past`` steps of its conversation (:data:`AGGREGATE_FEATURES`)."""
    now = probe_features(state)
    scored = "low_logprobs" in state.extras and bool(state.extras["low_logprobs"])
    margins = [p.margin for p in past if p.margin is not None]
    entropies = [p.entropy for p in past if p.entropy is not None]
    highs = [i for i, p in enumerate(past) if p.route != "low"]
    mean_margin = sum(margins) / len(margins) if margins else _NO_MARGIN
    return [
        *now,
        len(highs) / len(past) if past else 0.0,
        min(len(past) - 1 - highs[-1] if highs else len(past), 50) / 10.0,
        mean_margin,
        min(margins) if margins else _NO_MARGIN,
        sum(entropies) / len(entropies) if entropies else 0.0,
        now[_MARGIN] - mean_margin if scored and margins else 0.0,
    ]


def _past_step(state: RoutingState, route: str) -> PastStep:
    if not state.extras.get("low_logprobs"):
        return PastStep(None, None, route)
    now = probe_features(state)
    return PastStep(now[_MARGIN], now[_ENTROPY], route)


def episode_features(episode: Episode) -> list[list[float]]:
    """The features the router saw (or would have seen) at each recorded step of ``episode``.

    Each step's state is rebuilt from the trace (:func:`~precision_router.training.data.episode_states`
    plus the recorded low-model scores); the past is the recorded steps before it with their routes.
    """
    from precision_router.evaluation.calibration import recorded_state
    from precision_router.training.data import episode_states

    rows: list[list[float]] = []
    past: list[PastStep] = []
    for record, step in zip(episode_states(episode), episode.steps, strict=True):
        state = recorded_state(step, record.state)
        rows.append(aggregate_features(state, past))
        past.append(_past_step(state, step.route))
    return rows


@dataclass(frozen=True)
class AggregateConfig:
    """The network's shape: ``len(AGGREGATE_FEATURES)`` inputs, one hidden tanh layer, 2 routes.

    ``init_share`` sets the output bias of a fresh network so that it starts routing about that
    share high (GRPO then moves it; a fresh 50 % start wastes rollouts on an expensive policy).
    """

    hidden: int = 32
    init_share: float = 0.2

    def __post_init__(self) -> None:
        if self.hidden < 1:
            msg = f"hidden must be positive, got {self.hidden}"
            raise ValueError(msg)
        if not 0.0 < self.init_share < 1.0:
            msg = f"init_share must be in (0, 1), got {self.init_share}"
            raise ValueError(msg)


class AggregateNet(nn.Module):
    """``features -> (B, 2)`` route logits (low, high); features are scaled by fixed constants."""

    def __init__(self, config: AggregateConfig | None = None) -> None:
        super().__init__()
        self.config = config or AggregateConfig()
        n = len(AGGREGATE_FEATURES)
        self.body = nn.Sequential(nn.Linear(n, self.config.hidden), nn.Tanh())
        self.head = nn.Linear(self.config.hidden, 2)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.copy_(torch.tensor([0.0, math.log(self.config.init_share / (1 - self.config.init_share))]))

    @property
    def n_routes(self) -> int:
        """Two routes (low, high), as :class:`~precision_router.routing.RouterNet`'s default."""
        return 2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2)`` for features ``(B, len(AGGREGATE_FEATURES))``."""
        return self.head(self.body(features))

    def probs(self, rows: Sequence[Sequence[float]]) -> torch.Tensor:
        """Route probabilities ``(B, 2)`` (no gradients)."""
        with torch.inference_mode():
            return torch.softmax(self(torch.tensor(rows, dtype=torch.float32)), dim=-1)

    def fingerprint(self) -> str:
        """Short content hash of the weights (recorded as ``router_version``)."""
        return weights_fingerprint(self)

    def save(self, path: str | os.PathLike[str], **meta: Any) -> Path:
        """Write weights, shape and feature names to ``path`` (atomically; ``meta`` kept too)."""
        checkpoint = {
            "format": FORMAT,
            "features": list(AGGREGATE_FEATURES),
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "meta": meta,
        }
        return save_checkpoint(checkpoint, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AggregateNet:
        """Read a network written by :meth:`save` (tensors and plain values only).

        Raises:
            CheckpointMismatchError: not such a checkpoint, or one for other features.
        """
        retrain = "train one with `precision-router train-grpo --router aggregate`"
        try:
            checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:
            msg = f"{path} is not a readable aggregate-router checkpoint ({type(exc).__name__}); {retrain}"
            raise CheckpointMismatchError(msg) from None
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
            msg = f"{path} is not an aggregate-router checkpoint; {retrain}"
            raise CheckpointMismatchError(msg)
        if checkpoint.get("features") != list(AGGREGATE_FEATURES):
            msg = f"{path} was trained on other features than {list(AGGREGATE_FEATURES)}; {retrain}"
            raise CheckpointMismatchError(msg)
        try:
            net = cls(AggregateConfig(**checkpoint["config"]))
            net.load_state_dict(checkpoint["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            msg = f"{path} is a damaged aggregate-router checkpoint ({exc}); {retrain}"
            raise CheckpointMismatchError(msg) from exc
        net.meta = checkpoint.get("meta", {})
        return net.eval()


class AggregateRouter:
    """Routes by :class:`AggregateNet`'s ``p_high`` over :func:`aggregate_features`.

    Greedy (``p_high >= threshold``) by default; ``sample=True`` draws the route (GRPO), as a pure
    function of ``(seed, conversation, step)`` when ``seed`` is given. The router remembers each
    conversation's past steps (the ``memory`` most recent conversations); a step index lower than
    what it remembers starts that conversation over. Steps it was not asked about (e.g. a replayed
    prefix) are missing from its past.

    Args:
        net: the network.
        threshold: ``p_high`` at or above which a step goes high.
        sample: draw routes instead of thresholding.
        seed: seed of the draws.
        name: policy name recorded in traces.
        version: recorded as the router's version (default: the weights' fingerprint).
        memory: how many conversations are remembered.
    """

    needs_scores = ("low",)

    def __init__(
        self,
        net: AggregateNet,
        *,
        threshold: float = 0.5,
        sample: bool = False,
        seed: int | None = None,
        name: str = "aggregate",
        version: str | None = None,
        memory: int = 1024,
    ) -> None:
        self.net = net.eval()
        self.threshold = float(threshold)
        self.sample = sample
        self.seed = seed
        self.name = name
        self.version = version or net.fingerprint()
        self.memory = memory
        self._past: OrderedDict[str, list[PastStep]] = OrderedDict()
        self._rng = random.Random(seed)
        self._lock = PicklableLock()

    def __repr__(self) -> str:
        return f"AggregateRouter(version={self.version!r}, threshold={self.threshold:.4g}, sample={self.sample})"

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: Any) -> AggregateRouter:
        """A router over the network saved at ``path``."""
        return cls(AggregateNet.load(path), **kwargs)

    def with_threshold(self, threshold: float) -> AggregateRouter:
        """The same network at another threshold (named ``<name>@<threshold>``; a fresh memory)."""
        return AggregateRouter(
            self.net,
            threshold=threshold,
            sample=self.sample,
            seed=self.seed,
            name=threshold_name(self.name, threshold),
            version=self.version,
            memory=self.memory,
        )

    def _history(self, state: RoutingState) -> list[PastStep]:
        with self._lock:
            past = self._past.get(state.conversation_id, [])
            return past[: state.step_index]

    def score(self, state: RoutingState) -> float:
        """``p_high`` of ``state`` after what this router remembers of its conversation."""
        return float(self.net.probs([aggregate_features(state, self._history(state))])[0, 1])

    def episode_scores(self, episode: Episode) -> list[float]:
        """``p_high`` at each recorded step of ``episode``, its past taken from the trace (calibration)."""
        return [float(p) for p in self.net.probs(episode_features(episode))[:, 1]] if episode.steps else []

    def decide(self, state: RoutingState) -> RouteDecision:
        """Route this step and remember it."""
        past = self._history(state)
        p_high = float(self.net.probs([aggregate_features(state, past)])[0, 1])
        if self.sample:
            if self.seed is not None:
                u = keyed_uniform(self.seed, state.conversation_id, state.step_index)
            else:
                with self._lock:
                    u = self._rng.random()
            route = "high" if u < p_high else "low"
        else:
            route = "high" if p_high >= self.threshold else "low"
        with self._lock:
            self._past[state.conversation_id] = [*past, _past_step(state, route)]
            self._past.move_to_end(state.conversation_id)
            while len(self._past) > self.memory:
                self._past.popitem(last=False)
        return RouteDecision(route, p_high)
