"""Per-step policy scores computed offline from traces, for threshold calibration."""

from __future__ import annotations

from collections.abc import Sequence

from precision_router.routing.base import Router
from precision_router.routing.threshold import calibrate_threshold, uncertainty
from precision_router.traces.schema import Episode

__all__ = ["calibrate_policy", "policy_scores"]


def policy_scores(router: Router, episodes: Sequence[Episode]) -> list[float]:
    """The score a thresholded policy would compare at every recorded step.

    A learned router scores a step by ``p_high`` on the state before it; an uncertainty router by
    the low model's uncertainty over the recorded candidates (``Step.logprobs["low"]``, recorded
    by ``collect-kl`` / ``--score-both``).
    """
    from precision_router.models.scoring import action_log_probs
    from precision_router.training.data import episode_states

    scores: list[float] = []
    measure = getattr(router, "measure", None)
    if measure is not None:
        import torch

        for episode in episodes:
            for step in episode.steps:
                if step.logprobs and "low" in step.logprobs:
                    log_probs = action_log_probs(torch.tensor(step.logprobs["low"], dtype=torch.float64))
                    scores.append(uncertainty(log_probs.tolist(), measure))
        return scores
    probs = getattr(router, "probs", None)
    if probs is None:
        msg = f"{router.name} has no per-step score to calibrate (use a learned or entropy/margin router)"
        raise ValueError(msg)
    for episode in episodes:
        for record in episode_states(episode):
            scores.append(float(probs(record.state)[-1]))
    return scores


def calibrate_policy(router: Router, episodes: Sequence[Episode], target_share: float) -> float:
    """Set ``router.threshold`` so that ``target_share`` of the recorded steps would go high; returns it."""
    threshold = calibrate_threshold(policy_scores(router, episodes), target_share)
    router.threshold = threshold  # type: ignore[attr-defined]
    base = router.name.split("@")[0]
    router.name = f"{base}@{threshold:.4g}"
    return threshold
