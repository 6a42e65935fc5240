"""One routed step, from decision to trace: decide -> call -> escalate -> tag -> record.

Every entry point funnels into :class:`RoutedStep`: :class:`~precision_router.RoutedChatModel`
(invoke, stream, batch and their async forms), :class:`~precision_router.PrecisionRoutingMiddleware`,
the graph's :class:`~precision_router.ModelNode` and the ALFWorld agent. Each supplies only what
differs: how it reads the conversation and how it calls a model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.messages import AIMessage

from precision_router.conversation import DEFAULT_CONVERSATION, ConversationTracker, display_name, split_conversation
from precision_router.escalation import OutputValidator, escalation_reason
from precision_router.routing.base import RouteDecision, Router
from precision_router.routing.ladder import PrecisionLadder
from precision_router.traces.store import TraceStore

if TYPE_CHECKING:
    from typing import Self

    from precision_router.traces.schema import Episode

__all__ = ["LadderEntryPoint", "RoutedStep", "TrackedEntryPoint", "check_routing_setup"]

logger = logging.getLogger(__name__)

R = TypeVar("R")


def check_routing_setup(high: Any, low: Any, router: Any, trace_store: Any = None) -> None:
    """Refuse a router, trace store or model pair that cannot work together.

    Raises:
        TypeError: ``router`` is not a :class:`~precision_router.routing.Router` (a ``name``, a
            ``version`` and ``decide``) or ``trace_store`` is not a
            :class:`~precision_router.traces.TraceStore`.
        InvalidArgumentError: ``high`` and ``low`` are the same object.
        TokenizerMismatchError: ``high`` and ``low`` are local models with different tokenizers.
    """
    if not isinstance(router, Router):
        msg = (
            "router must have a name, a version (None when it has no parameters) and "
            f"decide(state) -> RouteDecision, got {type(router).__name__}"
        )
        raise TypeError(msg)
    if trace_store is not None and not isinstance(trace_store, TraceStore):
        msg = f"trace_store must be a TraceStore (e.g. JsonlTraceStore), got {type(trace_store).__name__}"
        raise TypeError(msg)
    if high is not None and high is low:
        from precision_router.errors import InvalidArgumentError

        msg = "high and low are the same model object: pass the low-precision copy as low (load_precision_pair)"
        raise InvalidArgumentError(msg)
    high_tok, low_tok = getattr(high, "tokenizer", None), getattr(low, "tokenizer", None)
    if high_tok is not None and low_tok is not None:
        from precision_router.models.pair import check_same_tokenizer

        check_same_tokenizer(high_tok, low_tok, getattr(high, "hf_model", None), getattr(low, "hf_model", None))


def _as_reply(result: Any) -> AIMessage | None:
    """The result itself when it is an AI message (the default ``reply_of``)."""
    return result if isinstance(result, AIMessage) else None


@dataclass
class RoutedStep:
    """One routed model call in flight.

    Made by :meth:`begin` (the router decides) or directly with a decision taken earlier (the
    graph's router node). :meth:`run` / :meth:`arun` call the chosen model, retry an unusable
    reply of a cheaper rung on the top rung, and record the step; entry points that call the
    model themselves use :meth:`escalation` and :meth:`finish`.

    Attributes:
        tracker: the conversation tracker the step is recorded in.
        conversation_id: the conversation (thread).
        decision: the router's decision.
        model: the model of the chosen rung (whatever the entry point calls).
        escalate_to: the top rung's model, when the chosen rung is a cheaper one and escalation is on.
        task: the conversation's task.
        observation: the new input the model answers.
        index: the step's index (``None``: the next of the open episode).
        tool_names: bound tools (unknown-tool check; empty turns it off).
        tool_choice: the call's ``tool_choice`` (a required call that is missing escalates).
        output_validator: the user's extra check of a reply.
    """

    tracker: ConversationTracker
    conversation_id: str
    decision: RouteDecision
    model: Any
    escalate_to: Any = None
    task: str = ""
    observation: str = ""
    index: int | None = None
    tool_names: Sequence[str] = ()
    tool_choice: Any = None
    output_validator: OutputValidator | None = None
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(
        cls,
        tracker: ConversationTracker,
        conversation_id: str,
        messages: Sequence[Any],
        models: Sequence[Any],
        *,
        escalate: bool = True,
        **options: Any,
    ) -> RoutedStep:
        """Read the conversation in ``messages``, ask the router, and pick the rung's model.

        Args:
            tracker: the tracker that routes and records.
            conversation_id: the conversation.
            messages: the conversation so far (LangChain messages).
            models: one model per rung of ``tracker.ladder``, highest precision first.
            escalate: retry an unusable reply of a cheaper rung on the top rung.
            **options: further attributes (``index``, ``tool_names``, ``tool_choice``, ``output_validator``).
        """
        task, history, observation = split_conversation(messages)
        decision = tracker.decide(conversation_id, task, history, index=options.get("index"))
        return cls.for_decision(
            tracker, conversation_id, decision, models, task=task, observation=observation, escalate=escalate, **options
        )

    @classmethod
    def for_decision(
        cls,
        tracker: ConversationTracker,
        conversation_id: str,
        decision: RouteDecision,
        models: Sequence[Any],
        *,
        escalate: bool = True,
        **options: Any,
    ) -> RoutedStep:
        """A step for a decision already taken; ``models`` as in :meth:`begin`."""
        rung = tracker.ladder.index(decision.route)
        top = models[0] if escalate and rung != 0 else None
        return cls(tracker, conversation_id, decision, models[rung], top, **options)

    @property
    def escalates(self) -> bool:
        """Whether an unusable reply would be retried on the top rung."""
        return self.escalate_to is not None

    def escalation(self, reply: AIMessage | None) -> str | None:
        """Why ``reply`` must be retried on the top rung, or ``None`` to keep it (or nothing to escalate to)."""
        if self.escalate_to is None or reply is None:
            return None
        reason = escalation_reason(reply, self.tool_names, self.tool_choice, self.output_validator)
        if reason:
            logger.info("escalating a step of %s to the top rung: %s", self.conversation_id, reason)
        return reason

    def finish(
        self,
        reply: AIMessage | None,
        escalation: str | None = None,
        *,
        action: str | None = None,
        model_name: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Record the step and return the reply's ``precision_router`` metadata.

        Args:
            reply: the reply used (its text and token usage are recorded), or ``None`` with ``action``.
            escalation: the reason the step was escalated, if it was.
            action: what the step did, when there is no reply (e.g. a scored command).
            model_name: the answering model's name (default: its display name).
            **fields: further step fields (``latency_ms`` replaces the measured time; ``candidates``,
                ``logprobs``, ``kl``, ``info``, token counts).
        """
        answered = self.escalate_to if escalation else self.model
        fields.setdefault("latency_ms", (time.perf_counter() - self.started) * 1000)
        common: dict[str, Any] = {
            "task": self.task,
            "observation": self.observation,
            "model": model_name if model_name is not None else display_name(answered),
            "escalation": escalation,
            "index": self.index,
            **fields,
        }
        if reply is not None and action is None:
            return self.tracker.record_reply(self.conversation_id, self.decision, reply, **common)
        text = action if action is not None else ""
        return self.tracker.record_step(self.conversation_id, self.decision, action=text, **common)

    def run(
        self, call: Callable[[Any], R], reply_of: Callable[[R], AIMessage | None] = _as_reply
    ) -> tuple[R, dict[str, Any]]:
        """Call the chosen model, escalate an unusable reply, record; returns ``(result, metadata)``."""
        result = call(self.model)
        escalation = self.escalation(reply_of(result))
        if escalation:
            result = call(self.escalate_to)
        return result, self.finish(reply_of(result), escalation)

    async def arun(
        self,
        call: Callable[[Any], Awaitable[R]],
        reply_of: Callable[[R], AIMessage | None] = _as_reply,
    ) -> tuple[R, dict[str, Any]]:
        """Async :meth:`run`."""
        result = await call(self.model)
        escalation = self.escalation(reply_of(result))
        if escalation:
            result = await call(self.escalate_to)
        return result, self.finish(reply_of(result), escalation)


class TrackedEntryPoint:
    """What an entry point that owns a :class:`ConversationTracker` offers: ``tracker``, ``ladder``, ``end_episode``."""

    if TYPE_CHECKING:
        _tracker: ConversationTracker

    @property
    def tracker(self) -> ConversationTracker:
        """The per-conversation routing state and episode recorder."""
        return self._tracker

    @property
    def ladder(self) -> PrecisionLadder:
        """The rungs routed between, with their costs (``high`` / ``low`` unless built from a ladder)."""
        return self._tracker.ladder

    def end_episode(
        self,
        thread_id: str = DEFAULT_CONVERSATION,
        *,
        success: bool | None = None,
        reward: float | None = None,
        info: dict[str, Any] | None = None,
    ) -> Episode | None:
        """Close the thread's episode, write it to the trace store and return it."""
        return self._tracker.end_episode(thread_id, success=success, reward=reward, info=info)


class LadderEntryPoint(TrackedEntryPoint):
    """An entry point that holds the models itself: built from ``(high, low)`` or from a ladder."""

    @classmethod
    def from_ladder(
        cls,
        ladder: Mapping[str, Any],
        router: Router,
        *,
        costs: Mapping[str, float] | Sequence[float] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Route over an ordered ladder of precisions.

        Args:
            ladder: models by rung name, highest precision first (e.g. ``{"fp32": m0,
                "gptq-4bit": m1, "gptq-3bit": m2}``); ``high`` is the first, ``low`` the last.
            router: returns one rung name per step (``"high"`` / ``"low"``: the top / bottom rung).
            costs: each rung's cost, by name or in order (normalised to the top rung); default
                linear from 1 to 0.
            **kwargs: the entry point's other options (``trace_store``, ``escalate_on_parse_error``, ...).
        """
        rungs = PrecisionLadder(list(ladder), costs)
        models = list(ladder.values())
        costs_by_name = dict(zip(rungs.names, rungs.costs, strict=True))
        return cls(models[0], models[-1], router, rungs=dict(ladder), costs=costs_by_name, **kwargs)  # type: ignore[call-arg]
