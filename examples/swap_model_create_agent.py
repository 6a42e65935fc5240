"""An existing `create_agent` agent, switched to precision routing by swapping its model in one line.

    python examples/swap_model_create_agent.py            # SmolLM2 fp32 / GPTQ 3-bit (first run quantizes, ~3 min)
    python examples/swap_model_create_agent.py --tiny     # tiny random models, seconds (used by the tests)

`build_agent` stands for the agent code you already have; nothing in it changes. The only new
line is `model = RoutedChatModel(high, low, router, ...)`: every model call the agent makes is then
routed to the high- or the low-precision copy, tagged with `response_metadata["precision_router"]`
and recorded in a JSONL trace file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware, ModelRequest, wrap_model_call
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from precision_router import JsonlTraceStore, RandomRouter, RoutedChatModel, load_precision_pair


# -- the agent you already have ---------------------------------------------------------------
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
    since_user = request.messages[_last_human(request.messages) :]
    if not any(isinstance(m, ToolMessage) for m in since_user):
        request = request.override(tool_choice="any")
    return handler(request)


def _last_human(messages: list[Any]) -> int:
    return max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)


def build_agent(model: BaseChatModel):  # type: ignore[no-untyped-def]
    return create_agent(
        model=model,
        tools=[get_weather, add],
        system_prompt="You are a helpful assistant. Use the tools to answer.",
        middleware=[tool_first, ModelCallLimitMiddleware(run_limit=4, exit_behavior="end")],
    )


# -- loading the precision pair ---------------------------------------------------------------
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


QUESTIONS = ["What is the weather in Paris?", "What is 12 plus 30?"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of SmolLM2")
    parser.add_argument("--traces", type=Path, default=Path("runs/swap_model.jsonl"))
    parser.add_argument("--p-high", type=float, default=0.3)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    high, low = load_models(args.tiny)
    print(f"models ready in {time.perf_counter() - start:.1f} s")

    # Before: agent = build_agent(high)
    model = RoutedChatModel(high, low, RandomRouter(args.p_high, seed=0), trace_store=JsonlTraceStore(args.traces))
    agent = build_agent(model)

    routes: list[str] = []
    for i, question in enumerate(QUESTIONS):
        thread = f"swap-{i}"
        print(f"\n[{thread}] {question}")
        result = agent.invoke({"messages": [HumanMessage(question)]}, {"configurable": {"thread_id": thread}})
        for message in result["messages"]:
            meta = message.response_metadata.get("precision_router") if isinstance(message, AIMessage) else None
            if meta:
                routes.append(meta["route"])
                flag = " escalated" if meta["escalated"] else ""
                print(f"  {meta['route']:4s} p_high={meta['p_high']:.2f}{flag}  {describe(message)}")
        model.end_episode(thread, info={"question": question})
    share = routes.count("high") / max(len(routes), 1)
    print(f"\nhigh-precision share {share:.2f} over {len(routes)} steps; traces in {args.traces}")
    return {"routes": routes, "high_share": share, "traces": args.traces}


if __name__ == "__main__":
    main()
