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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NotRequired

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, MessagesState, StateGraph

from precision_router.conversation import (
    ConversationTracker,
    conversation_id_from_config,
    display_name,
    split_conversation,
    tag_reply,
)
from precision_router.escalation import OutputValidator, bound_tool_names
from precision_router.routing.base import RouteDecision, Router
from precision_router.routing.ladder import TWO_RUNGS, PrecisionLadder
from precision_router.step import RoutedStep, TrackedEntryPoint, check_routing_setup
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
        route: the precision (rung) of the current step: the router node's decision, replaced
            by the top rung (``"high"``) when a model node escalated the step.
        p_high: the probability the router gave to ``"high"`` for the current step.
        route_history: the route each model step of the thread used, oldest first (appended
            by the model nodes); its length is the thread's step count.
    """

    route: NotRequired[str]
    p_high: NotRequired[float | None]
    route_history: NotRequired[Annotated[list[str], operator.add]]


def _messages(state: Mapping[str, Any]) -> list[AnyMessage]:
    try:
        return list(state["messages"])
    except (KeyError, TypeError):
        msg = "the router and model nodes read state['messages']: use a state schema built on RoutedMessagesState"
        raise ValueError(msg) from None


class RouterNode(TrackedEntryPoint, Runnable[Any, dict[str, Any]]):
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
        ladder: the rungs a route names, with their costs (default ``high`` / ``low``); the node
            writes the chosen rung's name to ``route``.
    """

    def __init__(
        self,
        router: Router,
        *,
        trace_store: TraceStore | None = None,
        tracker: ConversationTracker | None = None,
        ladder: PrecisionLadder | None = None,
    ) -> None:
        check_routing_setup(None, None, router, trace_store)
        if tracker is not None and (tracker.router is not router or trace_store not in (None, tracker.trace_store)):
            msg = "tracker= already has its router and trace store: pass the same router and no other trace_store"
            raise ValueError(msg)
        self.router = router
        self._tracker = tracker or ConversationTracker(router, trace_store, ladder or TWO_RUNGS)

    def __repr__(self) -> str:
        return f"RouterNode({self.router!r})"

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        """Decide the next step of the thread in ``config``; returns ``{"route", "p_high"}``."""
        conversation_id = conversation_id_from_config(ensure_config(config))
        task, history, _ = split_conversation(_messages(input))
        index = len(input.get("route_history") or ())
        decision = self._tracker.decide(conversation_id, task, history, index=index)
        ladder = self._tracker.ladder
        return {"route": ladder.names[ladder.index(decision.route)], "p_high": decision.p_high}

    def model_node(self, model: BaseChatModel, **options: Any) -> ModelNode:
        """A :class:`ModelNode` recording into this node's tracker (``route=`` and the other options as there)."""
        return ModelNode(model, self._tracker, **options)


class ModelNode(Runnable[Any, dict[str, Any]]):
    """Graph node that runs one precision's model for the current step and records it.

    Calls ``model`` (with ``tools`` bound) on ``messages``; when ``route`` is a cheaper rung than
    the top one, ``escalate_to`` is given and the reply is unusable (the same rule as
    :class:`~precision_router.RoutedChatModel`: one :class:`~precision_router.step.RoutedStep`),
    retries on ``escalate_to``. Returns the reply, tagged with
    ``response_metadata["precision_router"]``, plus ``route`` and the ``route_history`` entry of
    the step. The step is recorded in ``tracker`` under the index
    ``len(route_history)``, so numbering survives a restart over the same checkpointer.

    Args:
        model: the chat model of this node's precision.
        tracker: the tracker of the graph's :class:`RouterNode` (prefer :meth:`RouterNode.model_node`).
        route: which precision (rung of ``tracker.ladder``) ``model`` is.
        tools: tools to bind for every call.
        tool_choice: ``tool_choice`` to bind, or a function of the state returning it.
        system_prompt: prepended as a system message to every call.
        escalate_to: the top rung's model, which retries unusable replies of a cheaper rung.
        escalate_on_parse_error: whether to escalate at all.
        output_validator: extra check of a low reply: return a reason to escalate, or ``None``.
    """

    def __init__(
        self,
        model: BaseChatModel,
        tracker: ConversationTracker,
        *,
        route: str,
        tools: Sequence[ToolLike] = (),
        tool_choice: ToolChoice = None,
        system_prompt: str | None = None,
        escalate_to: BaseChatModel | None = None,
        escalate_on_parse_error: bool = True,
        output_validator: OutputValidator | None = None,
    ) -> None:
        rung = tracker.ladder.index(route)
        if escalate_to is not None and rung == 0:
            msg = "escalate_to is for the nodes of cheaper rungs: the top (high) node has nothing to escalate to"
            raise ValueError(msg)
        self.model = model
        self.tracker = tracker
        self.route = tracker.ladder.names[rung]
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
    def _begin(self, state: Mapping[str, Any], config: RunnableConfig | None) -> tuple[RoutedStep, list[BaseMessage]]:
        messages = _messages(state)
        choice = self.tool_choice(state) if callable(self.tool_choice) else self.tool_choice
        prompt: list[BaseMessage] = [*messages]
        if self.system_prompt:
            prompt.insert(0, SystemMessage(self.system_prompt))
        task, _, observation = split_conversation(messages)
        escalate = self.escalate_to is not None and self.escalate_on_parse_error
        step = RoutedStep(
            self.tracker,
            conversation_id_from_config(ensure_config(config)),
            RouteDecision(self.route, state.get("p_high")),
            self._bind(self.model, choice),
            self._bind(self.escalate_to, choice) if escalate and self.escalate_to is not None else None,
            task=task,
            observation=observation,
            index=len(state.get("route_history") or ()),
            tool_names=self.tool_names,
            tool_choice=choice,
            output_validator=self.output_validator,
        )
        return step, prompt

    def _bind(self, model: BaseChatModel, tool_choice: Any) -> Runnable[Any, Any]:
        if not self.tools:
            return model
        choice = {"tool_choice": tool_choice} if tool_choice is not None else {}
        return model.bind_tools(self.tools, **choice)

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run the step; returns the state update (``messages``, ``route``, ``route_history``)."""
        step, prompt = self._begin(input, config)
        reply, meta = step.run(lambda model: _as_ai_message(model.invoke(prompt, config)))
        return _update(reply, meta)

    async def ainvoke(
        self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Async :meth:`invoke`."""
        step, prompt = self._begin(input, config)

        async def call(model: Runnable[Any, Any]) -> AIMessage:
            return _as_ai_message(await model.ainvoke(prompt, config))

        reply, meta = await step.arun(call)
        return _update(reply, meta)


def _update(reply: AIMessage, meta: dict[str, Any]) -> dict[str, Any]:
    """A model node's state update: the tagged reply and the rung the step used."""
    return {"messages": [tag_reply(reply, meta)], "route": meta["rung"], "route_history": [meta["rung"]]}


def route_edge(
    high_node: str = "high", low_node: str = "low", *, nodes: Mapping[str, str] | None = None
) -> Callable[[Mapping[str, Any]], str]:
    """A conditional-edge function sending the step to ``high_node`` or ``low_node`` by ``state["route"]``.

    Use it after the router node:
    ``graph.add_conditional_edges("router", route_edge("high", "low"), ["high", "low"])``.
    On a ladder, ``nodes`` maps each rung's name to its model node instead.
    """
    targets = dict(nodes) if nodes is not None else {"high": high_node, "low": low_node}

    def edge(state: Mapping[str, Any]) -> str:
        route = state.get("route")
        if route in targets:
            return targets[route]
        msg = (
            f"state['route'] is {route!r}, which names no node: put the router node (RouterNode) before "
            "this edge, and on a ladder map every rung (route_edge(nodes={rung: node}))"
        )
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
    high: BaseChatModel | None,
    low: BaseChatModel | None,
    router: Router | RouterNode,
    tools: Sequence[BaseTool | Callable[..., Any]] = (),
    *,
    checkpointer: BaseCheckpointSaver[Any] | bool | None = None,
    trace_store: TraceStore | None = None,
    system_prompt: str | None = None,
    tool_choice: ToolChoice = None,
    escalate_on_parse_error: bool = True,
    output_validator: OutputValidator | None = None,
    max_steps: int | None = None,
    state_schema: type[Any] = RoutedMessagesState,
    name: str | None = None,
    ladder: Mapping[str, BaseChatModel] | None = None,
    costs: Mapping[str, float] | Sequence[float] | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A compiled ReAct loop: router -> high / low model -> tools -> router ... -> END.

    Args:
        high: the high-precision chat model (``None`` with ``ladder``).
        low: the low-precision chat model (``None`` with ``ladder``).
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
        ladder: route over these models by rung name, highest precision first, instead of
            ``(high, low)``: one model node per rung, named after it.
        costs: with ``ladder``, each rung's cost (as :class:`~precision_router.routing.ladder.PrecisionLadder`).

    Returns:
        The compiled graph; invoke it with ``{"messages": [...]}`` and a ``thread_id``.
    """
    rungs: dict[str, Any] = dict(ladder) if ladder is not None else {"high": high, "low": low}
    if ladder is not None and (high is not None or low is not None):
        msg = "pass either high and low or ladder=, not both"
        raise ValueError(msg)
    precision = PrecisionLadder(list(rungs), costs) if ladder is not None else TWO_RUNGS
    if isinstance(router, RouterNode):
        if trace_store is not None:
            msg = "pass trace_store to the RouterNode, not to build_routed_react_agent"
            raise ValueError(msg)
        if router.ladder.names != precision.names:
            msg = f"the RouterNode routes between {list(router.ladder.names)}, the models are {list(rungs)}"
            raise ValueError(msg)
        router_node = router
    else:
        router_node = RouterNode(router, trace_store=trace_store, ladder=precision)
    models = list(rungs.values())
    for model in models[1:]:
        check_routing_setup(models[0], model, router_node.router, router_node.tracker.trace_store)
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
    for i, (rung, model) in enumerate(rungs.items()):
        escalate_to = models[0] if i else None
        graph.add_node(rung, router_node.model_node(model, route=rung, escalate_to=escalate_to, **common))
    graph.add_edge(START, "router")
    graph.add_conditional_edges("router", route_edge(nodes={r: r for r in rungs}), list(rungs))
    if tool_node is None:
        for rung in rungs:
            graph.add_edge(rung, END)
    else:
        graph.add_node("tools", tool_node)
        for node in rungs:
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
