"""The evaluation table on a fixed game list, as `make bench` reports it.

    python benchmarks/eval_fixed.py [--games 12]

The fixed list is generated (no download needed, the same on every machine): `--games` games of
the benchmark setting's difficulty at seed 7. Policies: high, low, Random@20/40/60/80, and the
learned routers in runs/ when they exist (runs/klst.pt, runs/grpo.pt).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from precision_router_alfworld.cli import SETTINGS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "alfworld"

# The benchmark setting of the ALFWorld study (README, "The benchmark setting"): `--setting benchmark`.
DIFFICULTY = str(SETTINGS["benchmark"]["difficulty"])


def run(games: int = 12, runs_dir: Path = Path("runs")) -> str:
    from precision_router_alfworld import find_games, generate_games

    from precision_router.cache import cache_dir
    from precision_router.cli import main as cli

    folder = cache_dir("bench", f"games-{DIFFICULTY}-s7")
    existing = find_games(folder, split="generated") if (folder / "json_2.1.1").exists() else []
    if len(existing) < games:
        generate_games(folder, games, seed=7, difficulty=DIFFICULTY)
    policies = ["high", "low", "random:0.2", "random:0.4", "random:0.6", "random:0.8"]
    policies += [f"learned:{p}" for p in (runs_dir / "klst.pt", runs_dir / "grpo.pt") if p.exists()]
    out = runs_dir / "bench-eval.md"
    args = ["alfworld", "eval", "--setting", "benchmark", "--data", str(folder), "--split", "generated"]
    args += ["--games", str(games)]
    examples = os.environ.get("ALFWORLD_DATA") or (SHARED if (SHARED / "json_2.1.1").is_dir() else None)
    if examples:  # few-shot transcripts from real train games (else from generated ones)
        args += ["--fewshot-data", str(examples)]
    args += [
        "--traces",
        str(runs_dir / "bench-eval.jsonl"),
        "--out",
        str(out),
        "--policies",
        *policies,
    ]
    if cli(args) != 0:
        return "evaluation failed"
    return out.read_text()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=12)
    sys.stdout.write(run(parser.parse_args().games) + "\n")
