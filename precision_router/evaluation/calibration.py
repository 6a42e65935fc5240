"""Per-step policy scores computed offline from traces, for threshold calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from precision_router.routing.base import Router, RoutingState
from precision_router.routing.threshold import calibrate_threshold
from precision_router.traces.schema import Episode

__all__ = ["calibrate_policy", "policy_scores"]


def policy_scores(router: Router, episodes: Sequence[Episode]) -> list[float]:
    """The score a thresholded policy would compare at every recorded step.

    A learned router scores a step by ``p_high`` on the state before it; an uncertainty router by
    the low model's uncertainty over the recorded candidates (``Step.logprobs["low"]``, recorded
    by ``collect-kl`` / ``--score-both``); a KL oracle by the step's recorded KL.
    """
    from precision_router.training.data import episode_states

    scores: list[float] = []
    score = getattr(router, "score", None)
    if score is not None:
        for episode in episodes:
            for step in episode.steps:
                value = score(_recorded_state(step))
                if value is not None:
                    scores.append(float(value))
        return scores
    probs = getattr(router, "probs", None)
    if probs is None:
        msg = f"{router.name} has no per-step score to calibrate (use a learned or entropy/margin router)"
        raise ValueError(msg)
    for episode in episodes:
        for record in episode_states(episode):
            scores.append(float(probs(record.state)[-1]))
    return scores


def _recorded_state(step: Any) -> RoutingState:
    """The per-step signals a trace records, as the ``extras`` a scored router reads."""
    import torch

    from precision_router.models.scoring import action_log_probs

    extras: dict[str, Any] = {}
    for route in ("low", "high"):
        if step.logprobs and route in step.logprobs:
            values = torch.tensor(step.logprobs[route], dtype=torch.float64)
            extras[f"{route}_logprobs"] = action_log_probs(values).tolist()
    if step.kl is not None:
        extras["kl"] = step.kl
    return RoutingState(task="", extras=extras)


def calibrate_policy(router: Router, episodes: Sequence[Episode], target_share: float) -> float:
    """Set ``router.threshold`` so that ``target_share`` of the recorded steps would go high; returns it."""
    threshold = calibrate_threshold(policy_scores(router, episodes), target_share)
    router.threshold = threshold  # type: ignore[attr-defined]
    base = router.name.split("@")[0]
    router.name = f"{base}@{threshold:.4g}"
    return threshold
