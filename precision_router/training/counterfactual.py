"""Outcome-grounded step labels: what playing one step (or a window) on the high model changes.

KL between the precisions says how much they disagree at a step, not whether the disagreement
decides the episode. In a deterministic setting (score mode: the agent and the game are
deterministic) a step's value can be measured instead: play the episode with a base policy,
then, for a step ``t``, play it again with the same policy except that steps ``t .. t+w-1`` run
high. The prefix replays exactly; the label is the change in success (and in steps taken).

The environment is abstracted as ``play(router) -> Episode``: one episode of one fixed task
played with ``router``. It must be deterministic given the router's decisions and give every
call the same conversation id (a seeded :class:`~precision_router.RandomRouter` base draws by
conversation and step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from precision_router.routing.base import RouteDecision, Router, RoutingState, scores_needed
from precision_router.traces.schema import Episode

__all__ = ["INFO_KEY", "BranchRouter", "CounterfactualLabel", "counterfactual_labels", "label_of"]

logger = logging.getLogger(__name__)

INFO_KEY = "counterfactual"
"""Key in ``Step.info`` under which a labelled base episode stores each step's label."""


class BranchRouter:
    """``base``'s decisions, except that steps ``start .. start + window - 1`` go high.

    The scores ``base`` reads (``needs_scores``) pass through, so an agent gives it the same
    inputs it gives the base.
    """

    version: str | None = None

    def __init__(self, base: Router, start: int, window: int = 1) -> None:
        if start < 0 or window < 1:
            msg = f"a branch needs start >= 0 and window >= 1, got {start} and {window}"
            raise ValueError(msg)
        self.base, self.start, self.window = base, start, window
        self.name = f"{base.name}+high@{start}" + (f"x{window}" if window > 1 else "")

    @property
    def needs_scores(self) -> tuple[str, ...]:
        """The base's (an agent gives the branch the same inputs)."""
        return scores_needed(self.base)

    def decide(self, state: RoutingState) -> RouteDecision:
        """High inside the window; the base's decision elsewhere."""
        if self.start <= state.step_index < self.start + self.window:
            return RouteDecision("high", 1.0)
        return self.base.decide(state)


@dataclass(frozen=True)
class CounterfactualLabel:
    """The outcome of one branch against its base episode."""

    step: int
    window: int
    base_success: bool
    branch_success: bool
    base_steps: int
    branch_steps: int

    @property
    def delta_success(self) -> int:
        """+1: going high here wins a lost episode; -1: it loses a won one; 0: no change."""
        return int(self.branch_success) - int(self.base_success)

    @property
    def delta_steps(self) -> int:
        """Steps the branch took minus steps the base took (negative: it finished sooner)."""
        return self.branch_steps - self.base_steps

    def as_info(self) -> dict[str, int]:
        """What is stored in ``Step.info[INFO_KEY]``."""
        return {"delta_success": self.delta_success, "delta_steps": self.delta_steps, "window": self.window}


def counterfactual_labels(
    play: Callable[[Router], Episode],
    base: Router,
    *,
    steps: Iterable[int] | None = None,
    window: int = 1,
    on_branch: Callable[[Episode], None] | None = None,
) -> tuple[Episode, list[CounterfactualLabel]]:
    """Label steps of ``base``'s episode by what going high there changes.

    Args:
        play: plays the task once with a router and returns the episode (deterministic).
        base: the base policy (low-only, or a seeded random policy).
        steps: which steps to branch at (default: every step of the base episode). Steps the
            base already routes high get label 0 without a replay.
        window: how many consecutive steps each branch routes high.
        on_branch: called with every branch episode (e.g. to store it as a trace).

    Returns:
        The base episode, its steps' ``info[INFO_KEY]`` set for the labelled steps, and the labels.
    """
    base_episode = play(base)
    base_steps = len(base_episode.steps)
    wanted = range(base_steps) if steps is None else sorted({t for t in steps if 0 <= t < base_steps})
    labels = []
    for t in wanted:
        span = base_episode.steps[t : t + window]
        if all(step.route == "high" for step in span):
            branch_success, branch_steps = bool(base_episode.success), base_steps
        else:
            branch = play(BranchRouter(base, t, window))
            if on_branch is not None:
                on_branch(branch)
            prefix = [s.action for s in branch.steps[:t]]
            if prefix != [s.action for s in base_episode.steps[:t]]:
                logger.warning("branch at step %d did not replay the base prefix: the play is not deterministic", t)
            branch_success, branch_steps = bool(branch.success), len(branch.steps)
        label = CounterfactualLabel(t, window, bool(base_episode.success), branch_success, base_steps, branch_steps)
        base_episode.steps[t].info[INFO_KEY] = label.as_info()
        labels.append(label)
    return base_episode, labels


def label_of(info: dict[str, Any], *, by: str = "success") -> int | None:
    """A step's binary label from its stored counterfactual: 1 when going high helps.

    ``by="success"``: the branch wins a lost episode; ``by="progress"``: it wins, or finishes
    sooner without losing. ``None`` when the step was not labelled.
    """
    record = info.get(INFO_KEY)
    if not record:
        return None
    if by == "success":
        return int(record["delta_success"] > 0)
    if by == "progress":
        return int(record["delta_success"] > 0 or (record["delta_success"] == 0 and record["delta_steps"] < 0))
    msg = f"unknown label rule {by!r}; use 'success' or 'progress'"
    raise ValueError(msg)


def labelled_steps(episodes: Sequence[Episode]) -> int:
    """How many steps of ``episodes`` carry a counterfactual label."""
    return sum(INFO_KEY in step.info for episode in episodes for step in episode.steps)
