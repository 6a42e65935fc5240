"""The router interface, the state it sees, and the fixed policies."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from precision_router.locks import PicklableLock

__all__ = [
    "ROUTES",
    "AlwaysHigh",
    "AlwaysLow",
    "RandomLadderRouter",
    "RandomRouter",
    "Route",
    "RouteDecision",
    "Router",
    "RoutingState",
    "ScoreReader",
    "ScoredRouter",
    "format_step",
    "history_from_steps",
    "keyed_uniform",
    "probability",
    "router_window",
    "scores_needed",
    "threshold_name",
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

    def window(self, max_steps: int) -> list[str]:
        """What a sequence router reads of this state: :func:`router_window` of :meth:`step_texts`."""
        return router_window(self.step_texts(), max_steps)


T = TypeVar("T")


def router_window(sequence: Sequence[T], max_steps: int) -> list[T]:
    """The router's view of a step sequence ``[task, step_1 .. step_t]``: the task and the last ``max_steps`` steps.

    The one definition of ``L_max`` truncation, shared by serving (:class:`~precision_router.LearnedRouter`),
    training data and the network's batching, so training and serving never drift apart.
    """
    if max_steps < 1:
        msg = f"max_steps must be positive, got {max_steps}"
        raise ValueError(msg)
    items = list(sequence)
    return items if len(items) <= max_steps + 1 else [items[0], *items[-max_steps:]]


def history_from_steps(actions: Sequence[str], observations: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Pair each action with the observation that answered it.

    ``observations[i]`` is what the agent saw *before* action ``i`` (the trace convention), so
    action ``i`` is answered by ``observations[i + 1]``; a trailing action with no answer yet is
    dropped.
    """
    return tuple((actions[i], observations[i + 1]) for i in range(min(len(actions), len(observations) - 1)))


def keyed_uniform(seed: int, conversation_id: str, step_index: int) -> float:
    """A uniform draw in ``[0, 1)`` that is a pure function of ``(seed, conversation, step)``."""
    key = f"{seed}\x00{conversation_id}\x00{step_index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True)
class RouteDecision:
    """A router's choice for one step: the route and the probability it gave to the top precision.

    ``route`` is ``"high"`` / ``"low"``, or on a precision ladder the name of one rung (see
    :class:`~precision_router.routing.ladder.PrecisionLadder`).
    """

    route: str
    p_high: float | None = None


@runtime_checkable
class Router(Protocol):
    """Anything that maps a :class:`RoutingState` to a :class:`RouteDecision`."""

    @property
    def name(self) -> str:
        """Short policy name recorded in traces and response metadata (e.g. ``"random:0.3"``)."""
        ...

    @property
    def version(self) -> str | None:
        """What identifies the policy's parameters (a learned router's weights fingerprint), or ``None``."""
        ...

    def decide(self, state: RoutingState) -> RouteDecision:
        """Choose the precision for the step about to be taken."""
        ...


@runtime_checkable
class ScoreReader(Protocol):
    """A router that reads the precisions' own scores of the candidate actions before deciding.

    An agent that can score candidates (the ALFWorld agent in ``score`` mode) puts them in
    ``state.extras`` (``"low_logprobs"``, ``"high_logprobs"``, their chosen actions, ``"kl"``).
    """

    @property
    def needs_scores(self) -> tuple[str, ...]:
        """Whose scores it reads: ``("low",)`` or ``("low", "high")``."""
        ...


def scores_needed(router: object) -> tuple[str, ...]:
    """The precisions whose candidate scores ``router`` reads (``()`` for most routers)."""
    return tuple(router.needs_scores) if isinstance(router, ScoreReader) else ()


@runtime_checkable
class ScoredRouter(Router, Protocol):
    """A router that thresholds a per-step score: high when ``score(state) >= threshold``.

    Threshold calibration (:func:`~precision_router.evaluation.calibration.calibrated`) reads
    :meth:`score` on recorded steps and builds a new router with :meth:`with_threshold`.
    """

    @property
    def threshold(self) -> float:
        """The score at or above which a step goes high."""
        ...

    def score(self, state: RoutingState) -> float | None:
        """The step's score (``None`` when the state lacks what the score needs)."""
        ...

    def with_threshold(self, threshold: float) -> ScoredRouter:
        """A copy of this router with another threshold (and a name that says so)."""
        ...


def threshold_name(name: str, threshold: float) -> str:
    """``name`` with its ``@<threshold>`` suffix replaced (``entropy@0`` -> ``entropy@1.25``)."""
    return f"{name.split('@')[0]}@{threshold:.4g}"


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


class RandomLadderRouter:
    """Route each step to a rung drawn with fixed probabilities (the K-precision random baseline).

    With a ``seed`` a step's draw is a pure function of ``(seed, conversation_id, step_index)``,
    as for :class:`~precision_router.RandomRouter`.

    Args:
        shares: probability of each rung, by rung name (highest precision first); they must sum to 1.
        seed: makes the draws reproducible; ``None`` draws from a private RNG.
    """

    version: str | None = None

    def __init__(self, shares: Mapping[str, float], seed: int | None = None) -> None:
        total = sum(shares.values())
        if not shares or any(not 0 <= p <= 1 for p in shares.values()) or not math.isclose(total, 1.0, abs_tol=1e-9):
            msg = f"shares must be probabilities per rung that sum to 1, got {dict(shares)}"
            raise ValueError(msg)
        self.shares = {str(k): float(v) for k, v in shares.items()}
        self.seed = seed
        self.name = "random-ladder:" + ",".join(f"{k}={v:g}" for k, v in self.shares.items())
        self._rng = random.Random()
        self._lock = PicklableLock()

    def __repr__(self) -> str:
        return f"RandomLadderRouter({self.shares}, seed={self.seed})"

    def decide(self, state: RoutingState) -> RouteDecision:
        """A rung drawn by ``shares``; ``p_high`` is the first rung's share."""
        if self.seed is None:
            with self._lock:
                u = self._rng.random()
        else:
            u = keyed_uniform(self.seed, state.conversation_id, state.step_index)
        names = list(self.shares)
        cumulative = 0.0
        for name in names:
            cumulative += self.shares[name]
            if u < cumulative:
                break
        return RouteDecision(name, self.shares[names[0]])


class RandomRouter(RandomLadderRouter):
    """Route each step high with probability ``p_high`` (the two-rung :class:`RandomLadderRouter`).

    With a ``seed``, the draw for a step is a pure function of ``(seed, conversation_id,
    step_index)``: the same conversation gets the same routes however many run at once, which
    makes baselines reproducible across policies and reruns.

    Args:
        p_high: probability of routing a step high, a number in ``[0, 1]``.
        seed: makes the draws reproducible; ``None`` draws from a private RNG.

    Raises:
        PolicySpecError: ``p_high`` is not a number in ``[0, 1]`` (``True``, ``"0.5"`` and NaN are not).
    """

    def __init__(self, p_high: float, seed: int | None = None) -> None:
        p_high = probability(p_high, "p_high")
        super().__init__({"high": p_high, "low": 1.0 - p_high}, seed)
        self.p_high = p_high
        self.name = f"random:{self.p_high:g}"

    def __repr__(self) -> str:
        return f"RandomRouter(p_high={self.p_high}, seed={self.seed})"
