"""The ALFWorld subcommands of ``precision-router`` (``alfworld``, ``eval``, ``collect-kl``, ...): parsing only.

Each command parses its arguments into :class:`~precision_router_alfworld.settings.AgentOptions`
and calls the factory (:mod:`precision_router_alfworld.factory`) and the runner. The commands
reach the main CLI through the ``precision_router.commands`` entry-point group declared in this
package's ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from precision_router.cli import Command
from precision_router_alfworld import validation
from precision_router_alfworld.factory import file_digest, policy_key, resolve_games, run_name
from precision_router_alfworld.settings import SETTINGS, AgentOptions

if TYPE_CHECKING:
    from precision_router.evaluation.report import PolicyResult
    from precision_router.routing.base import Router
    from precision_router.traces.schema import Episode
    from precision_router.traces.store import TraceStore
    from precision_router_alfworld.data import GameInfo
    from precision_router_alfworld.rollouts import RolloutEngine
    from precision_router_alfworld.runner import RunResult

__all__ = ["add_agent_arguments", "add_arguments", "add_rollout_arguments", "run"]

logger = logging.getLogger(__name__)


class _SettingAction(argparse.Action):
    """``--setting NAME``: set every option of a named setting; options given after it still override."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, self.dest, values)
        for key, value in SETTINGS[str(values)].items():
            setattr(namespace, key, list(value) if isinstance(value, list) else value)


class _BackendAction(argparse.Action):
    """``--backend llama.cpp``: GGUF rungs (default high q8_0, low q4_k_m; --high / --low after it override)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, self.dest, values)
        if values == "llama.cpp":
            from precision_router.models.gguf_rungs import DEFAULT_HIGH, DEFAULT_LOW

            namespace.high, namespace.low = DEFAULT_HIGH, DEFAULT_LOW


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by every command that runs the agent."""
    parser.add_argument(
        "--setting",
        action=_SettingAction,
        choices=sorted(SETTINGS),
        help="a named bundle of the options below (give it first: later options override it)",
    )
    parser.add_argument("--data", help="ALFWorld data folder (default: $ALFWORLD_DATA; generated games if none)")
    parser.add_argument(
        "--split", default="valid_seen", help="split folder: train, valid_seen, valid_unseen, generated"
    )
    parser.add_argument("--games", type=int, default=None, help="number of games (default: all)")
    parser.add_argument(
        "--skip",
        type=int,
        default=0,
        metavar="N",
        help="leave out the first N games of the seeded order (e.g. the games a model was fine-tuned on)",
    )
    parser.add_argument("--task-types", nargs="*", default=None, help="only these task types")
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="K/N",
        help="play only part K of N of the selected games (run N processes with K=1..N in parallel)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for game sampling and random routing")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="model preset, folder or hub id")
    parser.add_argument("--low", default="gptq-3bit", help="low precision (gptq-3bit, gptq-4bit, rtn-4bit, ...)")
    parser.add_argument("--high", default="fp32", help="high precision (fp32, bf16)")
    parser.add_argument(
        "--backend",
        choices=["torch", "llama.cpp"],
        default="torch",
        action=_BackendAction,
        help="llama.cpp: GGUF rungs (--high q8_0|f16, --low q4_k_m|q3_k_m|q2_k; give them after --backend)",
    )
    parser.add_argument("--mode", choices=["score", "generate"], default="score")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--normalize", choices=["sum", "mean"], default="sum", help="candidate score: sum or mean")
    parser.add_argument("--repeat-penalty", type=float, default=0.0, help="nats per recent repeat (loop avoidance)")
    parser.add_argument("--repeat-window", type=int, default=4, help="how many recent steps the penalty looks at")
    parser.add_argument("--undo-penalty", type=float, default=0.0, help="nats against undoing the last command")
    parser.add_argument("--restate-goal", action="store_true", help="append the task to every observation")
    parser.add_argument("--track-inventory", action="store_true", help="append what the agent carries to observations")
    parser.add_argument(
        "--contextual-calibration",
        type=float,
        default=0.0,
        help="subtract this multiple of each command's score in a neutral context (0: off)",
    )
    parser.add_argument("--calibration", dest="contextual_calibration", type=float, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ladder",
        nargs="+",
        default=None,
        metavar="PRECISION",
        help="route over these precisions, highest first (e.g. fp32 gptq-4bit gptq-3bit) instead of --high/--low",
    )
    parser.add_argument(
        "--ladder-costs", nargs="+", type=float, default=None, help="each --ladder rung's cost (default: linear 1..0)"
    )
    parser.add_argument(
        "--no-instructions",
        dest="instructions",
        action="store_false",
        help="no system turn explaining the game (for models fine-tuned on it)",
    )
    parser.add_argument(
        "--exclude", nargs="*", default=["help"], help="commands never offered (e.g. help look inventory)"
    )
    parser.add_argument("--fewshot", type=int, default=1, help="solved example games in the prompt (0 for none)")
    parser.add_argument("--fewshot-data", help="where example games come from (default: --data)")
    parser.add_argument("--fewshot-split", default="train", help="split the example games come from")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (for smoke tests)")


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        msg = f"--workers must be a number or 'auto', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def add_rollout_arguments(parser: argparse.ArgumentParser) -> None:
    """Where episodes are played: in this process, or on Ray workers (the rollout engine)."""
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N|auto",
        help="Ray workers, each with its own models and game engine (auto: this machine's cores; default: "
        "play in this process, or one worker per cluster CPU with --ray-address); needs the [ray] extra",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join this Ray cluster (`ray start --head` prints it; default: $RAY_ADDRESS, else a local instance)",
    )


def _engine(args: argparse.Namespace, options: AgentOptions, **kwargs: object) -> RolloutEngine:
    """The rollout engine ``--workers`` / ``--ray-address`` ask for."""
    from precision_router_alfworld.rollouts import RolloutEngine, resolve_workers

    return RolloutEngine(options, workers=resolve_workers(args.workers), ray_address=args.ray_address, **kwargs)  # type: ignore[arg-type]


def _report_failures(results: list[RunResult]) -> int:
    """Print every failed game to stderr; the exit status (1 if any game failed)."""
    lines = [line for result in results for line in result.failure_lines()]
    for line in lines:
        print(line, file=sys.stderr)
    if lines:
        print(f"{len(lines)} games failed (their episodes are not recorded; rerun to retry them)", file=sys.stderr)
    return 1 if lines else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``precision-router alfworld``."""
    sub = parser.add_subparsers(dest="alfworld_command", required=True)
    run_parser = sub.add_parser("run", help="run the routed ReAct agent on games")
    add_agent_arguments(run_parser)
    run_parser.add_argument("--policy", default="random:0.3", help="high, low, random:P, learned:PATH[@T]")
    run_parser.add_argument("--traces", type=Path, default=Path("runs/alfworld.jsonl"))
    run_parser.add_argument("--run-name", help="name of the run in the trace file (default from the settings)")
    run_parser.add_argument("--score-both", action="store_true", help="record both precisions' distributions + KL")
    run_parser.add_argument("--no-resume", action="store_true", help="replay games already in the trace file")
    run_parser.add_argument("--print-steps", type=int, default=0, help="print the steps of the first N episodes")
    add_rollout_arguments(run_parser)
    add_eval_arguments(sub.add_parser("eval", help="run several policies on the same games and write the report"))
    add_finetune_arguments(sub.add_parser("finetune", help="fine-tune the model (LoRA) on expert trajectories"))
    gen = sub.add_parser("generate", help="write new solvable games (no ALFWorld download needed)")
    gen.add_argument("out_dir", type=Path)
    gen.add_argument("-n", type=int, default=12, help="games to write")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--task-types", nargs="*", default=None)
    gen.add_argument("--difficulty", default="easy", help="trivial, easy, medium or hard")


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``precision-router alfworld finetune``."""
    parser.add_argument("--out", type=Path, required=True, help="run folder (adapter/, state.pt, loss.png, ...)")
    parser.add_argument("--data", help="ALFWorld data folder (default: $ALFWORLD_DATA)")
    parser.add_argument("--split", default="train", help="split whose walkthroughs are played")
    parser.add_argument("--games", type=int, default=None, help="number of games (default: all)")
    parser.add_argument(
        "--search-variants", type=int, default=1, help="search variants per game besides the walkthrough"
    )
    parser.add_argument("--max-detours", type=int, default=3, help="most receptacles searched before each object")
    parser.add_argument("--seed", type=int, default=0, help="game sample, detours, split, batch order, init")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="base model (preset, folder or .gguf)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    parser.add_argument("--top-layers", type=int, default=None, help="adapt only the top N layers (faster)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--eval-every", type=int, default=20, help="optimizer steps between validation passes")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="share of games held out for validation")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (resumable)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming from state.pt")


def finetune_command(args: argparse.Namespace) -> int:
    """Entry point of ``precision-router alfworld finetune``."""
    from precision_router_alfworld.data import find_games
    from precision_router_alfworld.finetune import FinetuneConfig, finetune
    from precision_router_alfworld.trajectories import expert_trajectories, read_trajectories, write_trajectories

    config = FinetuneConfig(
        base=args.base,
        rank=args.rank,
        alpha=args.alpha,
        top_layers=args.top_layers,
        lr=args.lr,
        epochs=args.epochs,
        batch_tokens=args.batch_tokens,
        eval_every=args.eval_every,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    file = args.out / "trajectories.jsonl.gz"
    if not file.exists():
        from tqdm.auto import tqdm

        games = find_games(args.data, split=args.split, n=args.games, seed=args.seed)
        played = expert_trajectories(
            tqdm(games, desc="walkthroughs", unit="game"),
            search_variants=args.search_variants,
            max_detours=args.max_detours,
            seed=args.seed,
        )
        print(f"wrote {write_trajectories(file, played)} trajectories to {file}")
    trajectories = read_trajectories(file)
    summary = finetune(trajectories, args.out, config, resume=not args.no_resume, max_steps=args.max_steps)
    print(
        f"{summary['steps']}/{summary['total_steps']} steps in {summary['seconds']:.0f} s; "
        f"validation loss {summary['final_val_loss']:.4f} (best {summary['best_val_loss']:.4f}); "
        f"adapter: {args.out / 'adapter'}"
    )
    return 0


DEFAULT_POLICIES = ("high", "low", "random:0.2", "random:0.4", "random:0.6", "random:0.8")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``precision-router eval`` (also ``precision-router alfworld eval``)."""
    add_agent_arguments(parser)
    parser.add_argument(
        "--policies",
        nargs="+",
        default=list(DEFAULT_POLICIES),
        help="policy specs; also calibrated:<spec>:<share> and oracle-kl:<share> (threshold set on "
        "--calibration-traces), oracle-disagree",
    )
    parser.add_argument("--calibration-traces", type=Path, help="traces (collect-kl) to calibrate thresholds on")
    parser.add_argument("--traces", type=Path, default=Path("runs/eval.jsonl"), help="episodes (resumable cache)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval-report.md"), help="Markdown report (+ .png plot)")
    add_rollout_arguments(parser)


def add_grpo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``precision-router train-grpo``."""
    add_agent_arguments(parser)
    parser.set_defaults(split="train", games=30)
    parser.add_argument(
        "--router",
        choices=("sequence", "aggregate"),
        default="sequence",
        help="sequence: the paper's router over step embeddings; aggregate: a TRIM-Agg-style network over "
        "the low model's signals and the episode so far (serve it as aggregate:<out>)",
    )
    parser.add_argument(
        "--init", type=Path, help="checkpoint to start from (KL-ST for --router sequence; omit for GRPO-only)"
    )
    parser.add_argument("--out", type=Path, required=True, help="router checkpoint to write")
    parser.add_argument("--traces", type=Path, default=Path("runs/grpo.jsonl"), help="rollouts (for resuming)")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--tasks-per-iteration", type=int, default=3)
    parser.add_argument("--lambda-high", type=float, default=0.02)
    parser.add_argument("--lambda-step", type=float, default=0.0)
    parser.add_argument("--beta", type=float, default=0.02)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument(
        "--references",
        nargs="*",
        default=[],
        help="reference policies whose returns join each group's baseline (e.g. low random:0.2)",
    )
    add_rollout_arguments(parser)


def train_grpo_command(args: argparse.Namespace) -> int:
    """Entry point of ``precision-router train-grpo``: GRPO with ALFWorld rollouts."""
    validation.check_grpo_args(args)
    from precision_router import JsonlTraceStore
    from precision_router.routing.encoder import StepEncoder
    from precision_router.training.grpo import GRPOConfig, train_grpo
    from precision_router_alfworld.rollouts import Job, RolloutError

    options = AgentOptions.of(args)
    games = {g.name: g for g in resolve_games(options)}
    store = JsonlTraceStore(args.traces)
    engine = _engine(args, options)

    def run_key(router, iteration, sample):  # type: ignore[no-untyped-def]
        if sample >= 0:
            return f"grpo|{args.out.name}|it{iteration}|s{sample}"
        # a reference policy; a fixed one plays each game the same way every iteration
        fixed = router.name in ("low", "high")
        return f"grpo-ref|{router.name}" + ("" if fixed else f"|{args.out.name}|it{iteration}")

    def rollout_many(requests):  # type: ignore[no-untyped-def]
        jobs = [Job(games[task], run_key(router, it, sample), router) for router, task, it, sample in requests]
        results = engine.play_jobs(jobs, store=store, desc=f"GRPO iteration {requests[0][2] + 1}" if jobs else "")
        failed = [f"{r.job.game.name} ({r.error})" for r in results if r.episode is None]
        if failed:
            msg = f"GRPO rollouts failed: {'; '.join(failed)}; rerun to resume from the last finished iteration"
            raise RolloutError(msg)
        return [r.episode for r in results]

    def rollout(router, task, iteration, sample):  # type: ignore[no-untyped-def]
        return rollout_many([(router, task, iteration, sample)])[0]

    config = GRPOConfig(
        group_size=args.group_size,
        iterations=args.iterations,
        tasks_per_iteration=args.tasks_per_iteration,
        lambda_high=args.lambda_high,
        lambda_step=args.lambda_step,
        beta=args.beta,
        lr=args.lr,
        seed=args.seed,
    )
    from precision_router.routing.spec import router_from_spec

    references = [router_from_spec(spec, seed=args.seed) for spec in args.references]
    with engine:
        result = train_grpo(
            rollout,
            sorted(games),
            args.out,
            encoder=StepEncoder() if args.router == "sequence" else None,
            kind=args.router,
            init=args.init,
            config=config,
            references=references,
            rollout_many=rollout_many,
        )
    for row in result.history:
        print(
            f"iteration {int(row['iteration']):3d}: success {row['success']:.2f}, high share {row['high_share']:.2f}, "
            f"return {row['return']:.3f}, KL to start {row['kl']:.4f}"
        )
    print(f"GRPO router -> {result.checkpoint}" + (f"; curves: {result.plot}" if result.plot else ""))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``precision-router alfworld eval``: every policy on the same games, one report."""
    validation.check_eval_args(args)
    from precision_router import JsonlTraceStore
    from precision_router.evaluation.report import paired_table, plot_frontier, report_table

    options = AgentOptions.of(args)
    games = resolve_games(options)
    store = JsonlTraceStore(args.traces)
    calibration = JsonlTraceStore(args.calibration_traces).read() if args.calibration_traces else None
    results = []
    runs = []
    calibrated_on = file_digest(args.calibration_traces) if args.calibration_traces else None
    with _engine(args, options) as engine:
        for spec in args.policies:
            result = _eval_policy(args, engine, options, spec, calibration, calibrated_on, games, store)
            if result is None:
                return 2
            runs.append(result[1])
            results.append(result[0])
    table = report_table(results)
    paired = paired_table(results)
    if paired:
        table += "\n\nPaired comparisons on the same games (S difference, its paired standard error):\n\n" + paired
    plot = plot_frontier(results, args.out.with_suffix(".png"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    precisions = " / ".join(options.ladder) if options.ladder else f"{args.high} vs {args.low}"
    header = (
        f"# Evaluation: {len(games)} {args.split} games, {args.model} ({precisions}), {args.mode} mode, "
        f"max {args.max_steps} steps, seed {args.seed}"
        + (f" (the first {args.skip} games of the seeded order left out)" if args.skip else "")
        + "\n\n"
    )
    args.out.write_text(header + table + f"\n\n![success vs share]({plot.name})\n")
    print(table)
    print(f"report: {args.out}; plot: {plot}")
    return _report_failures(runs)


def _eval_policy(
    args: argparse.Namespace,
    engine: RolloutEngine,
    options: AgentOptions,
    spec: str,
    calibration: list[Episode] | None,
    calibrated_on: str | None,
    games: list[GameInfo],
    store: TraceStore,
) -> tuple[PolicyResult, RunResult] | None:
    """One policy of ``eval`` played on the engine (``None``: a calibrated policy without traces)."""
    from precision_router.evaluation.calibration import calibrated
    from precision_router.evaluation.report import PolicyResult
    from precision_router.routing.spec import router_from_spec

    label = spec
    router: Router
    if spec.startswith("oracle-kl:"):  # the KL oracle at a share: its threshold set on the traces
        spec = f"calibrated:oracle-kl@0:{spec.removeprefix('oracle-kl:')}"
    if spec.startswith("calibrated:"):
        base, _, share = spec.removeprefix("calibrated:").rpartition(":")
        if calibration is None:
            print("calibrated policies need --calibration-traces", file=sys.stderr)
            return None
        scored = calibrated(router_from_spec(base, seed=args.seed), calibration, float(share))
        router, threshold = scored, scored.threshold
        logger.info("%s: threshold %.4g for a %s high share", spec, threshold, share)
        key = policy_key(spec, router, calibrated_on)
        label = f"{spec} (t={threshold:.3g})"
    else:
        router = router_from_spec(spec, seed=args.seed)
        key = policy_key(spec, router)
    result = engine.play(router, games, run=run_name(options, key), store=store)
    print(result.summary_line(), flush=True)
    outcomes = {e.info.get("game", e.task): bool(e.success) for e in result.episodes}
    return PolicyResult(label, result.metrics, outcomes), result


def add_collect_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``precision-router collect-kl``."""
    add_agent_arguments(parser)
    parser.set_defaults(split="train")
    parser.add_argument("--traces", type=Path, default=Path("runs/kl.jsonl"))
    parser.add_argument("--no-resume", action="store_true", help="replay games already in the trace file")
    add_rollout_arguments(parser)


def add_counterfactual_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``precision-router collect-counterfactual``."""
    add_agent_arguments(parser)
    parser.set_defaults(split="train")
    parser.add_argument("--base", default="low", help="base policy the branches deviate from (low, random:P)")
    parser.add_argument("--branches", type=int, default=6, help="steps branched per game (sampled; 0: every step)")
    parser.add_argument("--window", type=int, default=1, help="consecutive steps each branch plays high")
    parser.add_argument("--traces", type=Path, default=Path("runs/counterfactual.jsonl"))
    add_rollout_arguments(parser)


def collect_counterfactual(args: argparse.Namespace) -> int:
    """Entry point of ``precision-router collect-counterfactual``: outcome-grounded step labels.

    Per game: the base policy plays an episode; at sampled steps a branch replays it with that
    step (or window) on the high model; the base episode is stored with each branched step's
    ``info["counterfactual"]`` and every branch with ``info["branch_of"]``. Resumable: games whose
    labelled base episode is in the trace file are skipped.
    """
    validation.check_counterfactual_args(args)
    import functools

    from precision_router import JsonlTraceStore
    from precision_router.routing.spec import router_from_spec
    from precision_router_alfworld.counterfactual import CounterfactualGame, LabelledGame, label_game

    if args.mode != "score":
        print("collect-counterfactual needs --mode score (a deterministic agent)", file=sys.stderr)
        return 2
    options = AgentOptions.of(args)
    games = resolve_games(options)
    store = JsonlTraceStore(args.traces)
    base = router_from_spec(args.base, seed=args.seed)
    run = run_name(options, f"cf-{args.base}-w{args.window}")
    done = {e.info.get("game") for e in store if e.info.get("run") == run}
    spec = CounterfactualGame(base, run, seed=args.seed, branches=args.branches, window=args.window)
    todo = [g for g in games if g.name not in done]
    counts = {"helped": 0, "labelled": 0}

    def write(game: GameInfo, labelled: LabelledGame) -> None:
        for branch in labelled.branches:
            store.append(branch)
        store.append(labelled.episode)
        counts["helped"] += labelled.helped
        counts["labelled"] += labelled.labelled

    with _engine(args, options) as engine:
        failed = engine.map(functools.partial(label_game, spec), todo, on_result=write, desc="counterfactual")
    print(
        f"{counts['labelled']} steps labelled on {len(todo) - len(failed)} new games; going high helped on "
        f"{counts['helped']}; traces: {args.traces}"
    )
    for name, error in failed.items():
        print(f"{run}: {name} failed: {error}", file=sys.stderr)
    return 1 if failed else 0


def collect(args: argparse.Namespace) -> int:
    """Entry point of ``precision-router collect-kl``: the high model acts; both precisions score every step."""
    validation.check_collect_args(args)
    if args.mode != "score":
        print("collect-kl needs --mode score (distributions over the admissible commands)", file=sys.stderr)
        return 2
    options = AgentOptions.of(args)
    name = "collect-kl|" + run_name(options, "high")
    return _play(args, options, "high", args.traces, name, score_both=True, resume=not args.no_resume)


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        msg = f"--shard must be K/N with 1 <= K <= N, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return shard


def run(args: argparse.Namespace) -> int:
    """Entry point of ``precision-router alfworld``."""
    validation.check_alfworld_args(args)
    if args.alfworld_command == "generate":
        from precision_router_alfworld.generate import generate_games

        games = generate_games(
            args.out_dir, args.n, seed=args.seed, task_types=args.task_types, difficulty=args.difficulty
        )
        print(f"wrote {len(games)} games under {args.out_dir}")
        return 0
    if args.alfworld_command == "eval":
        return evaluate(args)
    if args.alfworld_command == "finetune":
        return finetune_command(args)
    options = AgentOptions.of(args)
    return _play(
        args,
        options,
        args.policy,
        args.traces,
        args.run_name,
        score_both=args.score_both,
        resume=not args.no_resume,
        print_steps=args.print_steps,
    )


def _play(
    args: argparse.Namespace,
    options: AgentOptions,
    policy: str,
    traces: Path,
    name: str | None,
    *,
    score_both: bool = False,
    resume: bool = True,
    print_steps: int = 0,
) -> int:
    """Play the selected games with one policy (``alfworld run``, ``collect-kl``) and print the summary."""
    from precision_router import JsonlTraceStore
    from precision_router.routing.spec import router_from_spec
    from precision_router_alfworld.runner import progress_measures

    games = resolve_games(options)
    store = JsonlTraceStore(traces)
    router = router_from_spec(policy, seed=options.seed)
    name = name or run_name(options, policy_key(policy, router))
    shown = 0

    def show(game, episode) -> None:  # type: ignore[no-untyped-def]
        nonlocal shown
        if shown >= print_steps:
            return
        shown += 1
        print(f"\n{game.name} ({game.task_type}) — {'won' if episode.success else 'lost'}", file=sys.stderr)
        for step in episode.steps:
            p = f"{step.p_high:.2f}" if step.p_high is not None else "  - "
            print(f"  {step.index:2d} {step.rung or step.route:8s} p_high={p}  {step.action}", file=sys.stderr)

    with _engine(args, options, score_both=score_both) as engine:
        result = engine.play(router, games, run=name, store=store, resume=resume, on_episode=show)
    print(result.summary_line())
    measures = progress_measures(result.episodes)
    print(
        f"took something in {measures['took_something']:.2f} of games; A-B-A-B loop share {measures['loop_share']:.2f}"
    )
    print(f"traces: {traces}")
    return _report_failures([result])


# -- the subcommands this package registers with ``precision-router`` (entry-point group
# ``precision_router.commands`` in pyproject.toml) ---------------------------------------------
ALFWORLD_COMMAND = Command("run the routed ReAct agent on ALFWorld games", add_arguments, run)
TRAIN_GRPO_COMMAND = Command(
    "refine a router with GRPO on ALFWorld rollouts (from a KL-ST checkpoint, or fresh)",
    add_grpo_arguments,
    train_grpo_command,
)
COLLECT_KL_COMMAND = Command(
    "roll out ALFWorld games with the high model acting and record both precisions' KL per step",
    add_collect_arguments,
    collect,
)
COLLECT_COUNTERFACTUAL_COMMAND = Command(
    "label ALFWorld steps by what playing them on the high model changes (replayed branches)",
    add_counterfactual_arguments,
    collect_counterfactual,
)
EVAL_COMMAND = Command(
    "run several routing policies on the same ALFWorld games; report S, c, GHC, PGR, CPT and the plot",
    add_eval_arguments,
    evaluate,
)
