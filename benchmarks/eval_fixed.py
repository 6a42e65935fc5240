"""The evaluation table on a fixed game list, as `make bench` reports it.

    python benchmarks/eval_fixed.py [--games 12] [--jobs N]

The fixed list is generated (no download needed, the same on every machine): `--games` games of
the benchmark setting's difficulty at seed 7. Policies: high, low, Random@20/40/60/80, and the
learned routers in runs/ when they exist (runs/klst.pt, runs/grpo.pt). The games are split over
`--jobs` processes (default: one per CPU core, each on one thread) whose episodes are merged into
runs/bench-eval.jsonl; a rerun replays only what is missing (a retrained router is replayed, as
its key carries the weights' fingerprint).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from precision_router_alfworld.settings import SETTINGS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "alfworld"

# The benchmark setting of the ALFWorld study (README, "The benchmark setting"): `--setting benchmark`.
DIFFICULTY = str(SETTINGS["benchmark"]["difficulty"])


def _play_in_shards(args: list[str], traces: Path, runs_dir: Path, jobs: int) -> None:
    """Play the games in ``jobs`` parallel processes, then merge their episodes into ``traces``."""
    from precision_router import JsonlTraceStore

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    shards = [
        (runs_dir / f"bench-eval.shard{k}.jsonl", runs_dir / f"bench-eval.shard{k}.log") for k in range(1, jobs + 1)
    ]
    procs = []
    for k, (shard_traces, log) in enumerate(shards, start=1):
        if traces.exists() and not shard_traces.exists():  # what is already played is not replayed
            shard_traces.write_bytes(traces.read_bytes())
        cmd = [sys.executable, "-m", "precision_router", *args, "--shard", f"{k}/{jobs}", "--traces", str(shard_traces)]
        cmd += ["--out", str(shard_traces.with_suffix(".md"))]
        print(f"  shard {k}/{jobs}: log in {log}", flush=True)
        with log.open("w") as out:
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    store = JsonlTraceStore(traces)
    known = {(e.info.get("run"), e.info.get("game")) for e in store}
    for shard_traces, _ in shards:
        fresh = [e for e in JsonlTraceStore(shard_traces) if (e.info.get("run"), e.info.get("game")) not in known]
        store.extend(fresh)
        known |= {(e.info.get("run"), e.info.get("game")) for e in fresh}
    if any(codes):
        msg = f"evaluation shards failed (exit codes {codes}); see {', '.join(str(log) for _, log in shards)}"
        raise RuntimeError(msg)
    for shard_traces, _ in shards:
        for path in (shard_traces, shard_traces.with_suffix(".md"), shard_traces.with_suffix(".png")):
            path.unlink(missing_ok=True)


def run(games: int = 12, runs_dir: Path = Path("runs"), jobs: int | None = None) -> str:
    from precision_router_alfworld import find_games, generate_games

    from precision_router.cache import cache_dir
    from precision_router.cli import main as cli

    folder = cache_dir("bench", f"games-{DIFFICULTY}-s7")
    existing = find_games(folder, split="generated") if (folder / "json_2.1.1").exists() else []
    if len(existing) < games:
        generate_games(folder, games, seed=7, difficulty=DIFFICULTY)
    policies = ["high", "low", "random:0.2", "random:0.4", "random:0.6", "random:0.8"]
    policies += [f"learned:{p}" for p in (runs_dir / "klst.pt", runs_dir / "grpo.pt") if p.exists()]
    args = ["eval", "--setting", "benchmark", "--data", str(folder), "--split", "generated", "--games", str(games)]
    # $ALFWORLD_DATA only when it holds train games: importing alfworld sets it to a default folder
    candidates = [os.environ.get("ALFWORLD_DATA"), SHARED]
    examples = next((c for c in candidates if c and (Path(c) / "json_2.1.1" / "train").is_dir()), None)
    if examples:  # few-shot transcripts from real train games (else from generated ones)
        args += ["--fewshot-data", str(examples)]
    args += ["--policies", *policies]
    runs_dir.mkdir(parents=True, exist_ok=True)
    traces, out = runs_dir / "bench-eval.jsonl", runs_dir / "bench-eval.md"
    jobs = max(1, min(jobs or os.cpu_count() or 1, games))
    if jobs > 1:
        _play_in_shards(args, traces, runs_dir, jobs)
    # every episode is in the cache now (with jobs > 1): this pass only writes the report
    if cli([*args, "--traces", str(traces), "--out", str(out)]) != 0:
        return "evaluation failed"
    return out.read_text()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=None, help="parallel processes (default: CPU cores)")
    cli_args = parser.parse_args()
    sys.stdout.write(run(cli_args.games, jobs=cli_args.jobs) + "\n")
