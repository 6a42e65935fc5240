"""Precision ladders: K ordered precisions (rung 0 the highest), a cost each, and a random ladder policy.

A two-precision setup is the ladder ``("high", "low")`` with costs ``(1, 0)``: the cost-weighted
share of a run is then exactly the paper's high-precision share ``c``. With more rungs (fp32,
GPTQ 4-bit, GPTQ 3-bit) a router returns one rung per step, and ``c`` becomes the mean cost of
the steps relative to the top rung.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from precision_router.routing.base import RandomLadderRouter

__all__ = ["TWO_RUNGS", "PrecisionLadder", "RandomLadderRouter"]


@dataclass(frozen=True)
class PrecisionLadder:
    """Rung names from the highest precision to the lowest, with each rung's relative cost.

    Costs are relative to the top rung (``costs[0] == 1``); the default runs linearly from 1 at
    the top to 0 at the bottom, so that two rungs count steps exactly as the high-precision share.
    A route names a rung; ``"high"`` and ``"low"`` also name the top and the bottom rung, so
    every two-precision router works on any ladder.

    Args:
        names: rung names, highest precision first (at least two, distinct).
        costs: each rung's cost; normalised so that the top rung costs 1.
    """

    names: tuple[str, ...]
    costs: tuple[float, ...]

    def __init__(self, names: Sequence[str], costs: Sequence[float] | Mapping[str, float] | None = None) -> None:
        names = tuple(str(n) for n in names)
        if len(names) < 2 or len(set(names)) != len(names):
            msg = f"a precision ladder needs at least two distinct rung names, got {list(names)}"
            raise ValueError(msg)
        if costs is None:
            values = [1 - i / (len(names) - 1) for i in range(len(names))]
        elif isinstance(costs, Mapping):
            missing = [n for n in names if n not in costs]
            if missing or set(costs) - set(names):
                msg = f"costs must name every rung exactly ({list(names)}), got {sorted(costs)}"
                raise ValueError(msg)
            values = [float(costs[n]) for n in names]
        else:
            values = [float(c) for c in costs]
        if len(values) != len(names) or any(math.isnan(c) or c < 0 for c in values) or values[0] <= 0:
            msg = f"costs must be one non-negative number per rung with a positive top rung, got {values}"
            raise ValueError(msg)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "costs", tuple(c / values[0] for c in values))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def top(self) -> str:
        """The highest-precision rung (what unusable replies escalate to)."""
        return self.names[0]

    def index(self, route: str) -> int:
        """The rung a route names: a rung name, or ``"high"`` (top) / ``"low"`` (bottom)."""
        if route in self.names:
            return self.names.index(route)
        if route == "high":
            return 0
        if route == "low":
            return len(self.names) - 1
        msg = (
            f"route {route!r} names no rung of the ladder {list(self.names)}: use a rung name, "
            "or 'high' or 'low' for the top or the bottom rung"
        )
        raise ValueError(msg)

    def cost(self, route: str) -> float:
        """Relative cost of the rung ``route`` names."""
        return self.costs[self.index(route)]

    def coarse_route(self, route: str) -> str:
        """``"high"`` for the top rung, ``"low"`` for every other (the two-precision view of a step)."""
        return "high" if self.index(route) == 0 else "low"


TWO_RUNGS = PrecisionLadder(("high", "low"))
"""The two-precision ladder: ``high`` costs 1, ``low`` costs 0."""
