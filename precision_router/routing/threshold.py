"""Routing by a per-step uncertainty score of the low model, and threshold calibration to a target share.

:class:`UncertaintyRouter` is the TRIM-Thr idea without a process reward model: before a step the
low model scores the candidate actions; when its own distribution is uncertain (high entropy,
or a small margin between its two best actions) the step goes to the high model.

:func:`calibrate_threshold` picks, for any scoring policy (these uncertainty scores, or a learned
router's ``p_high``), the threshold that sends a target share of steps high, as in policy-guided
stepwise routing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from precision_router.routing.base import RouteDecision, RoutingState, threshold_value

__all__ = ["UncertaintyRouter", "calibrate_threshold", "uncertainty"]

Measure = Literal["entropy", "margin"]


def uncertainty(log_probs: Sequence[float], measure: Measure = "entropy") -> float:
    """How unsure a distribution over candidates is: its entropy (nats), or minus its top-2 log-prob margin."""
    values = sorted((float(v) for v in log_probs), reverse=True)
    if not values:
        return 0.0
    if measure == "entropy":
        return -sum(math.exp(v) * v for v in values if v > -math.inf)
    if measure == "margin":
        return -(values[0] - values[1]) if len(values) > 1 else -math.inf
    msg = f"unknown uncertainty measure {measure!r}; use 'entropy' or 'margin'"
    raise ValueError(msg)


class UncertaintyRouter:
    """Route high when the low model's uncertainty about the next action reaches ``threshold``.

    Needs ``state.extras["low_logprobs"]``: the low model's log-distribution over the candidate
    actions (the ALFWorld agent provides it to routers whose ``needs_scores`` names ``"low"``). States
    without it go low.

    Args:
        threshold: uncertainty at or above which a step goes high (calibrate it with
            :func:`calibrate_threshold` to hit a target high-precision share).
        measure: ``"entropy"`` or ``"margin"`` (minus the gap between the two best log-probs).
    """

    needs_scores = ("low",)
    version: str | None = None

    def __init__(self, threshold: float, measure: Measure = "entropy") -> None:
        uncertainty([0.0, -1.0], measure)  # validates the measure
        self.threshold = threshold_value(threshold)
        self.measure = measure
        self.name = f"{measure}@{self.threshold:.4g}"

    def __repr__(self) -> str:
        return f"UncertaintyRouter(threshold={self.threshold}, measure={self.measure!r})"

    def with_threshold(self, threshold: float) -> UncertaintyRouter:
        """The same measure at another threshold."""
        return UncertaintyRouter(threshold, self.measure)

    def score(self, state: RoutingState) -> float | None:
        """The uncertainty score of ``state`` (``None`` when the low model's scores are missing)."""
        log_probs = state.extras.get("low_logprobs")
        return None if log_probs is None else uncertainty(log_probs, self.measure)

    def decide(self, state: RoutingState) -> RouteDecision:
        """High when the score reaches the threshold; ``p_high`` carries the raw score."""
        value = self.score(state)
        if value is None:
            return RouteDecision("low", None)
        return RouteDecision("high" if value >= self.threshold else "low", value)


def calibrate_threshold(scores: Sequence[float], target_share: float) -> float:
    """The threshold that sends (as nearly as ties allow) ``target_share`` of these steps high.

    A step goes high when its score is ``>=`` the threshold, so the threshold is the score of the
    ``ceil(target_share * n)``-th highest step.
    """
    if not 0.0 <= target_share <= 1.0:
        msg = f"target_share must be within [0, 1], got {target_share}"
        raise ValueError(msg)
    values = sorted((float(s) for s in scores), reverse=True)
    if not values:
        msg = "no scores to calibrate on: record traces with the policy's scores first"
        raise ValueError(msg)
    k = math.ceil(target_share * len(values))
    if k == 0:
        return math.nextafter(values[0], math.inf)
    return values[k - 1]
