"""K precisions: a three-rung ladder through the chat model, the middleware and the graph, with tiny models."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from precision_router import (
    JsonlTraceStore,
    PrecisionRoutingMiddleware,
    RoutedChatModel,
    build_routed_react_agent,
)
from precision_router.evaluation.metrics import ghc, summarize
from precision_router.routing import RouteDecision, RoutingState
from precision_router.routing.ladder import TWO_RUNGS, PrecisionLadder, RandomLadderRouter
from precision_router.testing import ScriptedChatModel, tiny_precision_ladder

RUNGS = ("fp32", "rtn-4bit", "rtn-3bit")
COSTS = {"fp32": 1.0, "rtn-4bit": 0.5, "rtn-3bit": 0.25}


class Cycle:
    """Routes step ``i`` to rung ``routes[i % len(routes)]``."""

    name = "cycle"
    version = None

    def __init__(self, routes):
        self.routes = list(routes)

    def decide(self, state):
        return RouteDecision(self.routes[state.step_index % len(self.routes)], 0.5)


@pytest.fixture(scope="module")
def ladder():
    return tiny_precision_ladder(RUNGS, max_tokens=4)


def _config(thread):
    return {"configurable": {"thread_id": thread}}


def test_ladder_names_costs_and_aliases():
    rungs = PrecisionLadder(RUNGS, COSTS)
    assert rungs.top == "fp32" and rungs.index("high") == 0 and rungs.index("low") == 2
    assert rungs.cost("rtn-4bit") == 0.5 and rungs.coarse_route("rtn-4bit") == "low"
    assert PrecisionLadder(RUNGS).costs == (1.0, 0.5, 0.0)  # linear by default
    assert PrecisionLadder(RUNGS, [4.0, 2.0, 1.0]).costs == (1.0, 0.5, 0.25)  # normalised to the top
    assert TWO_RUNGS.costs == (1.0, 0.0)
    with pytest.raises(ValueError, match="'high' or 'low'"):
        rungs.index("bf16")
    with pytest.raises(ValueError, match="every rung"):
        PrecisionLadder(RUNGS, {"fp32": 1.0})
    with pytest.raises(ValueError, match="distinct"):
        PrecisionLadder(["a", "a"])


def test_random_ladder_router_draws_rungs_by_share_reproducibly():
    router = RandomLadderRouter({"fp32": 0.2, "rtn-4bit": 0.3, "rtn-3bit": 0.5}, seed=7)
    routes = [router.decide(RoutingState("t", (("a", "o"),) * i, "c")).route for i in range(2000)]
    shares = {r: routes.count(r) / len(routes) for r in RUNGS}
    assert shares == pytest.approx({"fp32": 0.2, "rtn-4bit": 0.3, "rtn-3bit": 0.5}, abs=0.04)
    again = RandomLadderRouter({"fp32": 0.2, "rtn-4bit": 0.3, "rtn-3bit": 0.5}, seed=7)
    assert [again.decide(RoutingState("t", (("a", "o"),) * i, "c")).route for i in range(50)] == routes[:50]
    with pytest.raises(ValueError, match="sum to 1"):
        RandomLadderRouter({"a": 0.5, "b": 0.6})


def test_chat_model_over_three_rungs_records_rung_and_cost(ladder, tmp_path):
    store = JsonlTraceStore(tmp_path / "t.jsonl")
    model = RoutedChatModel.from_ladder(ladder, Cycle(["rtn-4bit", "fp32", "low"]), costs=COSTS, trace_store=store)
    assert model.high is ladder["fp32"] and model.low is ladder["rtn-3bit"] and model.ladder.names == RUNGS
    messages = [HumanMessage("put a mug on the desk")]
    metas = []
    for _ in range(3):
        reply = model.invoke(messages, config=_config("c"))
        metas.append(reply.response_metadata["precision_router"])
        messages += [reply, HumanMessage("ok")]
    assert [m["rung"] for m in metas] == ["rtn-4bit", "fp32", "rtn-3bit"]
    assert [m["route"] for m in metas] == ["low", "high", "low"]
    assert [m["cost"] for m in metas] == [0.5, 1.0, 0.25]
    assert [m["model"] for m in metas] == [ladder[r].model_name for r in ("rtn-4bit", "fp32", "rtn-3bit")]
    assert len({m["model"] for m in metas}) == 3
    model.end_episode("c", success=True)
    (episode,) = store.read()
    assert [s.rung for s in episode.steps] == ["rtn-4bit", "fp32", "rtn-3bit"]
    metrics = summarize([episode])
    assert metrics.high_share == pytest.approx((0.5 + 1.0 + 0.25) / 3)  # c is the cost-weighted share
    assert ghc(1.0, 0.0, metrics.high_share) == pytest.approx(1 / metrics.high_share)


def test_middleware_over_three_rungs(ladder, tmp_path):
    store = JsonlTraceStore(tmp_path / "m.jsonl")
    routing = PrecisionRoutingMiddleware.from_ladder(ladder, Cycle(["rtn-4bit"]), costs=COSTS, trace_store=store)
    agent = create_agent(model=ladder["fp32"], tools=[], middleware=[routing], checkpointer=InMemorySaver())
    result = agent.invoke({"messages": [HumanMessage("hi")]}, _config("m"))
    meta = result["messages"][-1].response_metadata["precision_router"]
    assert (meta["rung"], meta["route"], meta["cost"]) == ("rtn-4bit", "low", 0.5)
    assert result["precision_router_routes"] == ["rtn-4bit"]
    routing.end_episode("m")
    assert [s.rung for s in store.read()[0].steps] == ["rtn-4bit"]


def test_graph_over_three_rungs(ladder, tmp_path):
    store = JsonlTraceStore(tmp_path / "g.jsonl")
    graph = build_routed_react_agent(
        None, None, Cycle(["rtn-3bit"]), ladder=ladder, costs=COSTS, trace_store=store, checkpointer=InMemorySaver()
    )
    assert set(graph.get_graph().nodes) >= {"router", *RUNGS}
    result = graph.invoke({"messages": [HumanMessage("hi")]}, _config("g"))
    assert result["route_history"] == ["rtn-3bit"]
    meta = result["messages"][-1].response_metadata["precision_router"]
    assert (meta["rung"], meta["cost"], meta["model"]) == ("rtn-3bit", 0.25, ladder["rtn-3bit"].model_name)


def test_a_middle_rung_escalates_to_the_top_rung_in_every_entry_point():
    rungs = {"big": ScriptedChatModel(replies=["fine"], model_name="big")}
    rungs["mid"] = ScriptedChatModel(replies=["<invalid>"], model_name="mid")
    rungs["small"] = ScriptedChatModel(replies=["ok"], model_name="small")
    router = Cycle(["mid"])
    chat = RoutedChatModel.from_ladder(rungs, router)
    meta = chat.invoke("hi", config=_config("a")).response_metadata["precision_router"]
    assert (meta["rung"], meta["escalated"], meta["model"]) == ("big", True, "big")
    graph = build_routed_react_agent(None, None, router, ladder=rungs)
    reply = graph.invoke({"messages": [HumanMessage("hi")]}, _config("b"))["messages"][-1]
    assert reply.content == "fine" and reply.response_metadata["precision_router"]["rung"] == "big"
    routing = PrecisionRoutingMiddleware.from_ladder(rungs, router)
    agent = create_agent(model=rungs["big"], tools=[], middleware=[routing])
    result = agent.invoke({"messages": [HumanMessage("hi")]}, _config("c"))
    assert result["messages"][-1].response_metadata["precision_router"]["escalated"] is True
    assert result["precision_router_routes"] == ["big"]
    assert chat.ladder.cost("mid") == 0.5


def test_random_ladder_spec():
    from precision_router.routing.spec import router_from_spec

    router = router_from_spec("random-ladder:fp32=0.2,rtn-4bit=0.8", seed=3)
    assert isinstance(router, RandomLadderRouter) and router.shares == {"fp32": 0.2, "rtn-4bit": 0.8}
    with pytest.raises(ValueError, match="bad policy"):
        router_from_spec("random-ladder:fp32=lots")
