"""Collect routing traces for retraining the router: run conversations, score them, read the traces back.

    python examples/collect_traces.py            # SmolLM2 fp32 / GPTQ 3-bit (first run quantizes, ~3 min)
    python examples/collect_traces.py --tiny     # tiny random models, seconds (used by the tests)

Each conversation is an arithmetic question for a tool-using agent whose model is a
`RoutedChatModel`. When it finishes, `end_episode(thread, success=..., reward=...)` closes the
conversation's episode and appends it, as one JSON line, to the trace file. The script then
reads the file back three ways: `JsonlTraceStore.read()` (validated `Episode` objects),
`to_parquet(...)`, and `datasets.load_dataset("json", ...)` -- the inputs of the router's
offline training (KL labels, then GRPO). Parquet and `datasets` come with the `[train]` extra.

The routes were drawn at random, so the traces are also an experiment on where the high model
changes outcomes: `learn_from_random_routes` fits an uplift probe on them (the same as
`precision-router train-probe TRACES --labels uplift`), a router learned from outcomes alone.
With a handful of episodes it learns little; on the real ALFWorld games 560 random episodes
taught it a router that beats random routing by 26 points.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware, ModelRequest, wrap_model_call
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from precision_router import JsonlTraceStore, RandomRouter, RoutedChatModel, load_precision_pair

LAMBDA_HIGH = 0.02
"""Cost of one high-precision step in the reward (the paper's GRPO return: success - 0.02 * high steps)."""


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@wrap_model_call
def tool_first(request: ModelRequest, handler):  # type: ignore[no-untyped-def]
    """Small models rarely volunteer a tool call: require one until a tool has answered."""
    if not any(isinstance(m, ToolMessage) for m in request.messages):
        request = request.override(tool_choice="any")
    return handler(request)


def load_models(tiny: bool) -> tuple[BaseChatModel, BaseChatModel]:
    if tiny:
        from precision_router.testing import tiny_precision_pair

        return tiny_precision_pair("rtn-3bit", max_tokens=16)
    return load_precision_pair("smollm2-135m-instruct", low="gptq-3bit", max_tokens=48)


def solved(messages: list[Any], answer: int) -> bool:
    """Success: the agent's final answer states the right number."""
    final = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    text = final.text if final is not None else ""
    return str(answer) in re.findall(r"-?\d+", text)


def collect(model: RoutedChatModel, episodes: int, seed: int = 0) -> None:
    agent = create_agent(
        model=model,
        tools=[add],
        system_prompt="Use the add tool, then state the result.",
        middleware=[tool_first, ModelCallLimitMiddleware(run_limit=3, exit_behavior="end")],
    )
    rng = random.Random(seed)
    for i in range(episodes):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        thread = f"sum-{seed}-{i}"
        result = agent.invoke(
            {"messages": [HumanMessage(f"What is {a} plus {b}?")]}, {"configurable": {"thread_id": thread}}
        )
        success = solved(result["messages"], a + b)
        current = model.tracker.current(thread)
        n_high = current.n_high if current else 0
        model.end_episode(thread, success=success, reward=float(success) - LAMBDA_HIGH * n_high, info={"a": a, "b": b})
        print(f"[{thread}] {a} + {b}: success={success} high steps={n_high}")


def read_back(traces: Path, out_dir: Path) -> dict[str, Any]:
    store = JsonlTraceStore(traces)
    episodes = store.read()  # validated Episode objects; a torn last line would be skipped and reported
    steps = [s for e in episodes for s in e.steps]
    print(
        f"\n{len(episodes)} episodes, {len(steps)} steps in {traces} (skipped lines: {store.last_report.skipped_lines})"
    )
    for e in episodes[-3:]:
        print(f"  {e.conversation_id}: success={e.success} reward={e.reward} routes={[s.route for s in e.steps]}")
    summary: dict[str, Any] = {
        "episodes": len(episodes),
        "steps": len(steps),
        "success_rate": sum(bool(e.success) for e in episodes) / max(len(episodes), 1),
        "high_share": sum(s.route == "high" for s in steps) / max(len(steps), 1),
    }
    print(f"success rate {summary['success_rate']:.2f}, high-precision share {summary['high_share']:.2f}")

    try:
        summary["parquet"] = store.to_parquet(out_dir / "traces.parquet")
        print(f"Parquet export: {summary['parquet']}")
    except ImportError:
        print('Parquet export needs pyarrow: pip install "precision-router[train]"')
    try:
        import datasets
    except ImportError:
        print('datasets.load_dataset needs datasets: pip install "precision-router[train]"')
    else:
        dataset = datasets.load_dataset(
            "json", data_files=str(traces), split="train", cache_dir=str(out_dir / "hf-cache")
        )
        summary["dataset_rows"] = dataset.num_rows
        print(f"datasets: {dataset.num_rows} rows, columns {dataset.column_names}")
    return summary


def learn_from_random_routes(traces: Path, out: Path) -> Path:
    """An uplift probe from the random routes' outcomes: which steps routed high raised success."""
    from precision_router.routing.probe import FEATURES, train_uplift_probe
    from precision_router.training.labels import uplift_records

    records, effects = uplift_records(JsonlTraceStore(traces).read())
    probe = train_uplift_probe([r.state for r in records], effects)
    weights = {f: round(w, 2) for f, w in zip(FEATURES, probe.weights, strict=True) if w}
    print(f"uplift probe from {len(records)} randomly routed steps: weights {weights or 'none (no signal yet)'}")
    print(f"use it calibrated to a share: calibrated(ProbeRouter.load({str(out)!r}), episodes, 0.2)")
    return probe.save(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of SmolLM2")
    parser.add_argument("--traces", type=Path, default=Path("runs/collected.jsonl"))
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--p-high", type=float, default=0.3)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    high, low = load_models(args.tiny)
    print(f"models ready in {time.perf_counter() - start:.1f} s")
    model = RoutedChatModel(high, low, RandomRouter(args.p_high, seed=0), trace_store=JsonlTraceStore(args.traces))
    collect(model, args.episodes)
    summary = read_back(args.traces, args.traces.parent)
    summary["uplift_probe"] = learn_from_random_routes(args.traces, args.traces.parent / "uplift.json")
    return summary


if __name__ == "__main__":
    main()
