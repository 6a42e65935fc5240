"""Checks of the ALFWorld commands' arguments, run before any game, model or checkpoint loads.

Each entry point of :mod:`precision_router_alfworld.cli` calls one function here first; a bad value
raises :class:`~precision_router.errors.InvalidArgumentError`, which the CLI prints as one line
and exit status 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from precision_router.arguments import (
    check_count,
    check_file,
    check_policy,
    check_precision,
    check_share,
    check_trace_inputs,
    check_trace_output,
    fail,
)

__all__ = [
    "check_agent_args",
    "check_alfworld_args",
    "check_collect_args",
    "check_counterfactual_args",
    "check_eval_args",
    "check_grpo_args",
    "check_task_types",
]


def check_task_types(task_types: list[str] | None) -> None:
    """Every ``--task-types`` value is one of ALFWorld's six task types."""
    from precision_router_alfworld.data import TASK_TYPES

    unknown = [t for t in task_types or () if t not in TASK_TYPES]
    if unknown:
        fail(f"--task-types: unknown task type {unknown[0]!r}; choose from {', '.join(TASK_TYPES)}")


def check_agent_args(args: argparse.Namespace) -> None:
    """Arguments shared by every command that runs the agent."""
    check_task_types(args.task_types)
    backend = getattr(args, "backend", "torch")
    check_precision(args.low, "--low", backend=backend)
    check_precision(args.high, "--high", high=True, backend=backend)
    check_count(args.games, "--games")
    check_count(getattr(args, "skip", 0), "--skip", minimum=0)
    check_count(args.max_steps, "--max-steps")
    check_count(args.fewshot, "--fewshot", minimum=0)
    if args.data and not Path(args.data).is_dir():
        fail(f"--data: {args.data} is not a folder; give the ALFWorld data folder (or omit it for generated games)")
    workers = getattr(args, "workers", None)
    if isinstance(workers, int):
        check_count(workers, "--workers")


def check_alfworld_args(args: argparse.Namespace) -> None:
    """``precision-router alfworld run|generate`` (``eval`` and ``finetune`` check their own)."""
    if args.alfworld_command == "generate":
        check_task_types(args.task_types)
        check_count(args.n, "-n")
    elif args.alfworld_command == "run":
        check_agent_args(args)
        check_policy(args.policy)
        check_trace_output(args.traces)
        check_count(args.print_steps, "--print-steps", minimum=0)


def check_eval_args(args: argparse.Namespace) -> None:
    """``precision-router eval``: every policy, calibrated ones included, before the models load."""
    check_agent_args(args)
    needs_calibration = False
    for spec in args.policies:
        if spec.startswith("oracle-kl:"):
            _check_share_text(spec.removeprefix("oracle-kl:"), spec)
            needs_calibration = True
        elif spec.startswith("calibrated:"):
            base, _, share = spec.removeprefix("calibrated:").rpartition(":")
            if not base:
                fail(f"--policies {spec!r}: write calibrated:<policy>:<share>, e.g. calibrated:entropy@0:0.3")
            check_policy(base, f"--policies {spec!r}:", scoring=True)
            _check_share_text(share, spec)
            needs_calibration = True
        else:
            check_policy(spec, "--policies")
    if args.calibration_traces is not None:
        check_trace_inputs([args.calibration_traces], "--calibration-traces")
    elif needs_calibration:
        fail("calibrated policies need --calibration-traces (traces recorded by collect-kl)")
    check_trace_output(args.traces)
    check_trace_output(args.out, "--out")


def check_grpo_args(args: argparse.Namespace) -> None:
    """``precision-router train-grpo``."""
    check_agent_args(args)
    if args.init is not None:
        hint = (
            "give an aggregate router written by an earlier train-grpo --router aggregate, or omit it"
            if args.router == "aggregate"
            else "give a KL-ST checkpoint (precision-router train-klst), or omit it"
        )
        check_file(args.init, "--init", hint)
    check_trace_output(args.out, "--out")
    check_trace_output(args.traces)
    check_count(args.group_size, "--group-size", minimum=2)
    check_count(args.iterations, "--iterations")
    check_count(args.tasks_per_iteration, "--tasks-per-iteration")
    for spec in args.references:
        check_policy(spec, "--references")


def check_collect_args(args: argparse.Namespace) -> None:
    """``precision-router collect-kl``."""
    check_agent_args(args)
    check_trace_output(args.traces)


def check_counterfactual_args(args: argparse.Namespace) -> None:
    """``precision-router collect-counterfactual``."""
    check_agent_args(args)
    check_policy(args.base, "--base")
    check_count(args.window, "--window")
    check_count(args.branches, "--branches", minimum=0)
    check_trace_output(args.traces)


def _check_share_text(text: str, spec: str) -> None:
    try:
        value = float(text)
    except ValueError:
        fail(f"--policies {spec!r}: the share {text!r} is not a number; write e.g. calibrated:entropy@0:0.3")
    check_share(value, f"--policies {spec!r}: the share")
