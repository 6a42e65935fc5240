"""Rollout throughput: games per hour in-process and on 1 and 2 Ray workers, in the benchmark setting.

    python benchmarks/rollout_throughput.py [--games 16] [--tiny]

The games are generated (the benchmark setting's difficulty, seed 7; no download needed). Each
configuration plays the same games with random routing at 30 %; the time to start the workers
(loading the models in each) is reported apart from the playing time the rate is computed from;
every game is translated once beforehand (the translation cache), so no configuration pays for it.
`--tiny` uses tiny random models (a smoke test of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402


def run(games: int = 16, *, tiny: bool = False, workers: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """One row per configuration: name, workers, start seconds, play seconds, games per hour."""
    from precision_router_alfworld.env import AlfworldEnv
    from precision_router_alfworld.generate import generate_games
    from precision_router_alfworld.rollouts import RolloutEngine, ray_available
    from precision_router_alfworld.settings import SETTINGS, AgentOptions

    from precision_router import RandomRouter

    folder = Path(tempfile.mkdtemp(prefix="rollout-throughput-"))
    played = generate_games(folder, games, seed=7, difficulty=str(SETTINGS["benchmark"]["difficulty"]))
    with AlfworldEnv(played[0]) as env:  # translate every game once (cached), so no configuration pays for it
        for game in played:
            env.reset(game)
    options = AgentOptions.from_setting("benchmark", data=str(folder), split="generated", tiny=tiny)
    if tiny:
        options = options.replace(fewshot=0, max_steps=6)
    configs: list[tuple[str, int, bool]] = [("in-process", 1, False)]
    if ray_available():
        configs += [(f"{n} Ray worker{'s' if n > 1 else ''}", n, True) for n in workers]
    rows: list[dict[str, Any]] = []
    for name, n, on_ray in configs:
        print(f"  {name} ...", flush=True)
        with RolloutEngine(options, workers=n, ray=on_ray, progress=False) as engine:
            start = time.perf_counter()
            engine.start()
            started = time.perf_counter()
            # one run name for every configuration: the seeded random routes are keyed by it and the
            # game, so every configuration plays the same episodes and only the parallelism differs
            result = engine.play(RandomRouter(0.3, seed=0), played, run="throughput", resume=False)
            seconds = time.perf_counter() - started
        rows.append(
            {
                "config": name,
                "workers": n,
                "start_s": started - start,
                "play_s": seconds,
                "games_per_hour": len(result.episodes) / seconds * 3600,
                "success": result.metrics.success,
                "episodes": sorted(
                    (str(e.info.get("game")), bool(e.success), tuple(s.route for s in e.steps)) for e in result.episodes
                ),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per configuration, then the 2-worker / 1-worker ratio."""
    lines = [
        "| configuration | start (s) | playing (s) | games / hour | success |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {float(r['start_s']):.1f} | {float(r['play_s']):.1f} | "
            f"{float(r['games_per_hour']):.0f} | {float(r['success']):.3f} |"
        )
    same = all(r["episodes"] == rows[0]["episodes"] for r in rows)
    lines += [
        "",
        f"Same episodes (game, outcome, route of every step) in every configuration: {'yes' if same else 'NO'}.",
    ]
    rate = {str(r["config"]): float(r["games_per_hour"]) for r in rows}
    if "1 Ray worker" in rate and "2 Ray workers" in rate:
        lines.append("")
        lines.append(
            f"Rollout throughput: 2 workers / 1 worker = {rate['2 Ray workers'] / rate['1 Ray worker']:.2f}x; "
            f"2 workers / in-process = {rate['2 Ray workers'] / rate['in-process']:.2f}x (target >= 1.8x)."
        )
    else:
        lines += ["", "Ray is not installed (extra `[ray]`): only the in-process rate."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=16, help="generated games each configuration plays")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (smoke test)")
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}")
    print(table(run(args.games, tiny=args.tiny)))


if __name__ == "__main__":
    main()
