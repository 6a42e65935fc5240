"""Threshold calibration on recorded traces: the threshold at which a scored router sends a target share high."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from precision_router.routing.base import Router, RoutingState, ScoredRouter
from precision_router.routing.threshold import calibrate_threshold
from precision_router.traces.schema import Episode, Step

__all__ = ["calibrate_policy", "calibrated", "policy_scores", "recorded_state"]


def policy_scores(router: Router, episodes: Sequence[Episode]) -> list[float]:
    """The score a thresholded policy would compare at every recorded step.

    Each step's state is the one the router saw live (the task and the steps before it) plus
    the signals the trace recorded (:func:`recorded_state`): a learned router scores it by
    ``p_high``, an uncertainty router by the low model's uncertainty over the recorded candidates
    (``Step.logprobs["low"]``, recorded by ``collect-kl`` / ``--score-both``), a KL oracle by the
    step's recorded KL. Steps a router cannot score (``score`` gives ``None``) are left out.

    Raises:
        ValueError: ``router`` is not a :class:`~precision_router.routing.ScoredRouter`.
    """
    if not isinstance(router, ScoredRouter):
        kinds = "a learned, probe, entropy/margin or oracle-kl router"
        msg = f"{router.name} has no per-step score to calibrate (use {kinds})"
        raise ValueError(msg)
    from precision_router.training.data import episode_states

    scores: list[float] = []
    for episode in episodes:
        if hasattr(router, "episode_scores"):  # a router with memory scores a step after the recorded past
            scores += [float(v) for v in router.episode_scores(episode) if v is not None]
            continue
        for record, step in zip(episode_states(episode), episode.steps, strict=True):
            value = router.score(recorded_state(step, record.state))
            if value is not None:
                scores.append(float(value))
    return scores


def recorded_state(step: Step, state: RoutingState | None = None) -> RoutingState:
    """``state`` (default: an empty one) with what ``step`` recorded as the ``extras`` a scored router reads."""
    import torch

    from precision_router.models.scoring import action_log_probs

    extras: dict[str, Any] = {}
    for route in ("low", "high"):
        if step.logprobs and route in step.logprobs:
            values = torch.tensor(step.logprobs[route], dtype=torch.float64)
            extras[f"{route}_logprobs"] = action_log_probs(values).tolist()
    if step.kl is not None:
        extras["kl"] = step.kl
    return dataclasses.replace(state or RoutingState(task=""), extras=extras)


def calibrate_policy(router: Router, episodes: Sequence[Episode], target_share: float) -> float:
    """The threshold at which ``router`` would send ``target_share`` of the recorded steps high.

    The router is left as it is: :func:`calibrated` returns a router with that threshold.
    """
    return calibrate_threshold(policy_scores(router, episodes), target_share)


def calibrated(router: Router, episodes: Sequence[Episode], target_share: float) -> ScoredRouter:
    """A copy of ``router`` whose threshold sends ``target_share`` of the recorded steps high (named after it)."""
    threshold = calibrate_policy(router, episodes, target_share)
    assert isinstance(router, ScoredRouter)  # policy_scores refused any other
    return router.with_threshold(threshold)
