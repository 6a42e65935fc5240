"""A tool-using LangChain agent whose model is a RoutedChatModel over SmolLM2 fp32 / GPTQ 3-bit.

    python examples/tool_agent.py            # the real SmolLM2 pair (first run quantizes, ~3 min)
    python examples/tool_agent.py --tiny     # tiny random models, seconds (used by the tests)

Each model call is routed high or low by RandomRouter(0.3); the script prints every step's route
and the share of high-precision steps, and writes the episodes to a JSONL trace file.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware, ModelRequest, wrap_model_call
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from precision_router import JsonlTraceStore, RandomRouter, RoutedChatModel, load_precision_pair


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
    """Small models rarely volunteer a tool call: require one while no tool has answered yet."""
    if not any(isinstance(m, ToolMessage) for m in request.messages):
        request = request.override(tool_choice="any")
    return handler(request)


QUESTIONS = ["What is the weather in Paris?", "What is 12 plus 30?", "How warm is it in Rome today?"]


def load_models(tiny: bool):
    if tiny:
        from precision_router.testing import tiny_precision_pair

        return tiny_precision_pair("rtn-3bit", max_tokens=16)
    return load_precision_pair("smollm2-135m-instruct", low="gptq-3bit", max_tokens=48)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of SmolLM2")
    parser.add_argument("--traces", type=Path, default=Path("runs/tool_agent.jsonl"))
    parser.add_argument("--p-high", type=float, default=0.3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    start = time.perf_counter()
    high, low = load_models(args.tiny)
    print(f"models ready in {time.perf_counter() - start:.1f} s: high={high.model_name} low={low.model_name}")

    model = RoutedChatModel(high, low, RandomRouter(args.p_high, seed=0), trace_store=JsonlTraceStore(args.traces))
    agent = create_agent(
        model=model,
        tools=[get_weather, add],
        middleware=[tool_first, ModelCallLimitMiddleware(run_limit=4, exit_behavior="end")],
    )
    routes: list[str] = []
    for i, question in enumerate(QUESTIONS):
        thread = f"demo-{i}"
        print(f"\n[{thread}] {question}")
        result = agent.invoke({"messages": [HumanMessage(question)]}, config={"configurable": {"thread_id": thread}})
        for message in result["messages"]:
            if isinstance(message, AIMessage):
                meta = message.response_metadata["precision_router"]
                routes.append(meta["route"])
                what = ", ".join(f"{c['name']}({c['args']})" for c in message.tool_calls) or repr(message.content[:70])
                flag = " (escalated)" if meta["escalated"] else ""
                print(f"  step {len(routes):2d}  {meta['route']:4s}  p_high={meta['p_high']:.2f}{flag}  {what}")
            elif isinstance(message, ToolMessage):
                print(f"           tool -> {message.content}")
        model.end_episode(thread, success=None, info={"question": question})
    share = routes.count("high") / len(routes)
    print(f"\nhigh-precision share: {share:.2f} ({routes.count('high')}/{len(routes)} steps); traces: {args.traces}")
    return share


if __name__ == "__main__":
    main()
