"""A custom LangGraph `StateGraph` with a router node, a conditional edge and a SQLite checkpointer.

    python examples/custom_graph.py            # SmolLM2 fp32 / GPTQ 3-bit (first run quantizes, ~3 min)
    python examples/custom_graph.py --tiny     # tiny random models, seconds (used by the tests)

The graph is router -> high | low -> tools -> router ... -> END, built by hand from the library's
pieces: `RouterNode` writes the decision (`route`, `p_high`) into the state, `route_edge` sends the
step to the high or the low model node, and each `ModelNode` records its step and appends the
route it used to `route_history`. Your own nodes and state keys sit beside them (here a
`tool_calls_made` counter). The thread is checkpointed to a SQLite file; the script then
simulates a restart (a new graph and a new router node over the same file) and resumes the thread:
its step count carries on.
"""

from __future__ import annotations

import argparse
import operator
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from precision_router import (
    JsonlTraceStore,
    RandomRouter,
    RoutedMessagesState,
    RouterNode,
    load_precision_pair,
    route_edge,
)


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny and 21 C in {city}."


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = [get_weather, add]


class AgentState(RoutedMessagesState):
    """The routing keys (`route`, `p_high`, `route_history`) plus a key of this graph's own."""

    tool_calls_made: NotRequired[Annotated[int, operator.add]]


def require_tool_until_answered(state: Mapping[str, Any]) -> str | None:
    """`tool_choice` as a function of the state: small models need `"any"` to call a tool at all."""
    messages = state["messages"]
    last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    return None if any(isinstance(m, ToolMessage) for m in messages[last_human:]) else "any"


def count_tool_calls(state: Mapping[str, Any]) -> dict[str, Any]:
    """A node of your own: runs after each tool round."""
    return {"tool_calls_made": 1}


def build_graph(high: BaseChatModel, low: BaseChatModel, router_node: RouterNode, checkpointer: SqliteSaver):  # type: ignore[no-untyped-def]
    model_args: dict[str, Any] = {
        "tools": TOOLS,
        "tool_choice": require_tool_until_answered,
        "system_prompt": "You are a helpful assistant. Use the tools to answer.",
    }
    graph = StateGraph(AgentState)
    graph.add_node("router", router_node)
    graph.add_node("high", router_node.model_node(high, route="high", **model_args))
    graph.add_node("low", router_node.model_node(low, route="low", escalate_to=high, **model_args))
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_node("count", count_tool_calls)
    graph.add_edge(START, "router")
    graph.add_conditional_edges("router", route_edge(high_node="high", low_node="low"), ["high", "low"])
    for node in ("high", "low"):
        graph.add_conditional_edges(node, tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "count")
    graph.add_conditional_edges(
        "count", lambda s: END if s.get("tool_calls_made", 0) >= 3 else "router", ["router", END]
    )
    return graph.compile(checkpointer=checkpointer)


def describe(message: AIMessage) -> str:
    """One line for a reply: its tool calls (valid or not) or the start of its text."""
    calls = [f"{c['name']}({c['args']})" for c in message.tool_calls]
    calls += [f"unparsable call to {c.get('name')}" for c in message.invalid_tool_calls]
    return ", ".join(calls) or repr(message.text[:60])


def load_models(tiny: bool) -> tuple[BaseChatModel, BaseChatModel]:
    if tiny:
        from precision_router.testing import tiny_precision_pair

        return tiny_precision_pair("rtn-3bit", max_tokens=16)
    return load_precision_pair("smollm2-135m-instruct", low="gptq-3bit", max_tokens=48)


def run_turn(graph: Any, thread: str, question: str) -> dict[str, Any]:
    config = {"configurable": {"thread_id": thread}}
    result: dict[str, Any] = graph.invoke({"messages": [HumanMessage(question)]}, config)
    print(f"\n[{thread}] {question}")
    last_human = max(i for i, m in enumerate(result["messages"]) if isinstance(m, HumanMessage))
    for message in result["messages"][last_human:]:
        meta = message.response_metadata.get("precision_router") if isinstance(message, AIMessage) else None
        if meta:
            flag = " escalated" if meta["escalated"] else ""
            print(f"  {meta['route']:4s} p_high={meta['p_high']:.2f}{flag}  {describe(message)}")
    print(f"  route_history: {result.get('route_history')}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of SmolLM2")
    parser.add_argument("--traces", type=Path, default=Path("runs/custom_graph.jsonl"))
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/custom_graph.sqlite"))
    parser.add_argument("--p-high", type=float, default=0.3)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    high, low = load_models(args.tiny)
    print(f"models ready in {time.perf_counter() - start:.1f} s")
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    store = JsonlTraceStore(args.traces)
    thread = f"custom-{time.time_ns()}"  # a fresh thread on every run of the script

    # First process: one turn, checkpointed to SQLite; its episode is written.
    router_node = RouterNode(RandomRouter(args.p_high, seed=0), trace_store=store)
    with SqliteSaver.from_conn_string(str(args.checkpoint)) as checkpointer:
        first = run_turn(build_graph(high, low, router_node, checkpointer), thread, "What is 12 plus 30?")
    router_node.end_episode(thread, info={"part": "before restart"})

    # "Restart": new router node, new graph, same SQLite file. The thread resumes where it was.
    router_node = RouterNode(RandomRouter(args.p_high, seed=0), trace_store=store)
    with SqliteSaver.from_conn_string(str(args.checkpoint)) as checkpointer:
        second = run_turn(build_graph(high, low, router_node, checkpointer), thread, "What is the weather in Rome?")
    episode = router_node.end_episode(thread, info={"part": "after restart"})
    indices = [s.index for s in episode.steps] if episode else []
    print(f"\nsteps before the restart: {len(first['route_history'])}; step indices after it: {indices}")
    print(f"traces in {args.traces}, checkpoints in {args.checkpoint}")
    return {"before": first["route_history"], "after": second["route_history"], "indices": indices}


if __name__ == "__main__":
    main()
