"""Counterfactual labels and the probe router on a toy game where one step's precision decides."""

import math

import pytest

from precision_router import AlwaysLow, RandomRouter
from precision_router.routing.base import RoutingState
from precision_router.routing.probe import FEATURES, ProbeCheckpointError, ProbeRouter, probe_features, train_probe
from precision_router.traces import Episode, Step
from precision_router.training.counterfactual import INFO_KEY, BranchRouter, counterfactual_labels, label_of

STEPS = 6


def flat(n):  # the low model is unsure: every candidate equally likely
    return [-math.log(n)] * n


def peaked(n):
    return [math.log(0.9)] + [math.log(0.1 / (n - 1))] * (n - 1)


def toy_play(marked: int):
    """A deterministic toy game: the episode is won iff step ``marked`` runs high. At that step the
    low model's distribution over the 4 candidate actions is flat, elsewhere peaked."""

    def play(router):
        history, steps, won = [], [], False
        for t in range(STEPS):
            low = flat(4) if t == marked else peaked(4)
            state = RoutingState("guard the house", tuple(history), "toy", {"low_logprobs": low})
            decision = router.decide(state)
            won = won or (t == marked and decision.route == "high")
            observation = "alarm" if t + 1 == marked else "quiet"
            steps.append(
                Step(
                    index=t,
                    observation=history[-1][1] if history else "start",
                    action=f"a{t}",
                    route=decision.route,
                    p_high=decision.p_high,
                    logprobs={"low": low},
                )
            )
            history.append((f"a{t}", observation))
        return Episode(conversation_id="toy", task="guard the house", steps=steps, success=won)

    return play


@pytest.mark.parametrize("marked", [1, 3, 4])
def test_the_labeller_labels_exactly_the_step_that_decides(marked):
    branches = []
    base, labels = counterfactual_labels(toy_play(marked), AlwaysLow(), on_branch=branches.append)
    assert base.success is False and len(labels) == STEPS == len(branches)
    assert [label.delta_success for label in labels] == [int(t == marked) for t in range(STEPS)]
    assert [label_of(s.info) for s in base.steps] == [int(t == marked) for t in range(STEPS)]
    assert all(b.steps[t].route == "high" for t, b in enumerate(branches))


def test_a_window_and_a_random_base():
    base = RandomRouter(0.3, seed=4)
    episode, labels = counterfactual_labels(toy_play(2), base, window=2)
    for label in labels:
        covers = label.step <= 2 < label.step + 2
        assert label.branch_success == (covers or episode.success)
    # steps the base already routes high are labelled without a replay
    assert all(INFO_KEY in s.info for s in episode.steps)


def test_branch_router_passes_capabilities_through():
    probe = ProbeRouter([1.0] + [0.0] * (len(FEATURES) - 1), 0.0, [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    branch = BranchRouter(probe, 2)
    assert branch.needs_scores == ("low",) and branch.name == "probe+high@2"
    with pytest.raises(ValueError, match="window"):
        BranchRouter(probe, 0, window=0)


def test_the_probe_learns_the_labelled_step(tmp_path):
    states, labels = [], []
    for marked in range(1, STEPS):
        play = toy_play(marked)
        episode, _ = counterfactual_labels(play, AlwaysLow())
        history = []
        for step in episode.steps:
            states.append(RoutingState(episode.task, tuple(history), "toy", {"low_logprobs": step.logprobs["low"]}))
            labels.append(label_of(step.info))
            history.append((step.action, "quiet"))
    probe = train_probe(states, labels)
    for marked in range(1, STEPS):
        episode = toy_play(marked)(probe)
        assert episode.success
        assert [s.route for s in episode.steps] == ["high" if t == marked else "low" for t in range(STEPS)]
    loaded = ProbeRouter.load(probe.save(tmp_path / "probe.json"))
    assert loaded.version == probe.version
    assert loaded.score(states[0]) == pytest.approx(probe.score(states[0]))


def test_features_and_bad_inputs(tmp_path):
    state = RoutingState("t", (("go to a", "x"), ("go to b", "y"), ("go to a", "x"), ("go to b", "y")))
    features = dict(zip(FEATURES, probe_features(state), strict=True))
    assert features["abab"] == 1.0 and features["last_repeats"] == 1.0 and features["entropy"] == 0.0
    with pytest.raises(ValueError, match="one class"):
        train_probe([state, state], [0, 0])
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ProbeCheckpointError, match="retrain"):
        ProbeRouter.load(tmp_path / "bad.json")
    with pytest.raises(ProbeCheckpointError, match="one per feature"):
        ProbeRouter([1.0], 0.0, [0.0], [1.0])


def test_a_budget_caps_high_steps_per_conversation():
    from precision_router import AlwaysHigh
    from precision_router.routing.budget import BudgetRouter

    router = BudgetRouter(AlwaysHigh(), 2)
    routes = [router.decide(RoutingState("t", (("a", "o"),) * i, "c1")).route for i in range(5)]
    assert routes == ["high", "high", "low", "low", "low"]
    assert router.decide(RoutingState("t", (("a", "o"),), "c1")).route == "high"  # step 1 again: already paid
    assert router.decide(RoutingState("t", (), "c2")).route == "high" and router.spent("c1") == 2
    assert toy_play(3)(BudgetRouter(RandomRouter(0.5, seed=0), 1)).n_high <= 1
    with pytest.raises(ValueError, match="non-negative"):
        BudgetRouter(AlwaysHigh(), -1)


def test_a_token_budget_reads_the_high_tokens_used():
    from precision_router import AlwaysHigh
    from precision_router.routing.budget import BudgetRouter

    router = BudgetRouter(AlwaysHigh(), max_high_tokens=100)
    assert router.decide(RoutingState("t", (), "c", {"high_tokens": 99})).route == "high"
    assert router.decide(RoutingState("t", (("a", "o"),), "c", {"high_tokens": 100})).route == "low"
    both = BudgetRouter(AlwaysHigh(), 1, max_high_tokens=100)  # the first budget spent wins
    assert [both.decide(RoutingState("t", (("a", "o"),) * i, "c", {"high_tokens": 0})).route for i in range(2)] == [
        "high",
        "low",
    ]
    assert "budget1" in both.name and "budget100tok" in both.name
    with pytest.raises(ValueError, match="high_tokens"):  # called without the tracker's count
        router.decide(RoutingState("t", (), "c"))
    with pytest.raises(ValueError, match="needs max_high"):
        BudgetRouter(AlwaysHigh())
    with pytest.raises(ValueError, match="max_high_tokens must be"):
        BudgetRouter(AlwaysHigh(), max_high_tokens=1.5)


def test_labelled_states_from_traces():
    from precision_router.training.labels import labelled_states

    episode, _ = counterfactual_labels(toy_play(2), AlwaysLow())
    states, labels = labelled_states([episode], "counterfactual")
    assert labels == [int(t == 2) for t in range(STEPS)]
    assert states[2].step_index == 2 and states[2].extras["low_logprobs"] == pytest.approx(flat(4))
    episode.steps[0].logprobs = {"low": [0.0, -1.0], "high": [-1.0, 0.0]}
    episode.steps[1].logprobs = {"low": [0.0, -1.0], "high": [0.0, -2.0]}
    _, disagree = labelled_states([episode], "disagree")
    assert disagree == [1, 0]


def test_reference_advantages():
    from precision_router.training.grpo import group_advantages

    plain = group_advantages([0.0, 0.0, 1.0, 1.0])
    guided = group_advantages([0.0, 0.0, 1.0, 1.0], references=[1.0, 1.0])
    assert plain[0] < 0 < plain[2]
    assert guided[2] > 0 and guided[0] < plain[0]  # failing to match the references costs more


def _random_toy_episodes(marked: int, n: int) -> list[Episode]:
    episodes = []
    for seed in range(n):
        episode = toy_play(marked)(RandomRouter(0.3, seed=seed))
        episode.policy = "random:0.3"
        episodes.append(episode)
    return episodes


def test_an_uplift_probe_learns_from_random_routes_which_step_decides():
    from precision_router.routing.probe import train_uplift_probe
    from precision_router.training.labels import uplift_records

    episodes = _random_toy_episodes(2, 300)
    assert 0 < sum(e.success for e in episodes) < len(episodes)
    records, effects = uplift_records([*episodes, toy_play(2)(AlwaysLow())])  # the non-random episode is left out
    assert len(records) == 300 * STEPS
    won_high = [e for r, e in zip(records, effects, strict=True) if r.index == 2 and e > 0]
    assert won_high and all(e == pytest.approx(1 / 0.3) for e in won_high)
    probe = train_uplift_probe([r.state for r in records], effects)
    assert probe.needs_scores == ("low",)
    scores = [probe.score(r.state) for r in records[:STEPS]]
    assert max(range(STEPS), key=scores.__getitem__) == 2
    # calibrated to one step in six, it routes exactly the deciding step high and wins
    router = probe.with_threshold(sorted(probe.score(r.state) for r in records)[-300])
    played = toy_play(2)(router)
    assert played.success and [s.route for s in played.steps] == ["high" if t == 2 else "low" for t in range(STEPS)]


def test_an_uplift_probe_without_the_low_models_signals(tmp_path):
    from precision_router.cli import main
    from precision_router.errors import EmptyTraceSetError
    from precision_router.routing.probe import LOW_MODEL_FEATURES, ProbeTrainingError, train_uplift_probe
    from precision_router.traces import JsonlTraceStore
    from precision_router.training.labels import uplift_records

    episodes = _random_toy_episodes(1, 200)
    for episode in episodes:  # as a random policy records them: the high steps carry no low-model scores
        for step in episode.steps:
            if step.route == "high":
                step.logprobs = None
    traces = tmp_path / "random.jsonl"
    JsonlTraceStore(traces).extend(episodes)
    out = tmp_path / "uplift.json"
    assert main(["train-probe", str(traces), "--labels", "uplift", "--out", str(out)]) == 0
    probe = ProbeRouter.load(out)
    assert probe.needs_scores == () and all(probe.weights[FEATURES.index(f)] == 0 for f in LOW_MODEL_FEATURES)
    scores = [probe.score(state) for state in (r.state for r in uplift_records(episodes[:1])[0])]
    assert scores[1] > max(scores[3:])  # from the history and the step index alone: early steps first
    with pytest.raises(EmptyTraceSetError, match="random:<p>"):
        uplift_records([toy_play(1)(AlwaysLow())])
    with pytest.raises(ProbeTrainingError, match="unknown probe features"):
        records, effects = uplift_records(episodes)
        train_uplift_probe([r.state for r in records], effects, features=["colour"])
