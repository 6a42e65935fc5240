"""The LangGraph pieces: RouterNode, ModelNode, route_edge, build_routed_react_agent, with checkpointers."""

import operator
import threading
from typing import Annotated, NotRequired

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from precision_router import (
    AlwaysHigh,
    AlwaysLow,
    JsonlTraceStore,
    RandomRouter,
    RoutedMessagesState,
    RouterNode,
    RoutingState,
    build_routed_react_agent,
    route_edge,
)
from precision_router.routing import RouteDecision
from precision_router.testing import ScriptedChatModel


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ByStep:
    """Routes high on the given step indices."""

    name = "by-step"
    version = None

    def __init__(self, high_steps):
        self.high_steps = set(high_steps)
        self.seen = []

    def decide(self, state):
        self.seen.append(state)
        route = "high" if state.step_index in self.high_steps else "low"
        return RouteDecision(route, 0.9 if route == "high" else 0.1)


def _config(thread):
    return {"configurable": {"thread_id": thread}}


def _ai(messages):
    return [m for m in messages if isinstance(m, AIMessage)]


def _tool_every_step():
    return (
        ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 1, "b": 1}}], model_name="high"),
        ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 2, "b": 2}}], model_name="low"),
    )


def _routes(router, thread, n, start=0):
    return [router.decide(RoutingState("", (("x", "y"),) * k, thread)).route for k in range(start, start + n)]


def test_react_agent_runs_a_multi_step_tool_loop(trace_path):
    high = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 10, "b": 20}}], model_name="high")
    low = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 1, "b": 2}}, "The sum is 33."], model_name="low")
    router = ByStep({1})
    node = RouterNode(router, trace_store=JsonlTraceStore(trace_path))
    agent = build_routed_react_agent(high, low, node, [add], system_prompt="Be brief.")

    result = agent.invoke({"messages": [HumanMessage("add things")]}, _config("g"))

    messages = result["messages"]
    assert [m.content for m in messages if isinstance(m, ToolMessage)] == ["3", "30"]
    metas = [m.response_metadata["precision_router"] for m in _ai(messages)]
    assert [m["route"] for m in metas] == ["low", "high", "low"]
    assert [m["p_high"] for m in metas] == [0.1, 0.9, 0.1]
    assert all(m["policy"] == "by-step" and not m["escalated"] for m in metas)
    assert result["route_history"] == ["low", "high", "low"]
    assert result["route"] == "low" and result["p_high"] == 0.1
    assert isinstance(low.calls[0]["messages"][0], SystemMessage)
    assert low.calls[0]["tools"][0]["function"]["name"] == "add"
    assert [s.step_index for s in router.seen] == [0, 1, 2]

    episode = node.end_episode("g", success=True)
    assert [(s.index, s.route, s.observation) for s in episode.steps] == [
        (0, "low", "add things"),
        (1, "high", "3"),
        (2, "low", "30"),
    ]
    assert JsonlTraceStore(trace_path).read()[0].success is True


def test_custom_graph_with_router_node_and_edge():
    class State(RoutedMessagesState):
        visits: NotRequired[Annotated[int, operator.add]]

    high = ScriptedChatModel(replies=["high answer"], model_name="high")
    low = ScriptedChatModel(replies=["low answer"], model_name="low")
    node = RouterNode(ByStep({0}))
    graph = StateGraph(State)
    graph.add_node("router", node)
    graph.add_node("big", node.model_node(high, route="high"))
    graph.add_node("small", node.model_node(low, route="low", escalate_to=high))
    graph.add_node("mine", lambda state: {"visits": 1})
    graph.add_edge(START, "mine")
    graph.add_edge("mine", "router")
    graph.add_conditional_edges("router", route_edge(high_node="big", low_node="small"), ["big", "small"])
    graph.add_edge("big", END)
    graph.add_edge("small", END)
    app = graph.compile(checkpointer=InMemorySaver())

    first = app.invoke({"messages": [HumanMessage("q1")]}, _config("c"))
    second = app.invoke({"messages": [HumanMessage("q2")]}, _config("c"))

    assert first["messages"][-1].content == "high answer"
    assert second["messages"][-1].content == "low answer"
    assert second["route_history"] == ["high", "low"] and second["visits"] == 2
    assert [s.index for s in node.end_episode("c").steps] == [0, 1]


def test_low_node_escalates_unusable_replies():
    high = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 1, "b": 2}}, "done"], model_name="high")
    low = ScriptedChatModel(replies=["<invalid>"], model_name="low")
    node = RouterNode(AlwaysLow())
    agent = build_routed_react_agent(high, low, node, [add])

    result = agent.invoke({"messages": [HumanMessage("add")]}, _config("e"))

    first = _ai(result["messages"])[0]
    meta = first.response_metadata["precision_router"]
    assert first.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert meta["escalated"] and meta["route"] == "high" and meta["model"] == "high"
    assert result["route_history"] == ["high", "high"]
    assert all(s.escalated for s in node.end_episode("e").steps)

    off = build_routed_react_agent(
        ScriptedChatModel(replies=["fine"]),
        ScriptedChatModel(replies=["<invalid>"], model_name="low"),
        AlwaysLow(),
        [add],
        escalate_on_parse_error=False,
    )
    reply = _ai(off.invoke({"messages": [HumanMessage("x")]})["messages"])[0]
    assert reply.invalid_tool_calls and reply.response_metadata["precision_router"]["route"] == "low"


def test_tool_choice_may_depend_on_the_state():
    high, low = _tool_every_step()
    low = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 2, "b": 2}}, "done"], model_name="low")

    def require_tool_until_answered(state):
        return None if any(isinstance(m, ToolMessage) for m in state["messages"]) else "any"

    agent = build_routed_react_agent(high, low, AlwaysLow(), [add], tool_choice=require_tool_until_answered)
    agent.invoke({"messages": [HumanMessage("x")]})
    assert [c["tool_choice"] for c in low.calls] == ["any", None]


def test_eight_threads_with_a_checkpointer_keep_separate_state(trace_path):
    high, low = _tool_every_step()
    router = RandomRouter(0.5, seed=11)
    node = RouterNode(router, trace_store=JsonlTraceStore(trace_path))
    agent = build_routed_react_agent(high, low, node, [add], checkpointer=InMemorySaver(), max_steps=3)
    barrier = threading.Barrier(8)
    errors = []

    def converse(i):
        try:
            barrier.wait()
            agent.invoke({"messages": [HumanMessage(f"task {i}")]}, _config(f"t{i}"))
            agent.invoke({"messages": [HumanMessage(f"task {i}, again")]}, _config(f"t{i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=converse, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors

    for i in range(8):
        state = agent.get_state(_config(f"t{i}")).values
        assert state["route_history"] == _routes(router, f"t{i}", 6)
        routes = [m.response_metadata["precision_router"]["route"] for m in _ai(state["messages"])]
        assert routes == state["route_history"]
        episode = node.end_episode(f"t{i}", success=True)
        assert [s.index for s in episode.steps] == list(range(6))
        assert episode.task == f"task {i}" and episode.steps[3].observation.endswith(f"task {i}, again")
    assert sorted(e.conversation_id for e in JsonlTraceStore(trace_path).read()) == [f"t{i}" for i in range(8)]


async def test_eight_async_threads_with_abatch():
    high, low = _tool_every_step()
    router = RandomRouter(0.5, seed=5)
    node = RouterNode(router)
    agent = build_routed_react_agent(high, low, node, [add], checkpointer=InMemorySaver(), max_steps=2)
    results = await agent.abatch(
        [{"messages": [HumanMessage(f"task {i}")]} for i in range(8)], [_config(f"a{i}") for i in range(8)]
    )
    for i, result in enumerate(results):
        assert result["route_history"] == _routes(router, f"a{i}", 2)
        assert [s.route for s in node.tracker.current(f"a{i}").steps] == result["route_history"]
    again = await agent.ainvoke({"messages": [HumanMessage("again")]}, _config("a3"))
    assert again["route_history"] == _routes(router, "a3", 4)
    assert [s.index for s in node.end_episode("a3").steps] == [0, 1, 2, 3]


def test_resumed_thread_continues_its_step_count_after_a_restart(tmp_path):
    db = str(tmp_path / "checkpoints.sqlite")
    store = JsonlTraceStore(tmp_path / "traces.jsonl")
    router = RandomRouter(0.5, seed=2)

    def run(question):
        high, low = _tool_every_step()
        node = RouterNode(router, trace_store=store)  # a fresh node: nothing in memory
        with SqliteSaver.from_conn_string(db) as saver:
            agent = build_routed_react_agent(high, low, node, [add], checkpointer=saver, max_steps=2)
            result = agent.invoke({"messages": [HumanMessage(question)]}, _config("r"))
        return result, node.end_episode("r")

    first, first_episode = run("first question")
    second, second_episode = run("second question")
    assert first["route_history"] == _routes(router, "r", 2)
    assert second["route_history"] == _routes(router, "r", 4)
    assert [s.index for s in first_episode.steps] == [0, 1]
    assert [s.index for s in second_episode.steps] == [2, 3]
    assert second_episode.task == "first question"
    assert second_episode.steps[0].observation.endswith("second question")


def test_without_tools_one_step_then_end():
    agent = build_routed_react_agent(
        ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"]), AlwaysHigh(), checkpointer=InMemorySaver()
    )
    result = agent.invoke({"messages": [HumanMessage("hi")]}, _config("n"))
    assert result["messages"][-1].content == "h" and result["route_history"] == ["high"]


def test_clear_errors():
    with pytest.raises(ValueError, match="router node"):
        route_edge()({"messages": []})
    with pytest.raises(TypeError, match="decide"):
        RouterNode(object())
    node = RouterNode(AlwaysLow())
    with pytest.raises(ValueError, match="'high' or 'low'"):
        node.model_node(ScriptedChatModel(), route="medium")
    with pytest.raises(ValueError, match="escalate_to"):
        node.model_node(ScriptedChatModel(), route="high", escalate_to=ScriptedChatModel())
    with pytest.raises(ValueError, match="RoutedMessagesState"):
        node.invoke({"no_messages": []})
    with pytest.raises(ValueError, match="trace_store"):
        build_routed_react_agent(ScriptedChatModel(), ScriptedChatModel(), node, trace_store=JsonlTraceStore("x"))
    with pytest.raises(ValueError, match="max_steps"):
        build_routed_react_agent(ScriptedChatModel(), ScriptedChatModel(), AlwaysLow(), [add], max_steps=0)
