"""PrecisionRoutingMiddleware and RoutedChatModel inside `create_agent`, over fake tool-calling models."""

import asyncio
import threading

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware, ModelFallbackMiddleware
from langchain.agents.structured_output import ToolStrategy
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from pydantic import BaseModel

from precision_router import (
    AlwaysHigh,
    AlwaysLow,
    JsonlTraceStore,
    PrecisionRoutingMiddleware,
    RandomRouter,
    RoutedChatModel,
    RoutingState,
)
from precision_router.middleware import ROUTES_KEY
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


class Broken(BaseChatModel):
    """A chat model whose every call fails."""

    model_name: str = "broken"

    @property
    def _llm_type(self):
        return "broken"

    def bind_tools(self, tools, **kwargs):
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        raise RuntimeError("model is down")


def _config(thread):
    return {"configurable": {"thread_id": thread}}


def _ai(messages):
    return [m for m in messages if isinstance(m, AIMessage)]


def _agent(entry, high, low, router, store=None, **kwargs):
    """The same agent through either entry point: the middleware, or RoutedChatModel as the model."""
    if entry == "middleware":
        routing = PrecisionRoutingMiddleware(high, low, router, trace_store=store)
        middleware = [*kwargs.pop("before", []), routing, *kwargs.pop("after", [])]
        return create_agent(model=high, tools=[add], middleware=middleware, **kwargs), routing
    model = RoutedChatModel(high, low, router, trace_store=store)
    middleware = [*kwargs.pop("before", []), *kwargs.pop("after", [])]
    return create_agent(model=model, tools=[add], middleware=middleware, **kwargs), model


@pytest.mark.parametrize("entry", ["middleware", "chat_model"])
def test_multi_step_tool_loop(entry, trace_path):
    high = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 10, "b": 20}}], model_name="high")
    low = ScriptedChatModel(
        replies=[{"tool": "add", "args": {"a": 1, "b": 2}}, "The sum is 33."], model_name="low", usage=(7, 3)
    )
    router = ByStep({1})
    store = JsonlTraceStore(trace_path)
    agent, routed = _agent(entry, high, low, router, store)

    result = agent.invoke({"messages": [HumanMessage("add things")]}, _config("loop"))

    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert [m.content for m in messages if isinstance(m, ToolMessage)] == ["3", "30"]
    metas = [m.response_metadata["precision_router"] for m in _ai(messages)]
    assert [m["route"] for m in metas] == ["low", "high", "low"]
    assert [m["model"] for m in metas] == ["low", "high", "low"]
    assert [m["p_high"] for m in metas] == [0.1, 0.9, 0.1]
    assert all(m["policy"] == "by-step" and not m["escalated"] and m["latency_ms"] >= 0 for m in metas)
    assert _ai(messages)[0].usage_metadata["input_tokens"] == 7
    # the tools reach whichever model runs
    assert high.calls[0]["tools"][0]["function"]["name"] == "add"
    assert low.calls[0]["tools"][0]["function"]["name"] == "add"
    # the router saw the conversation so far
    assert [s.step_index for s in router.seen] == [0, 1, 2]
    assert router.seen[2].history == (('add({"a": 1, "b": 2})', "3"), ('add({"a": 10, "b": 20})', "30"))
    if entry == "middleware":
        assert result[ROUTES_KEY] == ["low", "high", "low"]

    episode = routed.end_episode("loop", success=True)
    assert [(s.index, s.route, s.observation) for s in episode.steps] == [
        (0, "low", "add things"),
        (1, "high", "3"),
        (2, "low", "30"),
    ]
    assert episode.steps[2].action == "The sum is 33."
    assert store.read()[0].success is True


def test_escalation(trace_path):
    high = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 1, "b": 2}}, "done"], model_name="high")
    low = ScriptedChatModel(replies=["<invalid>"], model_name="low")
    routing = PrecisionRoutingMiddleware(high, low, AlwaysLow(), trace_store=JsonlTraceStore(trace_path))
    agent = create_agent(model=high, tools=[add], middleware=[routing], checkpointer=InMemorySaver())

    result = agent.invoke({"messages": [HumanMessage("add 1 and 2")]}, _config("e"))

    first, last = _ai(result["messages"])
    meta = first.response_metadata["precision_router"]
    assert first.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert meta["escalated"] and meta["route"] == "high" and meta["model"] == "high"
    assert meta["escalation_reason"].startswith("invalid tool call")
    assert meta["p_high"] == 0.0  # the router's probability, not the escalation
    assert last.content == "done"
    assert result[ROUTES_KEY] == ["high", "high"]
    steps = routing.end_episode("e").steps
    assert [s.escalated for s in steps] == [True, True] and steps[0].route == "high"
    assert len(low.calls) == 2 and len(high.calls) == 2


def test_escalation_rules_match_the_chat_model():
    unknown = ScriptedChatModel(replies=[{"tool": "nope"}], model_name="low")
    high = ScriptedChatModel(replies=["fine"], model_name="high")
    agent = create_agent(model=high, tools=[add], middleware=[PrecisionRoutingMiddleware(high, unknown, AlwaysLow())])
    reply = agent.invoke({"messages": [HumanMessage("x")]})["messages"][1]
    assert reply.response_metadata["precision_router"]["escalation_reason"] == "call to unknown tool 'nope'"

    validated = PrecisionRoutingMiddleware(
        ScriptedChatModel(replies=["good"], model_name="high"),
        ScriptedChatModel(replies=["bad"], model_name="low"),
        AlwaysLow(),
        output_validator=lambda m: "says bad" if m.content == "bad" else None,
    )
    agent = create_agent(model=validated.high, tools=[add], middleware=[validated])
    reply = agent.invoke({"messages": [HumanMessage("x")]})["messages"][-1]
    assert reply.content == "good" and reply.response_metadata["precision_router"]["escalation_reason"] == "says bad"

    off = PrecisionRoutingMiddleware(
        ScriptedChatModel(replies=["fine"]),
        ScriptedChatModel(replies=["<invalid>"], model_name="low"),
        AlwaysLow(),
        escalate_on_parse_error=False,
    )
    agent = create_agent(model=off.high, tools=[add], middleware=[off])
    reply = _ai(agent.invoke({"messages": [HumanMessage("x")]})["messages"])[0]
    assert reply.invalid_tool_calls and reply.response_metadata["precision_router"]["route"] == "low"


def test_structured_output_tools_are_not_unknown_tools():
    class Answer(BaseModel):
        value: int

    low = ScriptedChatModel(replies=[{"tool": "Answer", "args": {"value": 3}}], model_name="low")
    high = ScriptedChatModel(replies=["never"], model_name="high")
    routing = PrecisionRoutingMiddleware(high, low, AlwaysLow())
    agent = create_agent(model=high, tools=[add], middleware=[routing], response_format=ToolStrategy(Answer))
    result = agent.invoke({"messages": [HumanMessage("what is 1 + 2?")]}, _config("s"))
    assert result["structured_response"] == Answer(value=3)
    assert _ai(result["messages"])[0].response_metadata["precision_router"]["escalated"] is False
    assert high.calls == []


def _tool_every_step():
    return (
        ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 1, "b": 1}}], model_name="high"),
        ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 2, "b": 2}}], model_name="low"),
    )


def _expected_routes(router, thread, task, n):
    return [router.decide(RoutingState(task, (("x", "y"),) * k, thread)).route for k in range(n)]


def test_eight_threads_with_a_checkpointer_keep_separate_state(trace_path):
    high, low = _tool_every_step()
    router = RandomRouter(0.5, seed=7)
    routing = PrecisionRoutingMiddleware(high, low, router, trace_store=JsonlTraceStore(trace_path))
    agent = create_agent(
        model=high,
        tools=[add],
        middleware=[ModelCallLimitMiddleware(run_limit=4, exit_behavior="end"), routing],
        checkpointer=InMemorySaver(),
    )
    barrier = threading.Barrier(8)
    errors = []

    def converse(i):
        try:
            barrier.wait()
            for turn in range(2):  # the second turn resumes the thread
                agent.invoke({"messages": [HumanMessage(f"task {i} turn {turn}")]}, _config(f"t{i}"))
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
        routed = [m for m in _ai(state["messages"]) if "precision_router" in m.response_metadata]
        assert len(routed) == 8  # 4 steps per run, 2 runs
        routes = [m.response_metadata["precision_router"]["route"] for m in routed]
        assert state[ROUTES_KEY] == routes
        # the router's step index is the thread's step count (checkpointed), as in the trace
        assert routes == [router.decide(RoutingState("", (), f"t{i}", step=k)).route for k in range(8)]
        episode = routing.end_episode(f"t{i}", success=True)
        assert [s.index for s in episode.steps] == list(range(8))
        assert episode.task == f"task {i} turn 0"
        assert [s.route for s in episode.steps] == routes
    episodes = JsonlTraceStore(trace_path).read()
    assert sorted(e.conversation_id for e in episodes) == [f"t{i}" for i in range(8)]


async def test_eight_async_threads_with_abatch():
    high, low = _tool_every_step()
    router = RandomRouter(0.5, seed=3)
    routing = PrecisionRoutingMiddleware(high, low, router)
    agent = create_agent(
        model=high,
        tools=[add],
        middleware=[ModelCallLimitMiddleware(run_limit=3, exit_behavior="end"), routing],
        checkpointer=InMemorySaver(),
    )
    inputs = [{"messages": [HumanMessage(f"task {i}")]} for i in range(8)]
    results = await agent.abatch(inputs, [_config(f"a{i}") for i in range(8)])
    for i, result in enumerate(results):
        assert result[ROUTES_KEY] == _expected_routes(router, f"a{i}", "", 3)
        assert len(routing.tracker.current(f"a{i}").steps) == 3
    more = await asyncio.gather(*[agent.ainvoke({"messages": [HumanMessage("more")]}, _config("a0"))])
    assert len(more[0][ROUTES_KEY]) == 6
    assert [s.index for s in routing.end_episode("a0").steps] == list(range(6))


def test_resumed_thread_continues_its_step_count_after_a_restart(tmp_path):
    db = str(tmp_path / "checkpoints.sqlite")
    store = JsonlTraceStore(tmp_path / "traces.jsonl")

    def run(question):
        high, low = _tool_every_step()
        routing = PrecisionRoutingMiddleware(high, low, RandomRouter(0.5, seed=1), trace_store=store)
        with SqliteSaver.from_conn_string(db) as saver:
            agent = create_agent(
                model=high,
                tools=[add],
                middleware=[ModelCallLimitMiddleware(run_limit=3, exit_behavior="end"), routing],
                checkpointer=saver,
            )
            result = agent.invoke({"messages": [HumanMessage(question)]}, _config("r"))
        return result, routing.end_episode("r")

    first, first_episode = run("first question")
    second, second_episode = run("second question")  # a new middleware, agent and connection: a "restart"
    assert len(first[ROUTES_KEY]) == 3
    assert len(second[ROUTES_KEY]) == 6 and second[ROUTES_KEY][:3] == first[ROUTES_KEY]
    assert [s.index for s in first_episode.steps] == [0, 1, 2]
    assert [s.index for s in second_episode.steps] == [3, 4, 5]
    assert second_episode.task == "first question"  # the thread's task, read from the checkpoint
    assert len(store.read()) == 2


@pytest.mark.parametrize("limit_first", [True, False], ids=["limit-outside", "limit-inside"])
def test_model_call_limit_counts_agent_steps_in_either_position(limit_first, trace_path):
    high = ScriptedChatModel(replies=[{"tool": "add", "args": {"a": 1, "b": 1}}], model_name="high")
    low = ScriptedChatModel(replies=["<invalid>"], model_name="low")  # every step escalates: 2 calls each
    routing = PrecisionRoutingMiddleware(high, low, AlwaysLow())
    limit = ModelCallLimitMiddleware(run_limit=2, exit_behavior="end")
    middleware = [limit, routing] if limit_first else [routing, limit]
    agent = create_agent(model=high, tools=[add], middleware=middleware)

    result = agent.invoke({"messages": [HumanMessage("loop forever")]}, _config("limit"))

    assert result[ROUTES_KEY] == ["high", "high"]  # two agent steps, although four model calls
    assert len(low.calls) == 2 and len(high.calls) == 2
    assert "limit" in result["messages"][-1].content.lower()
    assert "precision_router" not in result["messages"][-1].response_metadata  # not a routed step
    assert len(routing.end_episode("limit").steps) == 2


def test_fallback_inside_routing_guards_the_routed_model():
    high = ScriptedChatModel(replies=["from high"], model_name="high")
    backup = ScriptedChatModel(replies=["from backup"], model_name="backup")
    routing = PrecisionRoutingMiddleware(high, Broken(), AlwaysLow())
    agent = create_agent(model=high, tools=[add], middleware=[routing, ModelFallbackMiddleware(backup)])

    reply = agent.invoke({"messages": [HumanMessage("hi")]}, _config("fb"))["messages"][-1]

    assert reply.content == "from backup"
    meta = reply.response_metadata["precision_router"]
    assert meta["route"] == "low"  # the router's choice, as documented; the reply names its model
    assert reply.response_metadata["model_name"] == "backup"
    assert len(routing.end_episode("fb").steps) == 1


def test_fallback_outside_routing_is_defeated():
    """Why the documented order puts the fallback inside: outside, routing undoes every fallback."""
    high = ScriptedChatModel(replies=["from high"], model_name="high")
    backup = ScriptedChatModel(replies=["from backup"], model_name="backup")
    routing = PrecisionRoutingMiddleware(high, Broken(), AlwaysLow())
    agent = create_agent(model=high, tools=[add], middleware=[ModelFallbackMiddleware(backup), routing])
    with pytest.raises(RuntimeError, match="model is down"):
        agent.invoke({"messages": [HumanMessage("hi")]}, _config("fb"))
    assert backup.calls == []


def test_end_episode_after_run(trace_path):
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    routing = PrecisionRoutingMiddleware(
        high, low, AlwaysHigh(), trace_store=JsonlTraceStore(trace_path), end_episode_after_run=True
    )
    agent = create_agent(model=high, middleware=[routing], checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage("one")]}, _config("run"))
    agent.invoke({"messages": [HumanMessage("two")]}, _config("run"))
    episodes = JsonlTraceStore(trace_path).read()
    assert [[s.index for s in e.steps] for e in episodes] == [[0], [1]]
    assert routing.tracker.open_conversations() == []


def test_without_thread_id_each_step_is_a_written_one_step_episode(trace_path):
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    routing = PrecisionRoutingMiddleware(high, low, AlwaysLow(), trace_store=JsonlTraceStore(trace_path))
    agent = create_agent(model=high, middleware=[routing])
    for _ in range(3):
        agent.invoke({"messages": [HumanMessage("x")]})
    assert routing.tracker.open_conversations() == []
    episodes = JsonlTraceStore(trace_path).read()
    assert [len(e.steps) for e in episodes] == [1, 1, 1]
    assert len({e.conversation_id for e in episodes}) == 3


def test_clear_errors():
    high = ScriptedChatModel()
    with pytest.raises(TypeError, match="BaseChatModel"):
        PrecisionRoutingMiddleware(high, "gpt-4o-mini", AlwaysLow())
    with pytest.raises(TypeError, match="decide"):
        PrecisionRoutingMiddleware(high, high, object())
    with pytest.raises(TypeError, match="TraceStore"):
        PrecisionRoutingMiddleware(high, high, AlwaysLow(), trace_store="traces.jsonl")
