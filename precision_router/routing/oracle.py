"""Oracle policies: diagnostic upper bounds that look at both precisions before each step.

They are not deployable routers (to decide, they run the high model at every step, which is
the cost routing is meant to save), but they answer the question a learned router cannot:
does per-step disagreement between the precisions carry routing signal in this setting at all?
Their cost is counted like every policy's, as the share of steps they route high.

- :class:`OracleDisagree` routes high exactly where the two precisions would play different
  actions (after the agent's own penalties). In a deterministic environment it reproduces the
  high-only episode step for step, at the share of steps where the precisions disagree.
- :class:`OracleKL` routes high where ``KL(pi_low || pi_high)`` reaches a threshold (calibrate it
  on ``collect-kl`` traces to a share): the best a router trained on KL labels could do.

Both need ``state.extras`` from an agent that scores every candidate with both precisions
before deciding (the ALFWorld agent does so for routers whose ``needs_scores`` is ``("low", "high")``).
"""

from __future__ import annotations

from precision_router.routing.base import RouteDecision, RoutingState, threshold_value

__all__ = ["OracleDisagree", "OracleKL"]


class OracleDisagree:
    """Route high iff ``extras["low_choice"] != extras["high_choice"]`` (the actions each would play)."""

    name = "oracle-disagree"
    version: str | None = None
    needs_scores = ("low", "high")

    def __repr__(self) -> str:
        return "OracleDisagree()"

    def decide(self, state: RoutingState) -> RouteDecision:
        """High where the precisions' chosen actions differ; low (``p_high`` None) without both choices."""
        low, high = state.extras.get("low_choice"), state.extras.get("high_choice")
        if low is None or high is None:
            return RouteDecision("low", None)
        differ = low != high
        return RouteDecision("high" if differ else "low", 1.0 if differ else 0.0)


class OracleKL:
    """Route high iff ``extras["kl"]`` (``KL(pi_low || pi_high)`` over the candidates) reaches ``threshold``.

    Args:
        threshold: KL in nats at or above which a step goes high.
    """

    version: str | None = None
    needs_scores = ("low", "high")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold_value(threshold)
        self.name = f"oracle-kl@{self.threshold:.4g}"

    def __repr__(self) -> str:
        return f"OracleKL(threshold={self.threshold})"

    def with_threshold(self, threshold: float) -> OracleKL:
        """The KL oracle at another threshold."""
        return OracleKL(threshold)

    def score(self, state: RoutingState) -> float | None:
        """The step's KL (``None`` when the agent did not provide it)."""
        value = state.extras.get("kl")
        return None if value is None else float(value)

    def decide(self, state: RoutingState) -> RouteDecision:
        """High when the KL reaches the threshold; ``p_high`` carries the KL."""
        value = self.score(state)
        if value is None:
            return RouteDecision("low", None)
        return RouteDecision("high" if value >= self.threshold else "low", value)
