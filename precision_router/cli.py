"""``precision-router <subcommand>``: the command-line interface.

Subcommands register themselves in :data:`COMMANDS`; each has ``add_arguments(parser)`` and
``run(args) -> int``. Only this module configures logging handlers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "main"]


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
    from precision_router.models.presets import PRESETS

    if args.prepare:
        from precision_router.models.pair import load_precision_pair

        high, low = load_precision_pair(args.prepare, low=args.low)
        print(f"ready: {high.model_name} and {low.model_name}")
        return 0
    for preset in PRESETS.values():
        print(f"{preset.name:32s} {preset.description}")
    return 0


COMMANDS: dict[str, Command] = {
    "models": Command("list model presets, or prepare one (--prepare)", _add_models, _run_models),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from precision_router import __version__

    parser = argparse.ArgumentParser(prog="precision-router", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"precision-router {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose + 1, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "gptqmodel", "transformers", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    from precision_router.errors import PrecisionRouterError

    try:
        return COMMANDS[args.command].run(args)
    except PrecisionRouterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
