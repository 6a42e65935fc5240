"""Per-conversation routing state and trace recording, shared by every entry point.

:class:`RoutedChatModel`, :class:`PrecisionRoutingMiddleware` and the LangGraph router node
all route through one :class:`ConversationTracker`: it builds the :class:`RoutingState` of a
conversation, asks the router, and collects the conversation's steps into an
:class:`~precision_router.traces.Episode` that is written when the episode ends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from precision_router.routing.base import ROUTES, Route, RouteDecision, Router, RoutingState
from precision_router.routing.budget import HIGH_TOKENS
from precision_router.routing.decision import checked_decision
from precision_router.routing.ladder import TWO_RUNGS, PrecisionLadder
from precision_router.traces.schema import Episode, Step

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import RunnableConfig

    from precision_router.traces.store import TraceStore

__all__ = [
    "ConversationTracker",
    "conversation_id_from_config",
    "display_name",
    "is_anonymous",
    "message_text",
    "split_conversation",
    "tag_reply",
]

logger = logging.getLogger(__name__)

DEFAULT_CONVERSATION = "default"
"""Default ``thread_id`` of the ``end_episode`` methods (no run is keyed by it any more: a run
without a ``thread_id`` gets an anonymous one-step conversation, see :func:`is_anonymous`)."""

ANONYMOUS_PREFIX = "anonymous-"
"""Prefix of the one-step conversation keys given to calls without ``thread_id`` / ``session_id``."""

MessageT = TypeVar("MessageT", bound="BaseMessage")


def conversation_id_from_config(config: RunnableConfig | Mapping[str, Any] | None) -> str:
    """The conversation key of a run: ``configurable.thread_id``, else ``session_id`` (as ``str``).

    A run that names neither gets a fresh anonymous key (:func:`is_anonymous`): its step is a
    one-step episode, written as soon as it is recorded, so nothing accumulates in memory.
    """
    configurable = (config or {}).get("configurable") or {}
    metadata = (config or {}).get("metadata") or {}
    for source in (configurable, metadata):
        for key in ("thread_id", "session_id"):
            value = source.get(key)
            if value is not None and value != "":
                return str(value)
    return f"{ANONYMOUS_PREFIX}{uuid.uuid4().hex}"


def is_anonymous(conversation_id: object) -> bool:
    """Whether ``conversation_id`` is the one-step key of a call that named no conversation."""
    return isinstance(conversation_id, str) and conversation_id.startswith(ANONYMOUS_PREFIX)


def display_name(model: Any) -> str:
    """The name a model is recorded under: its ``model_name`` / ``model`` / ``model_id``, else its class.

    A model with bound tools (a ``RunnableBinding``) is recorded under the bound model's name.
    """
    model = getattr(model, "bound", model)
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def message_text(message: BaseMessage) -> str:
    """Plain text of a message: its text content plus, for AI messages, its tool calls."""
    text = message.text if isinstance(message.text, str) else message.text()  # type: ignore[operator]
    calls = getattr(message, "tool_calls", None) or []
    rendered = [f"{c['name']}({json.dumps(c.get('args', {}), sort_keys=True)})" for c in calls]
    return "\n".join(part for part in [text.strip(), *rendered] if part)


def tag_reply(message: MessageT, meta: Mapping[str, Any]) -> MessageT:
    """A copy of ``message`` whose ``response_metadata["precision_router"]`` is ``meta``."""
    response_metadata = {**message.response_metadata, "precision_router": dict(meta)}
    return message.model_copy(update={"response_metadata": response_metadata})


def split_conversation(messages: Sequence[BaseMessage]) -> tuple[str, tuple[tuple[str, str], ...], str]:
    """Split a message list into ``(task, history, observation)``.

    ``task`` is the first human turn; each AI message is an action whose observation is the
    text of the tool / human messages that follow it; ``observation`` is what the model is
    about to answer (the messages after the last AI message, or the task itself at step 0).
    System messages are ignored.
    """
    task = ""
    actions: list[str] = []
    observations: list[list[str]] = []
    pending: list[str] = []
    for message in messages:
        kind = message.type
        if kind == "system":
            continue
        if kind == "ai":
            if actions:
                observations.append(pending)
            pending = []
            actions.append(message_text(message))
        elif not task and not actions and kind == "human":
            task = message_text(message)
        else:
            pending.append(message_text(message))
    if actions:
        observations.append(pending)
    history = tuple((a, "\n".join(o)) for a, o in zip(actions, observations, strict=True))
    if history:
        return task, history, history[-1][1]
    return task, (), "\n".join(pending) or task


class ConversationTracker:
    """Routes steps and records them as episodes, one open episode per conversation.

    Thread-safe: every conversation has its own episode, and concurrent conversations never
    share state. An episode is written to ``trace_store`` (when set) by :meth:`end_episode`,
    and stays open until it is written: a failed write raises and can be retried. Conversation
    keys are normalised with ``str`` (``thread_id=123`` and ``"123"`` are one conversation). An
    anonymous conversation (:func:`is_anonymous`) is closed and written as soon as its one
    step is recorded.

    Args:
        router: the routing policy.
        trace_store: where finished episodes go (``None``: keep nothing after ``end_episode``).
        ladder: the precisions a route names, with their costs (default: ``high`` / ``low``).
    """

    def __init__(
        self, router: Router, trace_store: TraceStore | None = None, ladder: PrecisionLadder = TWO_RUNGS
    ) -> None:
        self.router = router
        self.trace_store = trace_store
        self.ladder = ladder
        self._episodes: dict[str, Episode] = {}
        self._lock = threading.Lock()

    @property
    def policy_name(self) -> str:
        """The router's name as recorded in traces."""
        return self.router.name

    @property
    def router_version(self) -> str | None:
        """The router's version (weights fingerprint for learned routers), if it has one."""
        return self.router.version

    def decide(
        self,
        conversation_id: object,
        task: str,
        history: Sequence[tuple[str, str]] = (),
        extras: Mapping[str, Any] | None = None,
        *,
        index: int | None = None,
    ) -> RouteDecision:
        """Ask the router for the next step of ``conversation_id`` (opening its episode if needed).

        The router sees ``RoutingState.step_index`` = ``index``; by default the larger of the
        steps recorded so far in this conversation and ``len(history)``, so repeated calls on one
        thread advance it even when each call passes only its new messages. ``extras`` gains
        ``"high_tokens"`` (:meth:`high_tokens`) unless the caller passes its own.

        Raises:
            RouteDecisionError: the router returned something that is not a valid decision
                (checked here, before any model is called).
        """
        key = str(conversation_id)
        if not is_anonymous(key):
            self._open(key, task)
        step = max(self.next_index(key), len(history)) if index is None else index
        signals = {HIGH_TOKENS: self.high_tokens(key), **(extras or {})}
        state = RoutingState(task, tuple(history), key, signals, step=step)
        return checked_decision(self.router.decide(state), self.router, (*ROUTES, *self.ladder.names))

    def _open(self, conversation_id: str, task: str) -> Episode:
        with self._lock:
            episode = self._episodes.get(conversation_id)
            if episode is None:
                episode = Episode(
                    conversation_id=conversation_id,
                    task=task,
                    policy=self.policy_name,
                    router_version=self.router_version,
                )
                self._episodes[conversation_id] = episode
            return episode

    def record(self, conversation_id: object, step: Step, *, task: str = "") -> None:
        """Add ``step`` to the open episode of ``conversation_id`` (an anonymous one is written at once)."""
        key = str(conversation_id)
        episode = self._open(key, task)
        with self._lock:
            episode.steps.append(step)
        if is_anonymous(key):
            self.end_episode(key)

    def record_reply(
        self,
        conversation_id: object,
        decision: RouteDecision,
        message: BaseMessage,
        **step: Any,
    ) -> dict[str, Any]:
        """Record the step that ``message`` answered; :meth:`record_step` with its text and token usage."""
        usage: Mapping[str, Any] = getattr(message, "usage_metadata", None) or {}
        step.setdefault("input_tokens", usage.get("input_tokens"))
        step.setdefault("output_tokens", usage.get("output_tokens"))
        return self.record_step(conversation_id, decision, action=message_text(message), **step)

    def record_step(
        self,
        conversation_id: object,
        decision: RouteDecision,
        *,
        action: str,
        task: str = "",
        observation: str = "",
        model: str = "",
        latency_ms: float = 0.0,
        escalation: str | None = None,
        index: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Record one step and return its ``precision_router`` metadata.

        Every entry point (chat model, middleware, graph node, the ALFWorld agent) records its
        steps here, through :class:`~precision_router.step.RoutedStep`, so the trace and the
        reply's ``response_metadata["precision_router"]`` always agree.

        Args:
            conversation_id: the conversation (thread) the step belongs to.
            decision: the router's decision for this step.
            action: what the step produced (the reply's text and tool calls, or a command).
            task: the conversation's task (names the episode if this opens it).
            observation: what the model answered (the new input since the previous step).
            model: name of the model that produced the action.
            latency_ms: time taken by the step, escalation included.
            escalation: why the reply was retried on the top rung, if it was; the step is then
                recorded on the top rung (``"high"``) and ``escalated``.
            index: the step's index; by default the next index of the open episode. Graph
                entry points pass the count kept in checkpointed state, so that a thread
                resumed in a new process continues its numbering.
            **fields: further :class:`~precision_router.traces.Step` fields (token counts,
                ``candidates``, ``logprobs``, ``kl``, ``info``).

        Returns:
            ``{"route", "rung", "cost", "p_high", "policy", "router_version", "latency_ms",
            "escalated", "model"}`` plus ``"escalation_reason"`` when escalated. ``route`` is
            ``"high"`` for the top rung and ``"low"`` for any other; ``rung`` names the rung.
        """
        ladder = self.ladder
        rung = ladder.top if escalation else ladder.names[ladder.index(decision.route)]
        route: Route = "high" if rung == ladder.top else "low"
        meta: dict[str, Any] = {
            "route": route,
            "rung": rung,
            "cost": ladder.cost(rung),
            "p_high": decision.p_high,
            "policy": self.policy_name,
            "router_version": self.router_version,
            "latency_ms": round(latency_ms, 3),
            "escalated": escalation is not None,
            "model": model,
        }
        if escalation:
            meta["escalation_reason"] = escalation
        key = str(conversation_id)
        episode = self._open(key, task)
        with self._lock:
            episode.steps.append(
                Step(
                    index=len(episode.steps) if index is None else index,
                    observation=observation,
                    action=action,
                    route=route,
                    rung=rung,
                    cost=meta["cost"],
                    p_high=decision.p_high,
                    policy=self.policy_name,
                    model=model,
                    latency_ms=latency_ms,
                    escalated=escalation is not None,
                    escalation_reason=escalation,
                    **fields,
                )
            )
        if is_anonymous(key):
            self.end_episode(key)
        return meta

    def high_tokens(self, conversation_id: object) -> int:
        """Tokens (input + output) of the high-rung steps recorded so far in ``conversation_id``.

        Routers see it before each decision as ``state.extras["high_tokens"]`` (what a token
        budget, :class:`~precision_router.routing.budget.BudgetRouter`, reads).
        """
        with self._lock:
            episode = self._episodes.get(str(conversation_id))
            steps = episode.steps if episode else ()
            return sum((s.input_tokens or 0) + (s.output_tokens or 0) for s in steps if s.route == "high")

    def next_index(self, conversation_id: object) -> int:
        """Index the next recorded step of ``conversation_id`` will get."""
        with self._lock:
            episode = self._episodes.get(str(conversation_id))
            return len(episode.steps) if episode else 0

    def current(self, conversation_id: object) -> Episode | None:
        """A copy of the open episode of ``conversation_id`` (``None`` if none is open)."""
        with self._lock:
            episode = self._episodes.get(str(conversation_id))
            return episode.model_copy(deep=True) if episode else None

    def open_conversations(self) -> list[str]:
        """Conversations with an open episode."""
        with self._lock:
            return list(self._episodes)

    def end_episode(
        self,
        conversation_id: object = DEFAULT_CONVERSATION,
        *,
        success: bool | None = None,
        reward: float | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> Episode | None:
        """Close the open episode of ``conversation_id``, write it, and return it.

        Returns ``None`` (and writes nothing) when the conversation has no open episode.

        Raises:
            TraceWriteError: the trace store could not write the episode (or any error the store
                raised); the episode is then still open, with its steps, and a later call retries.
        """
        key = str(conversation_id)
        with self._lock:
            episode = self._episodes.pop(key, None)
        if episode is None:
            if not is_anonymous(key):
                logger.warning("end_episode(%r): no open episode for this conversation", key)
            return None
        closed = episode.model_copy(deep=True)
        closed.success = success
        closed.reward = reward
        closed.info.update(info or {})
        closed.ended_at = time.time()
        if self.trace_store is not None:
            try:
                self.trace_store.append(closed)
            except BaseException:
                self._reopen(key, episode)
                raise
        return closed

    def _reopen(self, key: str, episode: Episode) -> None:
        """Put back an episode whose write failed (ahead of any steps recorded meanwhile)."""
        with self._lock:
            newer = self._episodes.get(key)
            if newer is not None:
                episode.steps.extend(newer.steps)
            self._episodes[key] = episode
        logger.warning("episode of %r kept open after a failed write: call end_episode again to retry", key)
