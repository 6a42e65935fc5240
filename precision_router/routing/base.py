"""The router interface, the state it sees, and the fixed policies."""

from __future__ import annotations

import hashlib
import math
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "ROUTES",
    "AlwaysHigh",
    "AlwaysLow",
    "RandomRouter",
    "Route",
    "RouteDecision",
    "Router",
    "RoutingState",
    "format_step",
    "history_from_steps",
    "probability",
    "threshold_value",
]

Route = Literal["high", "low"]
ROUTES: tuple[Route, Route] = ("low", "high")
"""Route names by class index: index 0 is the low-precision model, index 1 the high one."""


def probability(value: object, name: str) -> float:
    """``value`` as a float if it is a real number in ``[0, 1]`` (not a bool, not NaN).

    Raises:
        PolicySpecError: anything else; the message names ``name``.
    """
    from precision_router.errors import PolicySpecError

    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        msg = f"{name} must be a number in [0, 1], got {value!r}"
        raise PolicySpecError(msg)
    return float(value)


def threshold_value(value: object, name: str = "threshold") -> float:
    """``value`` as a float if it is a real number other than NaN (not a bool; ``±inf`` routes all or none high).

    Raises:
        PolicySpecError: anything else.
    """
    from precision_router.errors import PolicySpecError

    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(float(value)):
        msg = f"{name} must be a number (not NaN), got {value!r}"
        raise PolicySpecError(msg)
    return float(value)


def format_step(action: str, observation: str) -> str:
    """The text the router embeds for one past (action, observation) pair."""
    return f"Action: {action.strip()}\nObservation: {observation.strip()}"


@dataclass(frozen=True)
class RoutingState:
    """What a router sees before step ``len(history)`` of one conversation.

    Attributes:
        task: the task description (the first user turn, or the environment's goal).
        history: past ``(action, observation)`` pairs, oldest first; ``observation`` is what
            the environment or tools answered to ``action``.
        conversation_id: the conversation (LangGraph ``thread_id`` or ``session_id``).
        extras: optional per-step signals a policy may use (e.g. ``"low_logprobs"``: the low
            model's log-likelihoods over candidate actions, for score-threshold policies).
        step: index of the step about to be taken in its conversation, when the caller knows it
            (the tracker passes the conversation's recorded step count); ``None``: ``len(history)``.
    """

    task: str
    history: tuple[tuple[str, str], ...] = ()
    conversation_id: str = "default"
    extras: Mapping[str, Any] = field(default_factory=dict)
    step: int | None = None

    @property
    def step_index(self) -> int:
        """Index of the step about to be taken (0 for the first model call)."""
        return len(self.history) if self.step is None else self.step

    def step_texts(self) -> list[str]:
        """The router's input sequence as text: the task, then one text per past step."""
        return [self.task, *(format_step(a, o) for a, o in self.history)]


def history_from_steps(actions: Sequence[str], observations: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Pair each action with the observation that answered it.

    ``observations[i]`` is what the agent saw *before* action ``i`` (the trace convention), so
    action ``i`` is answered by ``observations[i + 1]``; a trailing action with no answer yet is
    dropped.
    """
    return tuple((actions[i], observations[i + 1]) for i in range(min(len(actions), len(observations) - 1)))


@dataclass(frozen=True)
class RouteDecision:
    """A router's choice for one step: the route and the probability it gave to ``"high"``."""

    route: Route
    p_high: float | None = None


@runtime_checkable
class Router(Protocol):
    """Anything that maps a :class:`RoutingState` to a :class:`RouteDecision`."""

    name: str
    """Short policy name recorded in traces and response metadata (e.g. ``"random:0.3"``)."""

    def decide(self, state: RoutingState) -> RouteDecision:
        """Choose the precision for the step about to be taken."""
        ...


class AlwaysHigh:
    """Route every step to the high-precision model (the quality ceiling)."""

    name = "high"
    version: str | None = None

    def decide(self, state: RoutingState) -> RouteDecision:
        """Always ``"high"``."""
        return RouteDecision("high", 1.0)


class AlwaysLow:
    """Route every step to the low-precision model (the cost floor)."""

    name = "low"
    version: str | None = None

    def decide(self, state: RoutingState) -> RouteDecision:
        """Always ``"low"``."""
        return RouteDecision("low", 0.0)


class RandomRouter:
    """Route each step high with probability ``p_high``.

    With a ``seed``, the draw for a step is a pure function of ``(seed, conversation_id,
    step_index)``: the same conversation gets the same routes however many run at once, which
    makes baselines reproducible across policies and reruns.

    Args:
        p_high: probability of routing a step high, a number in ``[0, 1]``.
        seed: makes the draws reproducible; ``None`` draws from a private RNG.

    Raises:
        PolicySpecError: ``p_high`` is not a number in ``[0, 1]`` (``True``, ``"0.5"`` and NaN are not).
    """

    version: str | None = None

    def __init__(self, p_high: float, seed: int | None = None) -> None:
        self.p_high = probability(p_high, "p_high")
        self.seed = seed
        self.name = f"random:{self.p_high:g}"
        self._rng = random.Random()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RandomRouter(p_high={self.p_high}, seed={self.seed})"

    def _uniform(self, state: RoutingState) -> float:
        if self.seed is None:
            with self._lock:
                return self._rng.random()
        key = f"{self.seed}\x00{state.conversation_id}\x00{state.step_index}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64

    def decide(self, state: RoutingState) -> RouteDecision:
        """``"high"`` with probability ``p_high``."""
        return RouteDecision("high" if self._uniform(state) < self.p_high else "low", self.p_high)
