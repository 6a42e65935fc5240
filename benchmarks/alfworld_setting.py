"""Compare policies (high-only, low-only, ...) on one ALFWorld setting and log the result.

    python benchmarks/alfworld_setting.py --data ../shared/alfworld --split valid_seen --games 40 \\
        --task-types pick_and_place_simple --label smollm2-valid-pick

Runs every policy on the same games (resumable: episodes go to runs/settings/<label>.jsonl),
prints a Markdown table (success ± binomial SE, high share, steps, s/step, partial progress)
and appends it to benchmarks/results/alfworld_settings.md, the log of every setting tried.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
from pathlib import Path

from precision_router_alfworld.cli import add_agent_arguments
from precision_router_alfworld.factory import build_agent, load_pair, resolve_games, run_name
from precision_router_alfworld.runner import progress_measures, run_games

from precision_router import JsonlTraceStore
from precision_router.routing.spec import router_from_spec

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_agent_arguments(parser)
    parser.add_argument("--policies", nargs="+", default=["high", "low"])
    parser.add_argument("--label", required=True, help="name of this setting in the results log")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/settings"))
    parser.add_argument("--no-log", action="store_true", help="do not append to the results log")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 when running several at once)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    games = resolve_games(args)
    pair = load_pair(args)
    store = JsonlTraceStore(args.runs_dir / f"{args.label}.jsonl")
    rows = []
    for policy in args.policies:
        agent = build_agent(args, router_from_spec(policy, seed=args.seed), store, pair=pair)
        result = run_games(agent, games, run=run_name(args, policy))
        m = result.metrics
        rows.append({"policy": policy, **m.as_dict(), **progress_measures(result.episodes)})
        print(result.summary_line(), flush=True)

    setting = (
        f"model {args.model} ({args.high} vs {args.low}), {args.mode} mode, {len(games)} {args.split} games"
        f"{' of ' + ', '.join(args.task_types) if args.task_types else ''} from {args.data or 'generated'}, "
        f"max {args.max_steps} steps, fewshot {args.fewshot}, normalize {args.normalize}, "
        f"repeat penalty {args.repeat_penalty} (window {args.repeat_window}), undo penalty {args.undo_penalty}, "
        f"restate goal {args.restate_goal}, track inventory {args.track_inventory}, "
        f"contextual calibration {args.contextual_calibration}, "
        f"excluded commands {' '.join(args.exclude)}, "
        f"seed {args.seed}"
    )
    lines = [
        f"### {args.label}",
        "",
        setting,
        "",
        "| policy | success | ± SE | high share | steps/game | s/step | took something | A-B-A-B loops |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['policy']} | {r['success']:.3f} | {r['success_se']:.3f} | {r['high_share']:.2f} | "
            f"{r['mean_steps']:.1f} | {r['seconds_per_step']:.2f} | {r['took_something']:.2f} | {r['loop_share']:.2f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    if not args.no_log:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        with (RESULTS / "alfworld_settings.md").open("a") as fh:
            fh.write(f"\n{table}\n\n_{stamp}, {platform.machine()}, {platform.processor() or 'cpu'}_\n")
        with (RESULTS / "alfworld_settings.jsonl").open("a") as fh:
            fh.write(json.dumps({"label": args.label, "setting": setting, "rows": rows, "time": stamp}) + "\n")
    return rows


if __name__ == "__main__":
    main()
