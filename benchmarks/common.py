"""Shared bits of the benchmark scripts: an ALFWorld-like prompt, timing, machine description."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata


def machine() -> str:
    """One line: CPU, cores, torch threads, library versions."""
    import os

    import torch

    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("precision-router", "torch", "transformers", "langchain-core")
    )
    return (
        f"{platform.machine()} {platform.processor() or 'cpu'}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}; {versions}; python {platform.python_version()}"
    )


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times (seconds) of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1] if 1 <= q <= 99 else ordered[-1]


ROOM = (
    "You are in the middle of a room. Looking quickly around you, you see "
    + ", ".join(f"a cabinet {i}" for i in range(1, 13))
    + ", a coffeemachine 1, a countertop 1, a countertop 2, a drawer 1, a drawer 2, a drawer 3, a fridge 1, "
    "a garbagecan 1, a microwave 1, a shelf 1, a sinkbasin 1, a stoveburner 1, and a toaster 1.\n\n"
    "Your task is to: put a clean mug in coffeemachine."
)
ACTIONS = [
    (
        "go to countertop 1",
        "You arrive at countertop 1. On the countertop 1, you see a bread 1, a knife 2, and a mug 1.",
    ),
    ("take mug 1 from countertop 1", "You pick up the mug 1 from the countertop 1."),
    ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see a spoon 1."),
    ("clean mug 1 with sinkbasin 1", "You clean the mug 1 using the sinkbasin 1."),
    ("go to coffeemachine 1", "You arrive at coffeemachine 1. On the coffeemachine 1, you see nothing."),
]
CANDIDATES = [f"go to cabinet {i}" for i in range(1, 13)] + [
    "go to coffeemachine 1",
    "go to countertop 2",
    "go to drawer 1",
    "go to drawer 2",
    "go to drawer 3",
    "go to fridge 1",
    "go to garbagecan 1",
    "go to microwave 1",
    "go to shelf 1",
    "go to sinkbasin 1",
    "go to stoveburner 1",
    "go to toaster 1",
    "examine countertop 1",
    "take bread 1 from countertop 1",
    "take knife 2 from countertop 1",
    "take mug 1 from countertop 1",
    "inventory",
    "look",
]
