"""``precision-router <subcommand>``: the command-line interface.

Built-in subcommands are in :data:`COMMANDS`; installed packages add theirs through the
``precision_router.commands`` entry-point group (the ALFWorld integration registers ``alfworld``,
``eval``, ``collect-kl``, ... that way; the core never imports an integration). Each command has
``add_arguments(parser)`` and ``run(args) -> int``. Only this module configures logging handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "ENTRY_POINT_GROUP", "Command", "all_commands", "build_parser", "main", "plugin_commands"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Command:
    """A CLI subcommand."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepare", metavar="PRESET", help="export a preset and build its low copy now")
    parser.add_argument("--low", default="gptq-3bit", help="precision of the low copy to prepare")


def _run_models(args: argparse.Namespace) -> int:
    from precision_router.arguments import check_models_args
    from precision_router.models.presets import all_presets

    check_models_args(args)

    if args.prepare:
        from precision_router.models.pair import load_precision_pair

        high, low = load_precision_pair(args.prepare, low=args.low)
        print(f"ready: {high.model_name} and {low.model_name}")
        return 0
    for preset in all_presets().values():
        print(f"{preset.name:32s} {preset.description}")
    return 0


def _add_train_klst(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", type=Path, help="JSONL trace files with per-step KL (collect-kl)")
    parser.add_argument("--out", type=Path, required=True, help="router checkpoint to write (plots go beside it)")
    parser.add_argument("--tau", type=float, default=0.85, help="empirical-CDF threshold for 'needs high'")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-steps", type=int, default=32, help="L_max: steps of history the router reads")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default=None, help="sentence-transformers model (default all-MiniLM-L6-v2)")
    parser.add_argument("--all-episodes", action="store_true", help="also learn from failed episodes")
    parser.add_argument(
        "--labels",
        choices=["kl", "disagree", "counterfactual"],
        default="kl",
        help="what labels a step 'needs high': top KL (the paper), the precisions' top candidates differ, "
        "or going high there wins a lost game (collect-counterfactual traces)",
    )
    parser.add_argument(
        "--signals",
        action="store_true",
        help="the router also reads the low model's signals at the step (entropy, margin, loops, step), "
        "as the probe does; the traces must record the low model's scores",
    )


def _run_train_klst(args: argparse.Namespace) -> int:
    from precision_router.arguments import check_train_klst_args
    from precision_router.routing.encoder import DEFAULT_ENCODER, StepEncoder
    from precision_router.routing.network import RouterConfig
    from precision_router.routing.probe import FEATURES
    from precision_router.traces.store import read_trace_files
    from precision_router.training.klst import KLSTConfig, train_klst

    check_train_klst_args(args)
    episodes = read_trace_files(args.traces)
    config = KLSTConfig(
        tau=args.tau,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        successful_only=not args.all_episodes,
        router=RouterConfig(max_steps=args.max_steps, n_signals=len(FEATURES) if args.signals else 0),
        labels=args.labels,
    )
    result = train_klst(episodes, args.out, encoder=StepEncoder(args.encoder or DEFAULT_ENCODER), config=config)
    print(result.summary())
    for plot in result.plots:
        print(f"  plot: {plot}")
    return 0


def _add_train_probe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("traces", nargs="+", type=Path, help="JSONL traces with labelled steps")
    parser.add_argument("--out", type=Path, required=True, help="probe file to write (JSON)")
    parser.add_argument(
        "--labels",
        choices=["counterfactual", "kl", "disagree", "uplift"],
        default="counterfactual",
        help="what labels a step; uplift: the outcomes of random-policy episodes, weighted by the routes' "
        "probabilities (what going high is worth; no 0/1 label)",
    )
    parser.add_argument("--tau", type=float, default=0.85, help="with --labels kl: empirical-CDF threshold")
    parser.add_argument("--seed", type=int, default=0)


def _run_train_uplift_probe(args: argparse.Namespace, episodes: list[Any]) -> int:
    from precision_router.routing.probe import FEATURES, train_uplift_probe
    from precision_router.training.labels import uplift_records

    records, effects = uplift_records(episodes)
    states = [r.state for r in records]
    probe = train_uplift_probe(states, effects)
    if not all(s.extras.get("low_logprobs") for s in states):
        print(
            "the low model's signals are missing on some steps (high steps of a random policy are scored by the high "
            "model only): the probe reads the history and the step index only"
        )
    probe.save(args.out)
    weights = ", ".join(f"{f} {w:+.2f}" for f, w in zip(FEATURES, probe.weights, strict=True) if w)
    print(
        f"uplift probe trained on {len(states)} steps of random-policy episodes; weights (standardised): {weights}; "
        f"wrote {args.out} (calibrate it: calibrated:probe:{args.out}:<share>)"
    )
    return 0


def _run_train_probe(args: argparse.Namespace) -> int:
    from precision_router.arguments import check_train_probe_args
    from precision_router.routing.probe import train_probe
    from precision_router.traces.store import read_trace_files
    from precision_router.training.labels import labelled_states

    check_train_probe_args(args)
    episodes = read_trace_files(args.traces)
    if args.labels == "uplift":
        return _run_train_uplift_probe(args, episodes)
    states, labels = labelled_states(episodes, args.labels, tau=args.tau)
    probe = train_probe(states, labels, seed=args.seed)
    probe.save(args.out)
    share = sum(probe.decide(s).route == "high" for s in states) / len(states)
    print(
        f"probe trained on {len(states)} steps ({sum(labels)} labelled high); routes {share:.3f} of them high "
        f"at threshold {probe.threshold:g}; wrote {args.out} (calibrate it: calibrated:probe:{args.out}:<share>)"
    )
    return 0


def _add_calibrate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", nargs="+", type=Path, required=True, help="traces to calibrate on (collect-kl)")
    parser.add_argument("--policy", required=True, help="learned:<checkpoint.pt>, entropy@0 or margin@0")
    parser.add_argument("--target-share", type=float, required=True, help="share of steps to route high")


def _run_calibrate(args: argparse.Namespace) -> int:
    from precision_router.arguments import check_calibrate_args
    from precision_router.evaluation.calibration import calibrated, policy_scores
    from precision_router.routing.spec import router_from_spec
    from precision_router.traces.store import read_trace_files

    check_calibrate_args(args)
    episodes = read_trace_files(args.traces)
    router = calibrated(router_from_spec(args.policy), episodes, args.target_share)
    threshold = router.threshold
    scores = policy_scores(router, episodes)
    share = sum(s >= threshold for s in scores) / len(scores)
    print(f"threshold {threshold:.6g}: routes {share:.3f} of {len(scores)} recorded steps high")
    print(f"policy: {router.name}")
    return 0


COMMANDS: dict[str, Command] = {
    "models": Command("list model presets, or prepare one (--prepare)", _add_models, _run_models),
    "train-klst": Command("train a router from KL-labelled traces (KL-ST)", _add_train_klst, _run_train_klst),
    "train-probe": Command(
        "train a probe router on labelled steps (counterfactual, KL, disagreement or uplift labels)",
        _add_train_probe,
        _run_train_probe,
    ),
    "calibrate": Command(
        "choose a policy threshold that hits a target high-precision share", _add_calibrate, _run_calibrate
    ),
}


ENTRY_POINT_GROUP = "precision_router.commands"
"""Entry-point group through which installed packages add subcommands: each entry point names a
:class:`Command`, and its name is the subcommand's (``[project.entry-points."precision_router.commands"]``)."""


def plugin_commands() -> dict[str, Command]:
    """Subcommands that installed packages register under :data:`ENTRY_POINT_GROUP`.

    A plugin that fails to load, or whose entry point is not a :class:`Command`, is skipped with
    a warning; it never shadows a built-in command.
    """
    from importlib.metadata import entry_points

    found: dict[str, Command] = {}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if entry.name in COMMANDS:
            logger.warning("plugin command %r (%s) shadows a built-in command; ignored", entry.name, entry.value)
            continue
        try:
            command = entry.load()
        except Exception as exc:  # a broken plugin must not break the commands that work
            logger.warning("could not load command %r from %s: %s", entry.name, entry.value, exc)
            continue
        if not isinstance(command, Command):
            logger.warning(
                "entry point %r (%s) is not a precision_router.cli.Command; ignored", entry.name, entry.value
            )
            continue
        found[entry.name] = command
    return found


def all_commands() -> dict[str, Command]:
    """The built-in subcommands and those installed packages register."""
    return {**COMMANDS, **plugin_commands()}


def build_parser(commands: Mapping[str, Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand (``commands``: default :func:`all_commands`)."""
    from precision_router import __version__

    parser = argparse.ArgumentParser(prog="precision-router", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"precision-router {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in (all_commands() if commands is None else commands).items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    commands = all_commands()
    args = build_parser(commands).parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "gptqmodel", "transformers", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    from precision_router.errors import PrecisionRouterError

    try:
        return commands[args.command].run(args)
    except PrecisionRouterError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
