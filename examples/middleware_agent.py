"""Precision routing as LangChain v1 middleware: `create_agent(..., middleware=[PrecisionRoutingMiddleware(...)])`.

    python examples/middleware_agent.py            # SmolLM2 fp32 / GPTQ 3-bit (first run quantizes, ~3 min)
    python examples/middleware_agent.py --tiny     # tiny random models, seconds (used by the tests)

The agent keeps `high` as its model; the middleware swaps in the model the router picks for each
call. The route of every step is kept in the thread's state (`precision_router_routes`), which the
checkpointer saves with the thread: the second turn on a thread continues its step count. The
order of the middleware list matters (first = outermost): a middleware that sets `tool_choice`
comes before routing, `ModelFallbackMiddleware` after it (so that it guards whichever precision
was picked); `ModelCallLimitMiddleware` may go anywhere.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import (
    ModelCallLimitMiddleware,
    ModelFallbackMiddleware,
    ModelRequest,
    wrap_model_call,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from precision_router import JsonlTraceStore, PrecisionRoutingMiddleware, RandomRouter, load_precision_pair


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny and 21 C in {city}."


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@wrap_model_call
def tool_first(request: ModelRequest, handler):  # type: ignore[no-untyped-def]
    """Small models rarely volunteer a tool call: require one until a tool has answered this turn."""
    last_human = max((i for i, m in enumerate(request.messages) if isinstance(m, HumanMessage)), default=0)
    if not any(isinstance(m, ToolMessage) for m in request.messages[last_human:]):
        request = request.override(tool_choice="any")
    return handler(request)


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


# (thread, question): the second turn of "user-a" resumes that thread
TURNS = [
    ("user-a", "What is the weather in Paris?"),
    ("user-b", "What is 12 plus 30?"),
    ("user-a", "And in Rome?"),
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of SmolLM2")
    parser.add_argument("--traces", type=Path, default=Path("runs/middleware_agent.jsonl"))
    parser.add_argument("--p-high", type=float, default=0.3)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    high, low = load_models(args.tiny)
    print(f"models ready in {time.perf_counter() - start:.1f} s")

    routing = PrecisionRoutingMiddleware(
        high, low, RandomRouter(args.p_high, seed=0), trace_store=JsonlTraceStore(args.traces)
    )
    agent = create_agent(
        model=high,
        tools=[get_weather, add],
        system_prompt="You are a helpful assistant. Use the tools to answer.",
        middleware=[
            tool_first,  # sets tool_choice: before routing, so a low reply without a call is escalated
            ModelCallLimitMiddleware(run_limit=4, exit_behavior="end"),  # counts agent steps: any position
            routing,
            ModelFallbackMiddleware(high),  # inside routing: if the picked model raises, high answers
        ],
        checkpointer=InMemorySaver(),
    )

    routes_by_thread: dict[str, list[str]] = {}
    for thread, question in TURNS:
        config = {"configurable": {"thread_id": thread}}
        print(f"\n[{thread}] {question}")
        result = agent.invoke({"messages": [HumanMessage(question)]}, config)
        new = result["messages"][-_turn_length(result["messages"]) :]
        for message in new:
            meta = message.response_metadata.get("precision_router") if isinstance(message, AIMessage) else None
            if meta:
                flag = " escalated" if meta["escalated"] else ""
                print(f"  {meta['route']:4s} p_high={meta['p_high']:.2f}{flag}  {describe(message)}")
        routes_by_thread[thread] = list(result.get("precision_router_routes", []))
        print(f"  thread routes so far: {routes_by_thread[thread]}")

    for thread in routes_by_thread:
        episode = routing.end_episode(thread, info={"example": "middleware_agent"})
        if episode is not None:
            print(f"episode {thread}: steps {[s.index for s in episode.steps]}, high share {episode.high_share:.2f}")
    print(f"traces in {args.traces}")
    return {"routes": routes_by_thread, "traces": args.traces}


def _turn_length(messages: list[Any]) -> int:
    """Messages of the latest turn (from the last human message on)."""
    last_human = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    return len(messages) - last_human


if __name__ == "__main__":
    main()
