"""A hard budget on any router: at most ``max_high`` high-precision steps per conversation."""

from __future__ import annotations

from precision_router.locks import PicklableLock
from precision_router.routing.base import RouteDecision, Router, RoutingState, scores_needed

__all__ = ["BudgetRouter"]


class BudgetRouter:
    """Route as ``router`` does until a conversation has spent ``max_high`` high steps, then low.

    The count is kept per conversation and per step index, so deciding the same step twice
    (a retried call) does not spend the budget twice. ``reset(conversation_id)`` forgets one
    conversation (call it when its episode ends in a long-running server).

    Args:
        router: the policy to cap.
        max_high: high-precision steps allowed per conversation.
    """

    def __init__(self, router: Router, max_high: int) -> None:
        if isinstance(max_high, bool) or not isinstance(max_high, int) or max_high < 0:
            msg = f"max_high must be a non-negative integer, got {max_high!r}"
            raise ValueError(msg)
        self.router = router
        self.max_high = max_high
        self.name = f"{router.name}|budget{max_high}"
        self._spent: dict[str, set[int]] = {}
        self._lock = PicklableLock()

    @property
    def needs_scores(self) -> tuple[str, ...]:
        """The wrapped router's (it gets the same inputs)."""
        return scores_needed(self.router)

    @property
    def version(self) -> str | None:
        """The wrapped router's version."""
        return self.router.version

    def __repr__(self) -> str:
        return f"BudgetRouter({self.router!r}, max_high={self.max_high})"

    def spent(self, conversation_id: str) -> int:
        """High steps spent so far in a conversation."""
        with self._lock:
            return len(self._spent.get(conversation_id, ()))

    def reset(self, conversation_id: str) -> None:
        """Forget a conversation's spending."""
        with self._lock:
            self._spent.pop(conversation_id, None)

    def decide(self, state: RoutingState) -> RouteDecision:
        """The wrapped decision, turned low once the budget is spent (``p_high`` kept as the router gave it)."""
        decision = self.router.decide(state)
        with self._lock:
            spent = self._spent.setdefault(state.conversation_id, set())
            if state.step_index in spent:
                return RouteDecision("high", decision.p_high)
            if decision.route == "high" and len(spent) < self.max_high:
                spent.add(state.step_index)
                return decision
        return RouteDecision("low", decision.p_high)
