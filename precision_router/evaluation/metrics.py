"""Metrics over recorded episodes: success, high-precision share, GHC and friends."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from precision_router.traces.schema import Episode

__all__ = ["RunMetrics", "binomial_se", "ghc", "ghc_se", "summarize"]


@dataclass(frozen=True)
class RunMetrics:
    """Aggregates of a set of episodes.

    Attributes:
        episodes: number of episodes.
        success: success rate S.
        success_se: binomial standard error of S.
        high_share: the cost-weighted share c: the steps' mean cost relative to the top precision
            (with two precisions, the share of steps routed high; escalated steps count as high).
        token_high_share: share of input+output tokens processed by the high model.
        mean_steps: steps per episode.
        seconds_per_step: mean wall time of a step's model work (``latency_ms`` / 1000).
        escalated_share: share of steps escalated from low to high.
        seconds_per_episode: mean wall-clock time of an episode (``ended_at - started_at``:
            model work, the router and the environment), over the episodes that recorded an end
            (``nan`` when none did).
    """

    episodes: int
    success: float
    success_se: float
    high_share: float
    token_high_share: float
    mean_steps: float
    seconds_per_step: float
    escalated_share: float
    seconds_per_episode: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for tables and JSON)."""
        return asdict(self)


def binomial_se(p: float, n: int) -> float:
    """Standard error of a success rate ``p`` measured on ``n`` episodes."""
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def summarize(episodes: Iterable[Episode]) -> RunMetrics:
    """Metrics of ``episodes`` (an episode without ``success`` counts as a failure)."""
    items = list(episodes)
    steps = [s for e in items for s in e.steps]
    n = len(items)
    success = sum(bool(e.success) for e in items) / n if n else float("nan")
    walls = [e.ended_at - e.started_at for e in items if e.ended_at is not None]
    tokens = [((s.input_tokens or 0) + (s.output_tokens or 0), s.route) for s in steps]
    total_tokens = sum(t for t, _ in tokens)
    return RunMetrics(
        episodes=n,
        success=success,
        success_se=binomial_se(success, n),
        high_share=sum(s.relative_cost for s in steps) / len(steps) if steps else float("nan"),
        token_high_share=sum(t for t, r in tokens if r == "high") / total_tokens if total_tokens else float("nan"),
        mean_steps=len(steps) / n if n else float("nan"),
        seconds_per_step=sum(s.latency_ms for s in steps) / 1000 / len(steps) if steps else float("nan"),
        escalated_share=sum(s.escalated for s in steps) / len(steps) if steps else float("nan"),
        seconds_per_episode=sum(walls) / len(walls) if walls else float("nan"),
    )


def ghc(success: float, success_low: float, high_share: float) -> float:
    """Gain per high-precision cost: ``(S - S_low) / c`` (``nan`` when ``c`` is 0).

    ``c`` is the cost-weighted share (:attr:`RunMetrics.high_share`), so ladders of more than two
    precisions compare with two-precision runs on one scale.
    """
    return (success - success_low) / high_share if high_share > 0 else float("nan")


def ghc_se(success_se: float, success_low_se: float, high_share: float) -> float:
    """Standard error of :func:`ghc`: ``sqrt(SE_S^2 + SE_low^2) / c``.

    Treats the two success rates as independent binomials and ``c`` as exact. Both runs play the
    same games, which correlates them positively, so this overstates the noise a little: a GHC
    difference that clears it is a real one.
    """
    if high_share <= 0:
        return float("nan")
    return math.sqrt(success_se**2 + success_low_se**2) / high_share
