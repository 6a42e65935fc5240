"""Which steps decide an episode? What one high-precision step is worth, by step position.

Random routing is a randomised experiment: at each step of an episode played by ``random:<p>``
(:class:`~precision_router.routing.RandomRouter`) the route was drawn with probability ``p``,
independently of the game and of every earlier step. Among the episodes still running at step
``t``, the success rate of those whose step ``t`` went high minus that of those whose step ``t``
went low therefore estimates what one high step at ``t`` is worth, with no model of the task.

:func:`step_uplift` pools that difference over a bucket of step positions and over the random
policies (inverse-variance weights, within each policy, so a policy that routes more steps high
elsewhere does not confound it) and bootstraps its standard error over tasks (the policies play
the same tasks, and an episode has several steps in a bucket). Traces that users already collect
with a random router answer where a router should spend its budget.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from precision_router.errors import EmptyTraceSetError
from precision_router.traces.schema import Episode

__all__ = ["UpliftRow", "step_uplift"]

logger = logging.getLogger(__name__)

_MIN_STEPS = 5  # a policy with fewer high (or low) steps in a bucket says nothing there


@dataclass(frozen=True)
class UpliftRow:
    """One bucket of step positions ``[start, stop)``.

    Attributes:
        effect: success with the step high minus success with it low (a fraction; ``None`` when no
            policy has both routes at least 5 times in the bucket).
        se: its bootstrap standard error over tasks (``nan`` without an effect).
        steps: steps of the random episodes in the bucket; ``high``: of which routed high.
    """

    start: int
    stop: int
    effect: float | None
    se: float
    steps: int
    high: int


# per (policy, task): per bucket [wins when high, high steps, wins when low, low steps]
_Cells = dict[tuple[str, str], dict[int, list[float]]]


def _task_of(episode: Episode) -> str:
    return str(episode.info.get("game") or episode.task or episode.conversation_id)


def _cells(episodes: Sequence[Episode], edges: Sequence[int]) -> _Cells:
    cells: _Cells = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0.0, 0.0]))
    for episode in episodes:
        won = float(bool(episode.success))
        per_bucket = cells[(episode.policy, _task_of(episode))]
        for t, step in enumerate(episode.steps[edges[0] : edges[-1]], start=edges[0]):
            row = per_bucket[bisect.bisect_right(edges, t) - 1]
            offset = 0 if step.route == "high" else 2
            row[offset] += won
            row[offset + 1] += 1
    return cells


def _pooled(cells: _Cells, keys: Sequence[tuple[str, str]], bucket: int) -> float | None:
    by_policy: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for key in keys:
        for i, value in enumerate(cells[key][bucket]):
            by_policy[key[0]][i] += value
    num = den = 0.0
    for wins_high, n_high, wins_low, n_low in by_policy.values():
        if n_high < _MIN_STEPS or n_low < _MIN_STEPS:
            continue
        p_high, p_low = wins_high / n_high, wins_low / n_low
        variance = max(p_high * (1 - p_high) / n_high + p_low * (1 - p_low) / n_low, 1e-6)
        num += (p_high - p_low) / variance
        den += 1 / variance
    return num / den if den else None


def step_uplift(
    episodes: Sequence[Episode],
    edges: Sequence[int] = (0, 2, 5, 10, 20, 50),
    *,
    bootstrap: int = 500,
    seed: int = 0,
) -> list[UpliftRow]:
    """The effect of one high step on success, per bucket ``[edges[i], edges[i+1])`` of step positions.

    Only episodes of ``random:<p>`` policies with a known outcome are used (any other router's
    routes depend on the state, so comparing its high and low steps compares different states).

    Raises:
        EmptyTraceSetError: no random-policy episode with an outcome.
        ValueError: fewer than two edges, or a negative or repeated edge.
    """
    edges = list(edges)
    if len(edges) < 2 or edges != sorted(set(edges)) or edges[0] < 0:
        msg = f"edges must be at least two increasing non-negative step positions, got {edges}"
        raise ValueError(msg)
    if bootstrap < 2:
        msg = f"bootstrap must be at least 2 resamples, got {bootstrap}"
        raise ValueError(msg)
    randomised = [e for e in episodes if e.policy.startswith("random:") and e.success is not None]
    if not randomised:
        msg = (
            f"none of the {len(episodes)} episodes was played by a random:<p> policy with a known outcome: "
            "the estimate needs randomised routes (play some with `--policies random:0.2`)"
        )
        raise EmptyTraceSetError(msg)
    cells = _cells(randomised, edges)
    keys = sorted(cells)
    by_task: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in keys:
        by_task[key[1]].append(key)
    tasks = sorted(by_task)
    logger.info("step uplift from %d random-policy episodes on %d tasks", len(randomised), len(tasks))
    rng = random.Random(seed)
    rows = []
    for bucket in range(len(edges) - 1):
        effect = _pooled(cells, keys, bucket)
        draws = []
        for _ in range(bootstrap):
            sample = [k for task in (rng.choice(tasks) for _ in tasks) for k in by_task[task]]
            value = _pooled(cells, sample, bucket)
            if value is not None:
                draws.append(value)
        se = statistics.stdev(draws) if effect is not None and len(draws) > 1 else math.nan
        high = sum(int(cells[k][bucket][1]) for k in keys)
        rows.append(
            UpliftRow(
                edges[bucket], edges[bucket + 1], effect, se, high + sum(int(cells[k][bucket][3]) for k in keys), high
            )
        )
    return rows
