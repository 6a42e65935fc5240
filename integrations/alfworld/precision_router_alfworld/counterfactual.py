"""Counterfactual step labels for one ALFWorld game, as a rollout worker computes them (``collect-counterfactual``).

:func:`label_game` runs on a worker of the rollout engine (:meth:`RolloutEngine.map`): the base
policy plays the game, sampled steps are replayed with that step (or window) on the high model,
and the labelled base episode comes back with its branches; the driver writes them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from precision_router.traces.schema import Episode
from precision_router_alfworld.data import GameInfo

__all__ = ["CounterfactualGame", "LabelledGame", "label_game"]


@dataclass(frozen=True)
class CounterfactualGame:
    """What to label: the base policy, the run name, how many steps to branch (0: all), the window."""

    base: Any
    run: str
    seed: int = 0
    branches: int = 6
    window: int = 1


@dataclass
class LabelledGame:
    """The labelled base episode (``info["run"]`` set), its branch episodes, and how often going high helped."""

    episode: Episode
    branches: list[Episode] = field(default_factory=list)
    helped: int = 0
    labelled: int = 0


def label_game(spec: CounterfactualGame, worker: Any, game: GameInfo) -> LabelledGame:
    """Label one game's steps on ``worker`` (its models and game engine); nothing is written here.

    Handed to :meth:`RolloutEngine.map` as ``functools.partial(label_game, spec)``.
    """
    from precision_router.training.counterfactual import BranchRouter, counterfactual_labels
    from precision_router_alfworld.factory import build_agent

    env = worker.environment(game)
    played: dict[str, Episode] = {}

    def play(router: Any) -> Episode:
        if router is spec.base and "base" in played:
            return played["base"]  # the base episode is deterministic: played once
        replay: list[tuple[str, str]] = []
        if isinstance(router, BranchRouter) and "base" in played:
            # the prefix before the branch is the base episode's: replayed, not re-scored
            replay = [(s.action or "", s.route) for s in played["base"].steps[: router.start]]
        # the base episode scores both precisions (router inputs and KL for training); branches need
        # only their outcome
        agent = build_agent(worker.options, router, None, pair=worker.models, score_both=router is spec.base)
        episode = agent.run_episode(env, conversation_id=f"cf|{game.name}", game=game, replay=replay)
        if router is spec.base:
            played["base"] = episode
        return episode

    branches: list[Episode] = []

    def keep(branch: Episode) -> None:
        branch.info.update(run=spec.run + "|branch", branch_of=game.name)
        branches.append(branch)

    n = len(play(spec.base).steps)
    steps = (
        range(n)
        if spec.branches <= 0
        else sorted(random.Random(f"{spec.seed}|{game.name}").sample(range(n), min(spec.branches, n)))
    )
    episode, labels = counterfactual_labels(play, spec.base, steps=steps, window=spec.window, on_branch=keep)
    episode.info.update(run=spec.run)
    helped = sum(label.delta_success > 0 for label in labels)
    return LabelledGame(episode, branches, helped=helped, labelled=len(labels))
