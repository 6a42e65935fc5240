"""The routed ReAct agent on ALFWorld: what `make demo` runs.

    python examples/alfworld_demo.py                 # SmolLM2-135M fp32 / GPTQ 3-bit, RandomRouter(0.3)
    python examples/alfworld_demo.py --tiny --games 2 --max-steps 4   # tiny random models (tests)

Games come from --data, else $ALFWORLD_DATA, else the workplace copy at ../shared/alfworld, else
games generated on the spot (nothing to download). Prints the first episode step by step (route,
p_high, action), then success rate, high-precision share, steps per game and seconds per step.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from precision_router_alfworld.cli import add_agent_arguments
from precision_router_alfworld.factory import build_agent, resolve_games
from precision_router_alfworld.runner import progress_measures, run_games
from precision_router_alfworld.settings import SETTINGS

from precision_router import JsonlTraceStore, RandomRouter

SHARED = Path(__file__).resolve().parents[2] / "shared" / "alfworld"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_agent_arguments(parser)
    parser.add_argument("--p-high", type=float, default=0.3)
    parser.add_argument("--traces", type=Path, default=Path("runs/demo.jsonl"))
    # the benchmark setting (README): no no-op commands, loop avoidance, goal and inventory restated
    parser.set_defaults(games=6, **SETTINGS["benchmark"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.data is None and not os.environ.get("ALFWORLD_DATA") and SHARED.exists():
        args.data = str(SHARED)
    if args.task_types is None and args.games and args.games <= 6:
        # one game of each task type
        from precision_router_alfworld.data import TASK_TYPES

        args.task_types = list(TASK_TYPES)
    games = resolve_games(args)
    if args.task_types and args.games and len(games) > args.games:
        games = games[: args.games]
    print(
        f"{len(games)} games from {args.data or 'generated games'}; model {args.model} high={args.high} low={args.low}"
    )

    router = RandomRouter(args.p_high, seed=args.seed)
    agent = build_agent(args, router, JsonlTraceStore(args.traces))
    first: list = []

    def show_first(game, episode) -> None:  # type: ignore[no-untyped-def]
        if first:
            return
        first.append(episode)
        print(f"\nfirst episode: {game.name} — {episode.task}")
        for step in episode.steps:
            print(f"  step {step.index:2d}  {step.route:4s}  p_high={step.p_high:.2f}  {step.action}")
        print(f"  -> {'won' if episode.success else 'not won'} in {len(episode.steps)} steps\n")

    name = f"demo|random:{args.p_high}|{args.mode}|{args.model}@{args.low}|seed{args.seed}"
    result = run_games(agent, games, run=name, resume=False, on_episode=show_first)
    m = result.metrics
    measures = progress_measures(result.episodes)
    print(f"success rate:         {m.success:.2f} ({sum(bool(e.success) for e in result.episodes)}/{m.episodes} games)")
    print(f"high-precision share: {m.high_share:.2f} of steps ({m.token_high_share:.2f} of tokens)")
    print(f"steps per game:       {m.mean_steps:.1f}   seconds per step: {m.seconds_per_step:.2f}")
    print(f"took an object in {measures['took_something']:.2f} of games; traces in {args.traces}")
    return {"success": m.success, "high_share": m.high_share}


if __name__ == "__main__":
    main()
