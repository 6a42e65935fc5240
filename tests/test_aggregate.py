import math

import pytest
import torch

from precision_router import CheckpointMismatchError
from precision_router.evaluation.calibration import calibrated, policy_scores
from precision_router.routing import RoutingState
from precision_router.routing.aggregate import (
    AGGREGATE_FEATURES,
    AggregateConfig,
    AggregateNet,
    AggregateRouter,
    PastStep,
    aggregate_features,
    episode_features,
)
from precision_router.routing.spec import router_from_spec
from precision_router.traces import Episode, Step
from precision_router.training.grpo import GRPOConfig, train_grpo

STEPS = 6
SURE = [math.log(0.99), math.log(0.01)]
UNSURE = [math.log(0.5), math.log(0.5)]


def feature(row, name):
    return row[AGGREGATE_FEATURES.index(name)]


def test_features_summarise_the_past():
    state = RoutingState("t", (("a", "o1"), ("b", "o2"), ("c", "o3")), extras={"low_logprobs": UNSURE})
    past = [PastStep(4.0, 0.1, "low"), PastStep(1.0, 0.6, "high"), PastStep(None, None, "low")]
    row = aggregate_features(state, past)
    assert len(row) == len(AGGREGATE_FEATURES)
    assert feature(row, "past_high_share") == pytest.approx(1 / 3)
    assert feature(row, "steps_since_high") == pytest.approx(0.1)  # one step since the high one
    assert feature(row, "past_mean_margin") == pytest.approx(2.5)  # the unscored step is left out
    assert feature(row, "past_min_margin") == pytest.approx(1.0)
    assert feature(row, "past_mean_entropy") == pytest.approx(0.35)
    assert feature(row, "margin_vs_past") == pytest.approx(0.0 - 2.5)
    first = aggregate_features(RoutingState("t", extras={"low_logprobs": SURE}), [])
    assert feature(first, "past_high_share") == 0.0 and feature(first, "margin_vs_past") == 0.0


def _play(router, task, conversation, unsure_at):
    """A toy episode whose low model is unsure at the steps in ``unsure_at``; success iff one of them ran high."""
    history, steps = [], []
    for t in range(STEPS):
        scores = UNSURE if t in unsure_at else SURE
        state = RoutingState(task, tuple(history), conversation, extras={"low_logprobs": scores})
        decision = router.decide(state)
        steps.append(
            Step(
                index=t,
                observation="a room",
                action="wait",
                route=decision.route,
                p_high=decision.p_high,
                logprobs={"low": list(scores)},
            )
        )
        history.append(("wait", "a room"))
    success = any(steps[t].route == "high" for t in unsure_at)
    return Episode(conversation_id=conversation, task=task, steps=steps, success=success)


def _unsure_steps(task: str) -> tuple[int, int]:
    """t0: steps 1 and 3, t1: steps 3 and 5; step 3 must go high in t1 and not in t0, so only the past can tell."""
    first = 1 + 2 * (int(task[1:]) % 2)
    return first, first + 2


def test_live_and_recorded_features_agree():
    torch.manual_seed(0)
    net = AggregateNet(AggregateConfig(init_share=0.5))
    router = AggregateRouter(net, sample=True, seed=3)
    episode = _play(router, "t0", "c0", _unsure_steps("t0"))
    assert {s.route for s in episode.steps} == {"high", "low"}  # the past holds both routes
    live = [s.p_high for s in episode.steps]
    assert router.episode_scores(episode) == pytest.approx(live, abs=1e-6)
    assert len(episode_features(episode)) == STEPS
    # a conversation replayed from step 0 starts over instead of reading the old past
    again = _play(router, "t0", "c0", _unsure_steps("t0"))
    assert [s.p_high for s in again.steps] == pytest.approx(live, abs=1e-6)


def test_save_load_spec_and_calibration(tmp_path):
    torch.manual_seed(1)
    net = AggregateNet()
    path = net.save(tmp_path / "agg.pt", note="test")
    loaded = AggregateNet.load(path)
    x = torch.randn(3, len(AGGREGATE_FEATURES))
    assert torch.equal(loaded(x), net(x)) and loaded.meta == {"note": "test"}
    router = router_from_spec(f"aggregate:{path}@0.3")
    assert isinstance(router, AggregateRouter) and router.threshold == 0.3 and router.name == "aggregate:agg.pt@0.3"
    episodes = [_play(AggregateRouter(net, sample=True, seed=s), f"t{s}", f"c{s}", (1, 3)) for s in range(4)]
    assert len(policy_scores(router, episodes)) == 4 * STEPS
    tuned = calibrated(router, episodes, 1 / 3)
    scores = policy_scores(tuned, episodes)
    assert sum(v >= tuned.threshold for v in scores) == pytest.approx(len(scores) / 3, abs=1)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="aggregate-router"):
        AggregateNet.load(tmp_path / "bad.pt")
    torch.save({"format": "precision-router/aggregate-router", "features": ["x"]}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError, match="other features"):
        AggregateNet.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="init_share"):
        AggregateConfig(init_share=1.0)


def rollout(router, task, iteration, sample):
    return _play(router, task, f"{task}:{iteration}:{sample}", _unsure_steps(task))


def test_grpo_teaches_the_aggregate_router_one_high_step_per_episode(tmp_path, one_thread):
    """Success needs one of two unsure steps high: the router learns to go high at the first, not again."""
    config = GRPOConfig(group_size=8, iterations=80, tasks_per_iteration=2, lambda_high=0.1, beta=0.0, lr=3e-2)
    result = train_grpo(rollout, ["t0", "t1"], tmp_path / "agg.pt", kind="aggregate", config=config, progress=False)
    assert result.history[-1]["success"] > result.history[0]["success"]
    router = AggregateRouter(AggregateNet.load(result.checkpoint))
    for task in ("t0", "t1"):
        first, second = _unsure_steps(task)
        episode = _play(router, task, f"greedy-{task}", (first, second))
        assert episode.success
        routes = [s.route for s in episode.steps]
        assert routes[first] == "high", routes
        assert routes.count("high") == 1, routes  # the second unsure step stays low: the past says it is done
    assert result.history[-1]["rollouts"] == 2 * 8


def test_grpo_aggregate_resumes(tmp_path, one_thread):
    config = GRPOConfig(group_size=2, iterations=2, tasks_per_iteration=1, lr=1e-2)
    train_grpo(rollout, ["t0"], tmp_path / "a.pt", kind="aggregate", config=config, progress=False, plots=False)
    longer = GRPOConfig(group_size=2, iterations=3, tasks_per_iteration=1, lr=1e-2)
    result = train_grpo(rollout, ["t0"], tmp_path / "a.pt", kind="aggregate", config=longer, progress=False)
    assert [int(r["iteration"]) for r in result.history] == [1, 2, 3]
    with pytest.raises(ValueError, match="kind must be"):
        train_grpo(rollout, ["t0"], tmp_path / "b.pt", kind="tree", config=config)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the step encoder"):
        train_grpo(rollout, ["t0"], tmp_path / "c.pt", config=config)
