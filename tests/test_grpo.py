from dataclasses import replace

import pytest
import torch

from precision_router.routing import RouterConfig, RouterNet, RoutingState
from precision_router.testing import HashingEncoder
from precision_router.traces import Episode, Step
from precision_router.training.grpo import GRPOConfig, episode_return, group_advantages, train_grpo

STEPS = 4


def marked_step(task: str) -> int:
    return 1 + int(task[1:]) % (STEPS - 1)


def rollout(router, task, iteration, sample):
    """A toy game: the step right after an 'alarm' observation must run high, or the episode fails."""
    marked = marked_step(task)
    history, steps, success = [], [], True
    observation = "a quiet room"
    for t in range(STEPS):
        decision = router.decide(RoutingState(task, tuple(history), f"{task}:{iteration}:{sample}"))
        if t == marked and decision.route != "high":
            success = False
        steps.append(
            Step(index=t, observation=observation, action="wait", route=decision.route, p_high=decision.p_high)
        )
        observation = "an alarm rings loudly" if t + 1 == marked else "a quiet room"
        history.append(("wait", observation))
    return Episode(conversation_id=task, task="keep the house safe", steps=steps, success=success)


def p_high_at(net, encoder, marked: int) -> list[float]:
    probs = []
    for t in range(STEPS):
        history = tuple(("wait", "an alarm rings loudly" if i + 1 == marked else "a quiet room") for i in range(t))
        state = RoutingState("keep the house safe", history)
        probs.append(float(net.probs([encoder.encode(state.step_texts())])[0, -1]))
    return probs


def mean_kl_to(net, reference, encoder) -> float:
    values = []
    for marked in range(1, STEPS):
        p = torch.tensor(p_high_at(net, encoder, marked))
        q = torch.tensor(p_high_at(reference, encoder, marked))
        values.append((p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean())
    return float(torch.stack(values).mean())


def test_returns_and_advantages():
    episode = rollout(
        type("R", (), {"decide": lambda self, s: __import__("precision_router").RouteDecision("high", 1.0)})(),
        "t0",
        0,
        0,
    )
    assert episode.success and episode_return(episode, 0.1, 0.01) == pytest.approx(1 - 0.4 - 0.04)
    adv = group_advantages([1.0, 0.0, 1.0, 0.0])
    assert adv == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-4)
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)


def _train(tmp_path, beta: float, name: str):
    encoder = HashingEncoder(32)
    torch.manual_seed(0)
    init = RouterNet(RouterConfig(embed_dim=32, d_model=16, n_heads=2, dropout=0.0, encoder=encoder.name))
    config = GRPOConfig(group_size=8, iterations=60, tasks_per_iteration=3, lambda_high=0.1, beta=beta, lr=1e-2)
    result = train_grpo(
        rollout, ["t0", "t1", "t2"], tmp_path / name, encoder=encoder, init=init, config=config, progress=False
    )
    return init, RouterNet.load(result.checkpoint), result, encoder


def test_grpo_learns_to_route_high_only_on_the_marked_step(tmp_path, one_thread):
    init, trained, result, encoder = _train(tmp_path, beta=0.0, name="free.pt")
    for marked in range(1, STEPS):
        probs = p_high_at(trained, encoder, marked)
        assert probs[marked] > 0.8, probs
        assert max(p for t, p in enumerate(probs) if t != marked) < 0.35, probs
    assert result.history[-1]["success"] > result.history[0]["success"]
    assert result.history[-1]["high_share"] < 0.5

    _, anchored, _, _ = _train(tmp_path, beta=1.0, name="anchored.pt")
    assert mean_kl_to(anchored, init, encoder) < mean_kl_to(trained, init, encoder)


def test_grpo_resumes_from_its_saved_state(tmp_path, one_thread):
    encoder = HashingEncoder(32)
    config = GRPOConfig(group_size=2, iterations=2, tasks_per_iteration=1, lr=1e-3)
    router_config = RouterConfig(d_model=16, n_heads=2, dropout=0.0)
    first = train_grpo(
        rollout, ["t0"], tmp_path / "r.pt", encoder=encoder, router_config=router_config, config=config, progress=False
    )
    calls = []

    def counting(router, task, iteration, sample):
        calls.append(iteration)
        return rollout(router, task, iteration, sample)

    longer = GRPOConfig(group_size=2, iterations=3, tasks_per_iteration=1, lr=1e-3)
    second = train_grpo(
        counting, ["t0"], tmp_path / "r.pt", encoder=encoder, router_config=router_config, config=longer, progress=False
    )
    assert calls == [2, 2]  # only the new iteration was rolled out
    assert [row["iteration"] for row in second.history] == [1, 2, 3]
    assert second.history[:2] == first.history


def test_grpo_updates_a_router_that_reads_the_low_models_signals(tmp_path, one_thread):
    from precision_router.routing.probe import FEATURES

    def unsure_rollout(router, task, iteration, sample):
        """Like ``rollout``, but the low model is unsure exactly at the marked step (and records it)."""
        marked = marked_step(task)
        history, steps = [], []
        for t in range(STEPS):
            scores = [-0.69, -0.70] if t == marked else [-0.01, -5.0]
            state = RoutingState(task, tuple(history), f"{task}:{iteration}:{sample}", {"low_logprobs": scores})
            decision = router.decide(state)
            steps.append(
                Step(index=t, observation="a room", action="wait", route=decision.route, logprobs={"low": scores})
            )
            history.append(("wait", "a room"))
        success = steps[marked].route == "high"
        return Episode(conversation_id=task, task="keep the house safe", steps=steps, success=success)

    encoder = HashingEncoder(32)
    router_config = RouterConfig(d_model=16, n_heads=2, dropout=0.0, n_signals=len(FEATURES))
    config = GRPOConfig(group_size=4, iterations=2, tasks_per_iteration=2, lr=1e-2)
    result = train_grpo(
        unsure_rollout,
        ["t0", "t1"],
        tmp_path / "s.pt",
        encoder=encoder,
        router_config=router_config,
        config=config,
        progress=False,
        plots=False,
    )
    trained = RouterNet.load(result.checkpoint, encoder=encoder.name)
    assert trained.config.n_signals == len(FEATURES)
    torch.manual_seed(config.seed)
    fresh = RouterNet(replace(router_config, embed_dim=encoder.dim, encoder=encoder.name))
    assert not torch.equal(trained.signal_proj.weight, fresh.signal_proj.weight)
