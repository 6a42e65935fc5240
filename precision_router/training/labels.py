"""Step labels from traces, for supervised routers: counterfactual, KL or disagreement.

Each labelled step becomes ``(state, label)``: the routing state before the step (task, history
and the signals the trace recorded, e.g. the low model's log-likelihoods) and 1 when the step
should go high.

- ``counterfactual``: going high at the step wins an episode the base policy lost
  (``collect-counterfactual``);
- ``kl``: the step's ``KL(pi_low || pi_high)`` is in the top ``1 - tau`` of the set (KL-ST's rule);
- ``disagree``: the two precisions' most likely candidates differ (raw scores, before any agent
  penalties).

:func:`uplift_records` gives no 0/1 label but a per-step estimate of what going high is worth,
from episodes of a random policy (a randomised experiment): the episode's outcome weighted by
the inverse probability of the step's route, ``+success / p`` when it went high and
``-success / (1 - p)`` when it went low. Its mean given the state is the effect of routing that
state high on success, so a regression on it (:func:`~precision_router.routing.probe.train_uplift_probe`)
learns where the high model pays, from outcomes alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from precision_router.errors import EmptyTraceSetError
from precision_router.routing.base import RoutingState
from precision_router.traces.schema import Episode

if TYPE_CHECKING:
    from precision_router.training.data import StepRecord

__all__ = ["LabelSource", "labelled_records", "labelled_states", "uplift_records"]

LabelSource = Literal["counterfactual", "kl", "disagree"]


def labelled_states(
    episodes: Sequence[Episode], by: LabelSource = "counterfactual", *, tau: float = 0.85
) -> tuple[list[RoutingState], list[int]]:
    """The labelled steps of ``episodes`` as routing states and 0/1 labels (see :func:`labelled_records`)."""
    records, labels = labelled_records(episodes, by, tau=tau)
    return [r.state for r in records], labels


def labelled_records(
    episodes: Sequence[Episode], by: LabelSource = "counterfactual", *, tau: float = 0.85
) -> tuple[list[StepRecord], list[int]]:
    """The labelled steps of ``episodes`` as :class:`StepRecord` (states with the recorded signals) and 0/1 labels.

    Raises:
        EmptyTraceSetError: no step of ``episodes`` carries what ``by`` needs.
        ValueError: an unknown label source.
    """
    from precision_router.training.counterfactual import label_of
    from precision_router.training.data import episode_states
    from precision_router.training.klst import kl_labels

    if by not in ("counterfactual", "kl", "disagree"):
        msg = f"unknown label source {by!r}; use counterfactual, kl or disagree"
        raise ValueError(msg)
    records: list[StepRecord] = []
    labels: list[int] = []
    kls: list[float] = []
    for episode in episodes:
        for record, step in zip(episode_states(episode, signals=True), episode.steps, strict=True):
            if by == "counterfactual":
                label = label_of(step.info)
            elif by == "kl":
                label = 0 if step.kl is not None else None
            else:
                both = step.logprobs and "high" in step.logprobs and "low" in step.logprobs
                label = None
                if both:
                    high, low = step.logprobs["high"], step.logprobs["low"]  # type: ignore[index]
                    label = int(
                        max(range(len(high)), key=high.__getitem__) != max(range(len(low)), key=low.__getitem__)
                    )
            if label is None:
                continue
            records.append(record)
            labels.append(label)
            if by == "kl":
                kls.append(float(step.kl))  # type: ignore[arg-type]
    if not records:
        hint = {
            "counterfactual": "collect them with `precision-router collect-counterfactual`",
            "kl": "record both precisions with `precision-router collect-kl`",
            "disagree": "record both precisions' scores with `precision-router collect-kl`",
        }[by]
        msg = f"no step of the {len(episodes)} episodes carries {by} labels: {hint}"
        raise EmptyTraceSetError(msg)
    if by == "kl":
        labels = [int(v) for v in kl_labels(kls, tau)[0].tolist()]
    return records, labels


def uplift_records(episodes: Sequence[Episode]) -> tuple[list[StepRecord], list[float]]:
    """The steps of ``episodes`` played by a random policy, and each one's inverse-propensity-weighted outcome.

    A step counts when its episode was played by ``random:<p>`` (the route drawn independently of
    the state with the recorded probability ``p_high``, strictly between 0 and 1) and has an outcome.

    Raises:
        EmptyTraceSetError: no such step.
    """
    from precision_router.training.data import episode_states

    records: list[StepRecord] = []
    effects: list[float] = []
    for episode in episodes:
        if not episode.policy.startswith("random:") or episode.success is None:
            continue
        won = float(episode.success)
        for record, step in zip(episode_states(episode, signals=True), episode.steps, strict=True):
            p = step.p_high
            if p is None or not 0.0 < p < 1.0:
                continue
            records.append(record)
            effects.append(won / p if step.route == "high" else -won / (1.0 - p))
    if not records:
        msg = (
            f"no step of the {len(episodes)} episodes was routed by a random:<p> policy with a known outcome: "
            "play some with `precision-router eval --policies random:0.2` (their routes are the experiment)"
        )
        raise EmptyTraceSetError(msg)
    return records, effects
