"""The routed ReAct agent on real ALFWorld games: what `make demo` runs.

    python examples/alfworld_demo.py                                # 3 real games, high only vs random:0.2
    python examples/alfworld_demo.py --games 4 --policies high low random:0.2
    python examples/alfworld_demo.py --tiny                         # tiny random models, 5 steps a game (tests)

With ALFWorld games on disk (--data, else $ALFWORLD_DATA, else the workplace copy at
../shared/alfworld) it plays a few real `valid_seen` games in the "real" setting of
`precision_router_alfworld.settings.SETTINGS`: the preset `smollm2-135m-alfworld` (SmolLM2-135M
fine-tuned on ALFWorld walkthroughs; a LoRA adapter shipped with the integration) at fp32 as the
high precision and a GPTQ 3-bit copy as the low one. Each game is played once per policy: by
default `high` (every step on fp32) and `random:0.2` (a fifth of the steps on fp32, the rest on
3-bit). The games are one per task type (pick, clean, heat, cool), drawn with --seed; the
default sample (seed 3) is one the fp32 model wins in a few steps each, so the demo takes a
minute or two; other seeds draw other games, some of them lost. A game stops after 25 steps
here (the evaluation allows 50). Without data it
falls back to generated games in the "benchmark" setting (the prompted SmolLM2-135M-Instruct).

Every step is printed as it is played (route, command, the game's answer), then one line per
policy: games won, high-precision share (the cost measure) and wall time. The full evaluation
on all 140 `valid_seen` games is in benchmarks/results/real/.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "alfworld"
# Real games are drawn one task type after another, in this order.
REAL_TASK_TYPES = [
    "pick_and_place_simple",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
]


def quiet_library_noise() -> None:
    """Silence known start-up noise of the libraries underneath; real warnings and errors still show.

    torchao logs a warning for each of its CUDA kernel libraries that cannot load on a CPU-only
    machine, torch one for each enum that torchao registers the deprecated way, and transformers
    draws a progress bar for every checkpoint it loads.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("torchao").setLevel(logging.ERROR)  # "Failed to load .../_C_cutlass_90a.abi3.so"
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # "<enum ...> is an Enum subclass ..."
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights: 100%|...|" per model


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send everything the libraries write (gptqmodel's progress bars, notes and warnings) to ``log``.

    The one-time model preparation prints several hundred lines; the demo shows its own progress
    lines (``precision_router.models`` logs) instead, and the log's tail if something fails.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    console = logging.StreamHandler(os.fdopen(os.dup(saved[0]), "w", buffering=1))
    console.setFormatter(logging.Formatter("  %(message)s"))
    shown = logging.getLogger("precision_router.models")
    shown.addHandler(console)
    shown.propagate = False
    try:
        with log.open("w") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    except BaseException:
        print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:]), file=sys.stderr)
        raise
    finally:
        shown.removeHandler(console)
        shown.propagate = True
        console.stream.close()
        for fd in saved:
            os.close(fd)


def find_data(given: str | None) -> str | None:
    """The ALFWorld data folder to play: ``given``, else ``$ALFWORLD_DATA``, else ../shared/alfworld."""
    if given:
        return given
    if os.environ.get("ALFWORLD_DATA"):
        return os.environ["ALFWORLD_DATA"]
    return str(SHARED) if SHARED.exists() else None


def one_type_after_another(options: Any, n: int) -> list[Any]:
    """``n`` real games, one of each of :data:`REAL_TASK_TYPES` in turn (each type's games sampled with the seed)."""
    from precision_router_alfworld.factory import resolve_games

    per_type = -(-n // len(REAL_TASK_TYPES))
    groups = [resolve_games(options.replace(task_types=[t], games=per_type)) for t in REAL_TASK_TYPES]
    return [game for turn in itertools.zip_longest(*groups) for game in turn if game is not None][:n]


class ShownRouter:
    """A router that remembers its last decision, so each step's route can be printed as it is played."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.last = "?"

    @property
    def name(self) -> str:
        return str(self.router.name)

    @property
    def version(self) -> str | None:
        return self.router.version  # type: ignore[no-any-return]

    @property
    def needs_scores(self) -> tuple[str, ...]:
        from precision_router.routing.base import scores_needed

        return scores_needed(self.router)

    def decide(self, state: Any) -> Any:
        decision = self.router.decide(state)
        self.last = decision.route
        return decision


class ShownEnv:
    """The game, printing each step (route, command, the game's answer) as the agent plays it."""

    def __init__(self, env: Any, router: ShownRouter) -> None:
        self.env = env
        self.router = router
        self.steps = 0

    @property
    def admissible_commands(self) -> list[str]:
        return list(self.env.admissible_commands)

    def reset(self, game: Any = None) -> tuple[str, dict[str, Any]]:
        observation, info = self.env.reset(game)
        self.steps = 0
        print(f"  task: {info.get('task', '?')}")
        return observation, info

    def step(self, action: str) -> tuple[str, bool, bool, dict[str, Any]]:
        observation, won, done, info = self.env.step(action)
        answer = " ".join(observation.split())
        answer = answer if len(answer) <= 60 else answer[:57] + "..."
        print(f"  {self.steps:2d} {self.router.last:4s} {action:34s} {answer}", flush=True)
        self.steps += 1
        return observation, won, done, info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ALFWorld data folder (default: $ALFWORLD_DATA, else ../shared/alfworld)")
    parser.add_argument("--setting", help="agent setting (default: 'real' with data, 'benchmark' without)")
    parser.add_argument("--games", type=int, default=3, help="games to play per policy")
    parser.add_argument("--policies", nargs="+", default=["high", "random:0.2"], help="high, low, random:P, ...")
    parser.add_argument("--max-steps", type=int, help="step cap per game (default: 25 on real games, 5 with --tiny)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the game sample and of random routing")
    parser.add_argument("--traces", type=Path, default=Path("runs/demo.jsonl"), help="where the episodes go")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (for tests)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    quiet_library_noise()

    from precision_router_alfworld.env import AlfworldEnv
    from precision_router_alfworld.factory import build_agent, load_models, resolve_games
    from precision_router_alfworld.settings import AgentOptions

    from precision_router import JsonlTraceStore
    from precision_router.evaluation import summarize
    from precision_router.routing.spec import router_from_spec

    data = find_data(args.data)
    setting = args.setting or ("real" if data else "benchmark")
    options = AgentOptions.from_setting(setting, data=data, games=args.games, seed=args.seed, tiny=args.tiny)
    if args.max_steps or args.tiny or setting == "real":
        # the real setting allows 50 steps; the demo's games are won in a dozen or not at all
        options = options.replace(max_steps=args.max_steps or (5 if args.tiny else 25))
    games = one_type_after_another(options, args.games) if data and setting == "real" else resolve_games(options)
    source = f"{options.split} games from {data}" if data else "generated games (no ALFWorld data found)"
    print(f"{len(games)} {source}; setting {setting!r}, at most {options.max_steps} steps a game")

    if args.tiny:
        print("loading tiny random models")
    else:
        print(
            f"loading {options.model} at {options.high} (high) and {options.low} (low); the first run prepares "
            "them (merges the fine-tuned adapter, GPTQ-quantizes: about 90 s on two cores, cached afterwards)"
        )
        logging.getLogger("precision_router.models").setLevel(logging.INFO)  # each one-time preparation step
    loaded = time.perf_counter()
    log = args.traces.with_name("demo-models.log")
    with contextlib.nullcontext() if args.tiny else output_to(log):
        models = load_models(options)
    print(
        f"models ready in {time.perf_counter() - loaded:.0f} s" + ("" if args.tiny else f" (libraries' output: {log})")
    )

    store = JsonlTraceStore(args.traces)
    env = AlfworldEnv(games[0], max_steps=options.max_steps)
    rows = []
    try:
        for spec in args.policies:
            router = ShownRouter(router_from_spec(spec, seed=args.seed))
            agent = build_agent(options, router, store, pair=models)
            episodes, policy_started = [], time.perf_counter()
            for i, game in enumerate(games, 1):
                print(f"\n[{spec}] game {i}/{len(games)}  (step, route, command, what the game answers)")
                episode = agent.run_episode(
                    ShownEnv(env, router), conversation_id=f"demo|{spec}|{game.name}", game=game
                )
                print(f"  -> {'WON' if episode.success else 'not won'} in {len(episode.steps)} steps")
                episodes.append(episode)
            rows.append((spec, summarize(episodes), episodes, time.perf_counter() - policy_started))
    finally:
        env.close()

    print(f"\n{'policy':12s} {'won':>5s} {'high share':>11s} {'steps':>6s} {'wall time':>10s}")
    for spec, metrics, episodes, seconds in rows:
        won = f"{sum(bool(e.success) for e in episodes)}/{len(episodes)}"
        steps = sum(len(e.steps) for e in episodes)
        print(f"{spec:12s} {won:>5s} {metrics.high_share:>11.2f} {steps:>6d} {seconds:>9.0f}s")
    print(f"high share: the share of steps on {options.high} (the cost); traces in {args.traces}")
    if setting == "real":
        print("the full evaluation on all 140 valid_seen games: benchmarks/results/real/")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return {spec: {"success": m.success, "high_share": m.high_share} for spec, m, _, _ in rows}


if __name__ == "__main__":
    main()
