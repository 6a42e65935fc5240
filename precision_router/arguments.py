"""Checks of command-line arguments, run before anything is loaded.

Every ``precision-router`` command (and every integration's) checks its arguments here first, so
that a bad value ends the command with exit status 2 and one line that says what to give instead,
before a model, an encoder or a checkpoint is loaded. The checks read nothing but file metadata.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from precision_router.errors import InvalidArgumentError, PolicySpecError
from precision_router.routing.spec import SCORING_KINDS, PolicySpec, parse_policy_spec

__all__ = [
    "check_calibrate_args",
    "check_count",
    "check_file",
    "check_models_args",
    "check_policy",
    "check_precision",
    "check_share",
    "check_trace_inputs",
    "check_trace_output",
    "check_train_klst_args",
    "check_train_probe_args",
    "fail",
]

_HINTS = {
    "learned": "train one with precision-router train-klst",
    "probe": "train one with precision-router train-probe",
    "aggregate": "train one with precision-router train-grpo --router aggregate",
}


def fail(message: str) -> NoReturn:
    """Raise :class:`InvalidArgumentError` with ``message`` (one line)."""
    raise InvalidArgumentError(" ".join(message.split("\n")))


def check_file(path: str | os.PathLike[str], what: str, hint: str = "") -> Path:
    """``path`` if it is an existing regular file; else fail naming ``what``."""
    file = Path(path)
    suffix = f"; {hint}" if hint else ""
    if file.is_dir():
        fail(f"{what}: {file} is a folder, not a file{suffix}")
    if not file.is_file():
        fail(f"{what}: no such file {file}{suffix}")
    return file


def check_policy(spec: str, option: str = "--policy", *, scoring: bool = False) -> PolicySpec:
    """Parse ``spec`` and check that the file it names exists (loading nothing).

    Args:
        spec: the policy spec (see :func:`~precision_router.routing.spec.router_from_spec`).
        option: the option it came from, for the message.
        scoring: the policy must have a per-step score (a threshold to calibrate).
    """
    try:
        parsed = parse_policy_spec(spec)
    except PolicySpecError as exc:
        fail(f"{option}: {exc}")
    if parsed.path is not None:
        check_file(parsed.path, f"{option} {spec!r}", _HINTS.get(parsed.kind, ""))
    if scoring and parsed.kind not in SCORING_KINDS:
        fail(
            f"{option} {spec!r} has no per-step score to calibrate; use learned:<checkpoint.pt>, "
            "probe:<probe.json>, aggregate:<router.pt>, entropy@0, margin@0 or oracle-kl@0"
        )
    return parsed


def check_share(value: float, option: str, *, open_interval: bool = False) -> float:
    """``value`` if it is a number in ``[0, 1]`` (``(0, 1)`` with ``open_interval``)."""
    low_ok = value > 0 if open_interval else value >= 0
    high_ok = value < 1 if open_interval else value <= 1
    if not (math.isfinite(value) and low_ok and high_ok):
        bounds = "strictly between 0 and 1" if open_interval else "between 0 and 1"
        fail(f"{option} must be {bounds}, got {value:g}")
    return value


def check_count(value: int | None, option: str, *, minimum: int = 1) -> None:
    """``value`` (when given) must be at least ``minimum``."""
    if value is not None and value < minimum:
        fail(f"{option} must be at least {minimum}, got {value}")


def check_trace_inputs(paths: Iterable[str | os.PathLike[str]], option: str = "traces") -> None:
    """Every trace file to read exists and is a regular file."""
    for path in paths:
        check_file(path, option, "give .jsonl trace files written by a run (collect-kl, alfworld run)")


def check_trace_output(path: str | os.PathLike[str], option: str = "--traces") -> None:
    """A file to write (traces, a checkpoint, a report) is not a folder and its parent can be a folder."""
    out = Path(path)
    if out.is_dir():
        fail(f"{option}: {out} is a folder; give a file path")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        fail(f"{option}: {parent} is a file, so {out} cannot be created; give another path")


def check_precision(value: str, option: str, *, high: bool = False, backend: str = "torch") -> None:
    """A precision name (``fp32``, ``gptq-3bit`` ...), or, for a low copy, a quantized model folder.

    With ``backend="llama.cpp"``: a GGUF rung this llama.cpp build can write (``q8_0``, ``q4_k_m``
    ...) or a ``.gguf`` file.
    """
    if backend == "llama.cpp":
        _check_gguf_rung(value, option)
        return
    from precision_router.models.quantize import parse_precision

    if not high and Path(str(value)).expanduser().is_dir():
        return
    try:
        spec = parse_precision(value)
    except ValueError as exc:
        fail(f"{option}: {exc}")
    if high and spec.method != "none":
        fail(f"{option}: the high model must be a full precision (fp32, bf16, fp16), got {value!r}")


def _check_gguf_rung(value: str, option: str) -> None:
    if str(value).endswith(".gguf"):
        check_file(value, option, "give an existing .gguf file or a rung name such as q4_k_m")
        return
    from precision_router.errors import MissingExtraError
    from precision_router.models.gguf_rungs import rung_types

    try:
        known = rung_types()
    except MissingExtraError as exc:
        fail(f"{option}: {exc}")
    if str(value).lower() not in known:
        fail(f"{option}: {value!r} is not a GGUF rung; use one of {', '.join(sorted(known))}, or a .gguf file")


# -- the core commands --------------------------------------------------------------------------


def check_models_args(args: argparse.Namespace) -> None:
    """``precision-router models``."""
    if args.prepare:
        check_precision(args.low, "--low")


def check_train_klst_args(args: argparse.Namespace) -> None:
    """``precision-router train-klst``."""
    check_trace_inputs(args.traces)
    check_trace_output(args.out, "--out")
    check_share(args.tau, "--tau", open_interval=True)
    check_count(args.epochs, "--epochs")
    check_count(args.batch_size, "--batch-size")
    check_count(args.max_steps, "--max-steps")
    if not 0 <= args.val_fraction < 1:
        fail(f"--val-fraction must be in [0, 1), got {args.val_fraction:g}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        fail(f"--lr must be a positive number, got {args.lr:g}")


def check_train_probe_args(args: argparse.Namespace) -> None:
    """``precision-router train-probe``."""
    check_trace_inputs(args.traces)
    check_trace_output(args.out, "--out")
    check_share(args.tau, "--tau", open_interval=True)


def check_calibrate_args(args: argparse.Namespace) -> None:
    """``precision-router calibrate``."""
    check_trace_inputs(args.traces, "--traces")
    check_policy(args.policy, scoring=True)
    check_share(args.target_share, "--target-share")
