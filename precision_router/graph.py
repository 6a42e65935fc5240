"""LangGraph pieces for custom graphs: a router node, routed model nodes and a conditional edge.

A routed step in a graph is two nodes: :class:`RouterNode` decides the precision of the next
model call and writes it to state (``route``, ``p_high``); :func:`route_edge` sends the step to
the high or the low model node; a :class:`ModelNode` calls its model, escalates an unusable
low reply to the high model, tags the reply with ``response_metadata["precision_router"]``,
records the step and appends the route it used to ``route_history``. All routing state lives
in the graph state and the messages, so a checkpointer (``InMemorySaver``, ``SqliteSaver``)
keeps it with the thread: a thread resumed later, in this process or a new one, continues its
step numbering.

.. code-block:: python

    router_node = RouterNode(RandomRouter(0.3, seed=0), trace_store=JsonlTraceStore("traces.jsonl"))
    graph = StateGraph(RoutedMessagesState)
    graph.add_node("router", router_node)
    graph.add_node("high", router_node.model_node(high, route="high", tools=tools))
    graph.add_node("low", router_node.model_node(low, route="low", tools=tools, escalate_to=high))
    graph.add_edge(START, "router")
    graph.add_conditional_edges("router", route_edge("high", "low"), ["high", "low"])

:func:`build_routed_react_agent` wires a complete ReAct loop (router, model nodes, tools) this way.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NotRequired

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph

from precision_router.chat_model import bound_tool_names, check_routing_setup, escalation_reason
from precision_router.conversation import (
    DEFAULT_CONVERSATION,
    ConversationTracker,
    conversation_id_from_config,
    display_name,
    split_conversation,
    tag_reply,
)
from precision_router.routing.base import Route, RouteDecision, Router
from precision_router.traces.schema import Episode
from precision_router.traces.store import TraceStore

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

__all__ = [
    "ModelNode",
    "RoutedMessagesState",
    "RouterNode",
    "build_routed_react_agent",
    "route_edge",
]

logger = logging.getLogger(__name__)

ToolLike = BaseTool | Callable[..., Any] | dict[str, Any]
ToolChoice = Any
"""A fixed ``tool_choice`` (``None``, ``"auto"``, ``"any"``, a tool name), or a function of the
state returning one (e.g. require a tool call until a tool has answered)."""


class RoutedMessagesState(MessagesState):
    """``MessagesState`` plus the routing keys; extend it with your own keys.

    Attributes:
        route: the precision of the current step: the router node's decision, replaced by
            ``"high"`` when a model node escalated the step.
        p_high: the probability the router gave to ``"high"`` for the current step.
        route_history: the route each model step of the thread used, oldest first (appended
            by the model nodes); its length is the thread's step count.
    """

    route: NotRequired[Route]
    p_high: NotRequired[float | None]
    route_history: NotRequired[Annotated[list[str], operator.add]]


def _messages(state: Mapping[str, Any]) -> list[AnyMessage]:
    try:
        return list(state["messages"])
    except (KeyError, TypeError):
        msg = "the router and model nodes read state['messages']: use a state schema built on RoutedMessagesState"
        raise ValueError(msg) from None


class RouterNode(Runnable[Any, dict[str, Any]]):
    """Graph node that picks the precision of the next model step.

    Reads ``messages`` (the task is the first human turn; each AI message and what answered it
    is one past step), asks the router, and returns ``{"route", "p_high"}``. The conversation
    is the run's ``thread_id`` (else ``session_id``, else ``"default"``). The node owns the
    :class:`~precision_router.ConversationTracker` shared with the model nodes it makes
    (:meth:`model_node`); close a thread's episode with :meth:`end_episode`.

    Args:
        router: the routing policy.
        trace_store: where finished episodes are written.
        tracker: share an existing tracker instead (``router`` and ``trace_store`` must then
            be the tracker's).
    """

    def __init__(
        self,
        router: Router,
        *,
        trace_store: TraceStore | None = None,
        tracker: ConversationTracker | None = None,
    ) -> None:
        check_routing_setup(None, None, router, trace_store)
        if tracker is not None and (tracker.router is not router or trace_store not in (None, tracker.trace_store)):
            msg = "tracker= already has its router and trace store: pass the same router and no other trace_store"
            raise ValueError(msg)
        self.router = router
        self._tracker = tracker or ConversationTracker(router, trace_store)

    def __repr__(self) -> str:
        return f"RouterNode({self.router!r})"

    @property
    def tracker(self) -> ConversationTracker:
        """The per-conversation routing state and episode recorder."""
        return self._tracker

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

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        """Decide the next step of the thread in ``config``; returns ``{"route", "p_high"}``."""
        conversation_id = conversation_id_from_config(ensure_config(config))
        task, history, _ = split_conversation(_messages(input))
        index = len(input.get("route_history") or ())
        decision = self._tracker.decide(conversation_id, task, history, index=index)
        return {"route": decision.route, "p_high": decision.p_high}

    def model_node(
        self,
        model: BaseChatModel,
        *,
        route: Route,
        tools: Sequence[ToolLike] = (),
        tool_choice: ToolChoice = None,
        system_prompt: str | None = None,
        escalate_to: BaseChatModel | None = None,
        escalate_on_parse_error: bool = True,
        output_validator: Callable[[AIMessage], str | None] | None = None,
    ) -> ModelNode:
        """A :class:`ModelNode` recording into this node's tracker (arguments as there)."""
        return ModelNode(
            model,
            self._tracker,
            route=route,
            tools=tools,
            tool_choice=tool_choice,
            system_prompt=system_prompt,
            escalate_to=escalate_to,
            escalate_on_parse_error=escalate_on_parse_error,
            output_validator=output_validator,
        )


class ModelNode(Runnable[Any, dict[str, Any]]):
    """Graph node that runs one precision's model for the current step and records it.

    Calls ``model`` (with ``tools`` bound) on ``messages``; when ``route`` is ``"low"``,
    ``escalate_to`` is given and the reply is unusable (the same rule as
    :class:`~precision_router.RoutedChatModel`), retries on ``escalate_to``. Returns the reply,
    tagged with ``response_metadata["precision_router"]``, plus ``route`` and the
    ``route_history`` entry of the step. The step is recorded in ``tracker`` under the index
    ``len(route_history)``, so numbering survives a restart over the same checkpointer.

    Args:
        model: the chat model of this node's precision.
        tracker: the tracker of the graph's :class:`RouterNode` (prefer :meth:`RouterNode.model_node`).
        route: which precision ``model`` is.
        tools: tools to bind for every call.
        tool_choice: ``tool_choice`` to bind, or a function of the state returning it.
        system_prompt: prepended as a system message to every call.
        escalate_to: the high-precision model that retries unusable low replies.
        escalate_on_parse_error: whether to escalate at all.
        output_validator: extra check of a low reply: return a reason to escalate, or ``None``.
    """

    def __init__(
        self,
        model: BaseChatModel,
        tracker: ConversationTracker,
        *,
        route: Route,
        tools: Sequence[ToolLike] = (),
        tool_choice: ToolChoice = None,
        system_prompt: str | None = None,
        escalate_to: BaseChatModel | None = None,
        escalate_on_parse_error: bool = True,
        output_validator: Callable[[AIMessage], str | None] | None = None,
    ) -> None:
        if route not in ("high", "low"):
            msg = f"route must be 'high' or 'low', got {route!r}"
            raise ValueError(msg)
        if escalate_to is not None and route == "high":
            msg = "escalate_to is for the low model node: the high node has nothing to escalate to"
            raise ValueError(msg)
        self.model = model
        self.tracker = tracker
        self.route: Route = route
        self.tools = list(tools)
        self.tool_names = bound_tool_names(self.tools)
        self.tool_choice = tool_choice
        self.system_prompt = system_prompt
        self.escalate_to = escalate_to
        self.escalate_on_parse_error = escalate_on_parse_error
        self.output_validator = output_validator

    def __repr__(self) -> str:
        return f"ModelNode({display_name(self.model)!r}, route={self.route!r})"

    # -- one step ----------------------------------------------------------------------------
    def _prepare(self, state: Mapping[str, Any], config: RunnableConfig | None) -> _NodeStep:
        messages = _messages(state)
        choice = self.tool_choice(state) if callable(self.tool_choice) else self.tool_choice
        prompt: list[BaseMessage] = [*messages]
        if self.system_prompt:
            prompt.insert(0, SystemMessage(self.system_prompt))
        return _NodeStep(
            conversation_id=conversation_id_from_config(ensure_config(config)),
            messages=messages,
            prompt=prompt,
            tool_choice=choice,
            index=len(state.get("route_history") or ()),
            p_high=state.get("p_high"),
        )

    def _bind(self, model: BaseChatModel, tool_choice: Any) -> Runnable[Any, Any]:
        if not self.tools:
            return model
        choice = {"tool_choice": tool_choice} if tool_choice is not None else {}
        return model.bind_tools(self.tools, **choice)

    def _escalation(self, step: _NodeStep, reply: AIMessage) -> str | None:
        if self.route != "low" or self.escalate_to is None or not self.escalate_on_parse_error:
            return None
        reason = escalation_reason(reply, self.tool_names, step.tool_choice, self.output_validator)
        if reason:
            logger.info("escalating step %d of %s to high: %s", step.index, step.conversation_id, reason)
        return reason

    def _finish(self, step: _NodeStep, reply: AIMessage, escalation: str | None, started: float) -> dict[str, Any]:
        task, _, observation = split_conversation(step.messages)
        meta = self.tracker.record_reply(
            step.conversation_id,
            RouteDecision(self.route, step.p_high),
            reply,
            task=task,
            observation=observation,
            model=display_name(self.escalate_to if escalation else self.model),
            latency_ms=(time.perf_counter() - started) * 1000,
            escalation=escalation,
            index=step.index,
        )
        return {"messages": [tag_reply(reply, meta)], "route": meta["route"], "route_history": [meta["route"]]}

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run the step; returns the state update (``messages``, ``route``, ``route_history``)."""
        started = time.perf_counter()
        step = self._prepare(input, config)
        reply = _as_ai_message(self._bind(self.model, step.tool_choice).invoke(step.prompt, config))
        escalation = self._escalation(step, reply)
        if escalation and self.escalate_to is not None:
            reply = _as_ai_message(self._bind(self.escalate_to, step.tool_choice).invoke(step.prompt, config))
        return self._finish(step, reply, escalation, started)

    async def ainvoke(
        self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Async :meth:`invoke`."""
        started = time.perf_counter()
        step = self._prepare(input, config)
        reply = _as_ai_message(await self._bind(self.model, step.tool_choice).ainvoke(step.prompt, config))
        escalation = self._escalation(step, reply)
        if escalation and self.escalate_to is not None:
            reply = _as_ai_message(await self._bind(self.escalate_to, step.tool_choice).ainvoke(step.prompt, config))
        return self._finish(step, reply, escalation, started)


@dataclass
class _NodeStep:
    """What a model node works from for one step."""

    conversation_id: str
    messages: list[AnyMessage]
    prompt: list[BaseMessage]
    tool_choice: Any
    index: int
    p_high: float | None


def route_edge(high_node: str = "high", low_node: str = "low") -> Callable[[Mapping[str, Any]], str]:
    """A conditional-edge function sending the step to ``high_node`` or ``low_node`` by ``state["route"]``.

    Use it after the router node:
    ``graph.add_conditional_edges("router", route_edge("high", "low"), ["high", "low"])``.
    """

    def edge(state: Mapping[str, Any]) -> str:
        route = state.get("route")
        if route == "high":
            return high_node
        if route == "low":
            return low_node
        msg = f"state['route'] is {route!r}: put the router node (RouterNode) before this edge"
        raise ValueError(msg)

    edge.__name__ = "route_edge"
    return edge


def _steps_since_user(messages: Sequence[BaseMessage]) -> int:
    """Number of AI messages since the last human message (the model steps of the current run)."""
    count = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage):
            count += 1
    return count


def build_routed_react_agent(
    high: BaseChatModel,
    low: BaseChatModel,
    router: Router | RouterNode,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    *,
    checkpointer: BaseCheckpointSaver[Any] | bool | None = None,
    trace_store: TraceStore | None = None,
    system_prompt: str | None = None,
    tool_choice: ToolChoice = None,
    escalate_on_parse_error: bool = True,
    output_validator: Callable[[AIMessage], str | None] | None = None,
    max_steps: int | None = None,
    state_schema: type[Any] = RoutedMessagesState,
    name: str | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A compiled ReAct loop: router -> high / low model -> tools -> router ... -> END.

    Args:
        high: the high-precision chat model.
        low: the low-precision chat model.
        router: the routing policy, or a :class:`RouterNode`: pass one (and keep it) to call
            :meth:`RouterNode.end_episode` on the threads this graph runs.
        tools: the agent's tools (a ``ToolNode`` runs them); none: one model step, then END.
        checkpointer: keeps each thread's messages and routing state (``InMemorySaver``,
            ``SqliteSaver``, ...).
        trace_store: where finished episodes go, when ``router`` is a bare router.
        system_prompt: prepended to every model call.
        tool_choice: passed with the tools; or a function of the state returning it.
        escalate_on_parse_error: retry an unusable low reply on ``high``.
        output_validator: extra check of a low reply: return a reason to escalate, or ``None``.
        max_steps: end the run after this many model steps since the last user message.
        state_schema: the graph's state; must extend :class:`RoutedMessagesState`.
        name: the compiled graph's name.

    Returns:
        The compiled graph; invoke it with ``{"messages": [...]}`` and a ``thread_id``.
    """
    if isinstance(router, RouterNode):
        if trace_store is not None:
            msg = "pass trace_store to the RouterNode, not to build_routed_react_agent"
            raise ValueError(msg)
        router_node = router
    else:
        router_node = RouterNode(router, trace_store=trace_store)
    check_routing_setup(high, low, router_node.router, router_node.tracker.trace_store)
    if max_steps is not None and max_steps < 1:
        msg = f"max_steps must be at least 1, got {max_steps}"
        raise ValueError(msg)

    from langgraph.prebuilt import ToolNode, tools_condition

    tool_node = ToolNode(list(tools)) if tools else None
    bound_tools: list[ToolLike] = list(tool_node.tools_by_name.values()) if tool_node else []
    common: dict[str, Any] = {
        "tools": bound_tools,
        "tool_choice": tool_choice,
        "system_prompt": system_prompt,
        "escalate_on_parse_error": escalate_on_parse_error,
        "output_validator": output_validator,
    }
    graph = StateGraph(state_schema)
    graph.add_node("router", router_node)
    graph.add_node("high", router_node.model_node(high, route="high", **common))
    graph.add_node("low", router_node.model_node(low, route="low", escalate_to=high, **common))
    graph.add_edge(START, "router")
    graph.add_conditional_edges("router", route_edge("high", "low"), ["high", "low"])
    if tool_node is None:
        graph.add_edge("high", END)
        graph.add_edge("low", END)
    else:
        graph.add_node("tools", tool_node)
        for node in ("high", "low"):
            graph.add_conditional_edges(node, tools_condition, {"tools": "tools", END: END})

        def after_tools(state: Mapping[str, Any]) -> str:
            if max_steps is not None and _steps_since_user(state["messages"]) >= max_steps:
                logger.info("max_steps=%d reached: ending the run", max_steps)
                return END
            return "router"

        graph.add_conditional_edges("tools", after_tools, ["router", END])
    return graph.compile(checkpointer=checkpointer, name=name)


def _as_ai_message(output: Any) -> AIMessage:
    if isinstance(output, AIMessage):
        return output
    msg = f"a model node's model must return an AIMessage, got {type(output).__name__}"
    raise TypeError(msg)
