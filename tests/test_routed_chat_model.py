import asyncio
import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_tests.unit_tests import ChatModelUnitTests

from precision_router import (
    AlwaysHigh,
    AlwaysLow,
    JsonlTraceStore,
    RandomRouter,
    RoutedChatModel,
    TokenizerMismatchError,
)
from precision_router.routing import RouteDecision
from precision_router.testing import ScriptedChatModel, tiny_causal_lm, tiny_tokenizer


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class TestRoutedChatModelStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return RoutedChatModel

    @property
    def chat_model_params(self):
        return {
            "high": ScriptedChatModel(replies=["high"], model_name="high"),
            "low": ScriptedChatModel(replies=["low"], model_name="low"),
            "router": RandomRouter(0.5, seed=0),
        }

    @property
    def has_tool_calling(self):
        return True

    @property
    def has_structured_output(self):
        return True


def _models(high_replies=("from high",), low_replies=("from low",)):
    return (
        ScriptedChatModel(replies=list(high_replies), model_name="high-model"),
        ScriptedChatModel(replies=list(low_replies), model_name="low-model"),
    )


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
        return RouteDecision(route, 1.0 if route == "high" else 0.0)


def test_routes_and_metadata(trace_path):
    high, low = _models()
    model = RoutedChatModel(high, low, AlwaysLow(), trace_store=JsonlTraceStore(trace_path))
    reply = model.invoke("hello", config={"configurable": {"thread_id": "t1"}})
    assert reply.content == "from low"
    meta = reply.response_metadata["precision_router"]
    assert meta["route"] == "low" and meta["p_high"] == 0.0 and meta["policy"] == "low"
    assert meta["escalated"] is False and meta["model"] == "low-model" and meta["latency_ms"] >= 0
    assert reply.usage_metadata["input_tokens"] == 10
    assert high.calls == [] and len(low.calls) == 1
    episode = model.end_episode("t1", success=True, info={"k": 1})
    assert episode.success and episode.steps[0].route == "low" and episode.steps[0].input_tokens == 10
    assert JsonlTraceStore(trace_path).read()[0].info == {"k": 1}


@pytest.mark.parametrize("router", [AlwaysHigh(), AlwaysLow()], ids=["high", "low"])
def test_tool_calls_survive_routing(router):
    high, low = _models([{"tool": "add", "args": {"a": 1, "b": 2}}], [{"tool": "add", "args": {"a": 3, "b": 4}}])
    model = RoutedChatModel(high, low, router)
    reply = model.bind_tools([add], tool_choice="any").invoke("add numbers")
    chosen = high if router.name == "high" else low
    assert reply.tool_calls[0]["name"] == "add"
    assert reply.tool_calls[0]["args"] == ({"a": 1, "b": 2} if router.name == "high" else {"a": 3, "b": 4})
    assert chosen.calls[0]["tools"][0]["function"]["name"] == "add"
    assert chosen.calls[0]["tool_choice"] == "any"
    streamed = None
    for chunk in model.bind_tools([add]).stream("add numbers"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed.tool_calls[0]["name"] == "add"
    assert streamed.response_metadata["precision_router"]["route"] == router.name


def test_unusable_low_reply_is_escalated(trace_path):
    high, low = _models([{"tool": "add", "args": {"a": 1, "b": 2}}], ["<invalid>"])
    model = RoutedChatModel(high, low, AlwaysLow(), trace_store=JsonlTraceStore(trace_path))
    reply = model.bind_tools([add]).invoke("add", config={"configurable": {"thread_id": "e"}})
    meta = reply.response_metadata["precision_router"]
    assert reply.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert meta["escalated"] and meta["route"] == "high" and "invalid tool call" in meta["escalation_reason"]
    step = model.end_episode("e").steps[0]
    assert step.escalated and step.route == "high" and step.escalation_reason.startswith("invalid tool call")

    unknown = RoutedChatModel(*_models(["fine"], [{"tool": "nope"}]), AlwaysLow())
    assert (
        unknown.bind_tools([add]).invoke("x").response_metadata["precision_router"]["escalation_reason"]
        == "call to unknown tool 'nope'"
    )

    off = RoutedChatModel(*_models(["fine"], ["<invalid>"]), AlwaysLow(), escalate_on_parse_error=False)
    assert off.bind_tools([add]).invoke("x").invalid_tool_calls

    validated = RoutedChatModel(
        *_models(["good"], ["bad"]), AlwaysLow(), output_validator=lambda m: "says bad" if m.content == "bad" else None
    )
    reply = validated.invoke("x")
    assert reply.content == "good" and reply.response_metadata["precision_router"]["escalation_reason"] == "says bad"
    chunks = list(validated.stream("x"))
    assert "".join(c.content for c in chunks) == "good"


def test_router_sees_the_conversation_so_far():
    router = ByStep({1})
    high, low = _models()
    model = RoutedChatModel(high, low, router)
    history = [HumanMessage("put the mug away")]
    first = model.invoke(history)
    history += [first, HumanMessage("You see a mug.")]
    second = model.invoke(history)
    assert [s.step_index for s in router.seen] == [0, 1]
    assert router.seen[1].task == "put the mug away"
    assert router.seen[1].history == (("from low", "You see a mug."),)
    assert second.response_metadata["precision_router"]["route"] == "high"


def test_tool_messages_are_observations():
    router = ByStep(set())
    model = RoutedChatModel(*_models(), router)
    call = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "1"}])
    model.invoke([HumanMessage("task"), call, ToolMessage("3", tool_call_id="1")])
    assert router.seen[0].history == (('add({"a": 1})', "3"),)


def test_concurrent_conversations_never_mix(trace_path):
    store = JsonlTraceStore(trace_path)
    high = ScriptedChatModel(replies=["h"], model_name="h")
    low = ScriptedChatModel(replies=["l"], model_name="l")
    model = RoutedChatModel(high, low, RandomRouter(0.5, seed=3), trace_store=store)
    barrier = threading.Barrier(8)
    errors = []

    def converse(i: int) -> None:
        try:
            barrier.wait()
            config = {"configurable": {"thread_id": f"thread-{i}"}}
            messages = [HumanMessage(f"task of {i}")]
            for step in range(6):
                reply = model.invoke(messages, config=config)
                messages += [reply, HumanMessage(f"obs {i}.{step}")]
            model.end_episode(f"thread-{i}", success=True)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=converse, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    episodes = store.read()
    assert sorted(e.conversation_id for e in episodes) == [f"thread-{i}" for i in range(8)]
    for episode in episodes:
        i = episode.conversation_id.split("-")[1]
        assert episode.task == f"task of {i}"
        assert [s.index for s in episode.steps] == list(range(6))
        assert episode.steps[0].observation == f"task of {i}"
        assert [s.observation for s in episode.steps[1:]] == [f"obs {i}.{k}" for k in range(5)]
        expected = [RandomRouter(0.5, seed=3).decide(_state_at(episode, k)).route for k in range(6)]
        assert [s.route for s in episode.steps] == expected


def _state_at(episode, k):
    from precision_router.routing import RoutingState

    return RoutingState(episode.task, tuple(("x", "y") for _ in range(k)), episode.conversation_id)


async def test_async_invoke_and_stream():
    high, low = _models(["one two three"], ["low words here"])
    model = RoutedChatModel(high, low, AlwaysHigh())
    reply = await model.ainvoke("hi", config={"configurable": {"thread_id": "a"}})
    assert reply.content == "one two three"
    chunks = [c async for c in model.astream("hi", config={"configurable": {"thread_id": "a"}})]
    assert len(chunks) > 2 and chunks[-1].chunk_position == "last"
    assert "".join(c.content for c in chunks) == "one two three"
    assert chunks[-1].response_metadata["precision_router"]["route"] == "high"
    results = await asyncio.gather(
        *[model.ainvoke("x", config={"configurable": {"thread_id": f"p{i}"}}) for i in range(4)]
    )
    assert all(r.response_metadata["precision_router"]["route"] == "high" for r in results)
    assert len(model.end_episode("a").steps) == 2


def test_session_id_is_a_conversation_key():
    model = RoutedChatModel(*_models(), AlwaysLow())
    model.invoke("x", config={"configurable": {"session_id": "s9"}})
    assert model.tracker.open_conversations() == ["s9"]


def test_local_pair_inside_routed_model(tiny_pair):
    high, low = tiny_pair
    model = RoutedChatModel(high, low, RandomRouter(0.5, seed=1))
    reply = model.invoke("go to cabinet 1", config={"configurable": {"thread_id": "tiny"}})
    meta = reply.response_metadata["precision_router"]
    assert meta["model"] == ("tiny@fp32" if meta["route"] == "high" else "tiny@rtn-3bit-g32")
    assert reply.usage_metadata["output_tokens"] > 0


def test_mismatched_tokenizers_are_refused(tiny_pair):
    from precision_router.models.local import LocalChatModel

    high, _ = tiny_pair
    other_tok = tiny_tokenizer()
    other_tok.add_tokens(["<extra-token>"])
    other = LocalChatModel(hf_model=tiny_causal_lm(other_tok), tokenizer=other_tok)
    with pytest.raises(TokenizerMismatchError, match="different tokenizers"):
        RoutedChatModel(high, other, AlwaysLow())


def test_bad_router_is_a_clear_error():
    with pytest.raises(TypeError, match="decide"):
        RoutedChatModel(*_models(), object())


def test_one_call_is_one_chat_model_run():
    from langchain_core.callbacks import BaseCallbackHandler

    class Counter(BaseCallbackHandler):
        def __init__(self):
            self.starts = []

        def on_chat_model_start(self, serialized, messages, **kwargs):
            self.starts.append(kwargs.get("parent_run_id"))

    counter = Counter()
    RoutedChatModel(*_models(), AlwaysLow()).invoke("x", config={"callbacks": [counter]})
    assert len(counter.starts) == 1
    nested = Counter()
    RoutedChatModel(*_models(), AlwaysLow(), trace_delegate_runs=True).invoke("x", config={"callbacks": [nested]})
    assert len(nested.starts) == 2 and nested.starts[0] is None and nested.starts[1] is not None


def test_a_token_budget_stops_high_steps_once_spent():
    """Each scripted reply uses 12 tokens; a 30-token budget allows 3 high steps (the third crosses it)."""
    from precision_router.routing.budget import BudgetRouter

    high, low = _models()
    model = RoutedChatModel(high, low, BudgetRouter(AlwaysHigh(), max_high_tokens=30))
    routes = [
        model.invoke(f"turn {i}", config={"configurable": {"thread_id": "t1"}}).response_metadata["precision_router"][
            "route"
        ]
        for i in range(5)
    ]
    assert routes == ["high", "high", "high", "low", "low"]
    assert model.invoke("again", config={"configurable": {"thread_id": "t2"}}).content == "from high"  # per thread
    assert len(high.calls) == 4 and len(low.calls) == 2
