"""Fault suite, conversations: router decisions, repeated calls, thread ids, lone surrogates."""

from __future__ import annotations

import math
import uuid

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from precision_router import (
    AlwaysLow,
    JsonlTraceStore,
    PrecisionRouterError,
    PrecisionRoutingMiddleware,
    RandomRouter,
    RoutedChatModel,
    RouteDecision,
)
from precision_router.testing import ScriptedChatModel


class Returns:
    """A router that returns a fixed value, valid or not."""

    name = "returns"
    version = None

    def __init__(self, value):
        self.value = value

    def decide(self, state):
        return self.value


class Counting(ScriptedChatModel):
    calls: int = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        type(self).calls += 1
        return super()._generate(messages, stop, run_manager, **kwargs)


BAD_DECISIONS = [
    "medium",
    None,
    ("high", 0.5),
    RouteDecision("medium", 0.5),  # type: ignore[arg-type]
    RouteDecision("high", math.nan),
    RouteDecision("high", "0.9"),  # type: ignore[arg-type]
    RouteDecision("low", True),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("decision", BAD_DECISIONS, ids=repr)
def test_an_invalid_decision_is_refused_before_any_model_call(decision):
    high, low = Counting(replies=["h"]), Counting(replies=["l"])
    Counting.calls = 0
    model = RoutedChatModel(high, low, Returns(decision))
    with pytest.raises(PrecisionRouterError, match="returns"):
        model.invoke("hi", config={"configurable": {"thread_id": "t"}})
    assert Counting.calls == 0


@pytest.mark.parametrize("decision", BAD_DECISIONS[:3], ids=repr)
def test_the_middleware_refuses_an_invalid_decision(decision):
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    agent = create_agent(model=high, middleware=[PrecisionRoutingMiddleware(high, low, Returns(decision))])
    with pytest.raises(PrecisionRouterError, match="returns"):
        agent.invoke({"messages": [HumanMessage("x")]})


def test_valid_decisions_pass_with_p_high_as_float():
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    model = RoutedChatModel(high, low, Returns(RouteDecision("high", 1)))
    meta = model.invoke("hi").response_metadata["precision_router"]
    assert meta["route"] == "high" and meta["p_high"] == 1.0 and isinstance(meta["p_high"], float)


def test_repeated_calls_on_one_thread_advance_the_step_index(trace_path):
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    model = RoutedChatModel(high, low, RandomRouter(0.5, seed=0), trace_store=JsonlTraceStore(trace_path))
    config = {"configurable": {"thread_id": "one"}}
    routes = [
        model.invoke(f"message {i}", config=config).response_metadata["precision_router"]["route"] for i in range(20)
    ]
    assert set(routes) == {"high", "low"}
    episode = model.end_episode("one")
    assert [s.index for s in episode.steps] == list(range(20))
    assert [s.route for s in episode.steps] == routes


def test_calls_without_thread_id_are_written_one_step_episodes(trace_path):
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    routing = PrecisionRoutingMiddleware(high, low, RandomRouter(0.5, seed=1), trace_store=JsonlTraceStore(trace_path))
    agent = create_agent(model=high, middleware=[routing])
    replies = [agent.invoke({"messages": [HumanMessage("x")]})["messages"][-1] for _ in range(12)]
    routes = {r.response_metadata["precision_router"]["route"] for r in replies}
    assert routes == {"high", "low"}
    assert routing.tracker.open_conversations() == []  # nothing kept in memory
    assert [len(e.steps) for e in JsonlTraceStore(trace_path).read()] == [1] * 12

    model = RoutedChatModel(high, low, AlwaysLow(), trace_store=JsonlTraceStore(trace_path))
    for _ in range(3):
        model.invoke("hello")
    assert model.tracker.open_conversations() == []
    assert len(JsonlTraceStore(trace_path).read()) == 15


@pytest.mark.parametrize("thread_id", [uuid.uuid4(), 123, 4.5], ids=type)
def test_non_string_thread_ids_close_their_episode(thread_id, trace_path):
    high, low = ScriptedChatModel(replies=["h"]), ScriptedChatModel(replies=["l"])
    model = RoutedChatModel(high, low, AlwaysLow(), trace_store=JsonlTraceStore(trace_path))
    model.invoke("hi", config={"configurable": {"thread_id": thread_id}})
    model.invoke("again", config={"configurable": {"thread_id": thread_id}})
    episode = model.end_episode(thread_id, success=True)
    assert episode is not None and len(episode.steps) == 2
    assert episode.conversation_id == str(thread_id)
    assert model.tracker.open_conversations() == []
    assert [e.conversation_id for e in JsonlTraceStore(trace_path).read()] == [str(thread_id)]


def test_lone_surrogates_are_recorded_safely(trace_path):
    high, low = ScriptedChatModel(replies=["ok \ud83d"]), ScriptedChatModel(replies=["l"])
    model = RoutedChatModel(high, low, Returns(RouteDecision("high", 1.0)), trace_store=JsonlTraceStore(trace_path))
    model.invoke("half an emoji: \ud83d, a pair: \ud83d\ude00", config={"configurable": {"thread_id": "s"}})
    episode = model.end_episode("s", info={"note": "\udc00"})
    assert episode is not None
    (read,) = JsonlTraceStore(trace_path).read()
    assert read.task == "half an emoji: \ufffd, a pair: \U0001f600"
    assert read.steps[0].action == "ok \ufffd" and read.info["note"] == "\ufffd"


def test_local_chat_model_accepts_lone_surrogates(tiny_pair):
    high, _ = tiny_pair
    reply = high.invoke([HumanMessage("broken \ud83d text")])
    assert isinstance(reply.content, str)
    assert "\ud83d" not in high.render([HumanMessage("broken \ud83d text")])
