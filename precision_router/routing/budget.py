"""A hard budget on any router: at most so many high-precision steps, or tokens, per conversation."""

from __future__ import annotations

from precision_router.locks import PicklableLock
from precision_router.routing.base import RouteDecision, Router, RoutingState, scores_needed

__all__ = ["HIGH_TOKENS", "BudgetRouter"]

HIGH_TOKENS = "high_tokens"
"""``RoutingState.extras`` key: tokens (input + output) the conversation's recorded high steps used.

:class:`~precision_router.conversation.ConversationTracker` sets it before every decision, so
every entry point (chat model, middleware, graph node, the ALFWorld agent) supplies it."""


def _limit(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"{what} must be a non-negative integer, got {value!r}"
        raise ValueError(msg)
    return value


class BudgetRouter:
    """Route as ``router`` does until a conversation has spent its budget, then low.

    Two budgets, either or both:

    - ``max_high``: high-precision *steps* per conversation. The count is kept per conversation
      and per step index, so deciding the same step twice (a retried call) does not spend the
      budget twice. ``reset(conversation_id)`` forgets one conversation (call it when its episode
      ends in a long-running server).
    - ``max_high_tokens``: high-precision *tokens* per conversation (input + output of the steps
      recorded on the high rung, escalated ones included, as ``usage_metadata`` reported them).
      A step's size is known only after it ran, so the step that crosses the budget is played
      and none after it. Read from ``state.extras["high_tokens"]``, which the library's
      :class:`~precision_router.conversation.ConversationTracker` supplies; deciding a state
      without it raises ``ValueError``.

    Args:
        router: the policy to cap.
        max_high: high-precision steps allowed per conversation (``None``: no step budget).
        max_high_tokens: high-precision tokens allowed per conversation (``None``: no token budget).

    Raises:
        ValueError: a budget is not a non-negative integer, or neither is given.
    """

    def __init__(self, router: Router, max_high: int | None = None, *, max_high_tokens: int | None = None) -> None:
        self.max_high = _limit(max_high, "max_high")
        self.max_high_tokens = _limit(max_high_tokens, "max_high_tokens")
        if self.max_high is None and self.max_high_tokens is None:
            msg = "BudgetRouter needs max_high (steps) or max_high_tokens (tokens), or both"
            raise ValueError(msg)
        self.router = router
        parts = ([] if self.max_high is None else [f"budget{self.max_high}"]) + (
            [] if self.max_high_tokens is None else [f"budget{self.max_high_tokens}tok"]
        )
        self.name = "|".join([router.name, *parts])
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
        tokens = "" if self.max_high_tokens is None else f", max_high_tokens={self.max_high_tokens}"
        return f"BudgetRouter({self.router!r}, max_high={self.max_high}{tokens})"

    def spent(self, conversation_id: str) -> int:
        """High steps granted so far in a conversation."""
        with self._lock:
            return len(self._spent.get(conversation_id, ()))

    def reset(self, conversation_id: str) -> None:
        """Forget a conversation's spending (of steps; tokens are read from its recorded steps)."""
        with self._lock:
            self._spent.pop(conversation_id, None)

    def _tokens_left(self, state: RoutingState) -> bool:
        if self.max_high_tokens is None:
            return True
        used = state.extras.get(HIGH_TOKENS)
        if used is None:
            msg = (
                f"{self.name}: a token budget needs state.extras[{HIGH_TOKENS!r}] (the high tokens the "
                "conversation used), which ConversationTracker.decide supplies; pass it when calling decide directly"
            )
            raise ValueError(msg)
        return int(used) < self.max_high_tokens

    def decide(self, state: RoutingState) -> RouteDecision:
        """The wrapped decision, turned low once a budget is spent (``p_high`` kept as the router gave it)."""
        decision = self.router.decide(state)
        tokens_left = self._tokens_left(state)
        with self._lock:
            spent = self._spent.setdefault(state.conversation_id, set())
            if state.step_index in spent:
                return RouteDecision("high", decision.p_high)
            steps_left = self.max_high is None or len(spent) < self.max_high
            if decision.route == "high" and steps_left and tokens_left:
                spent.add(state.step_index)
                return decision
        return RouteDecision("low", decision.p_high)
