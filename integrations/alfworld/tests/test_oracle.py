"""Oracle policies: they see both precisions' choices before each step."""

from __future__ import annotations

import pytest
from precision_router_alfworld.agent import AgentConfig, AlfworldAgent
from precision_router_alfworld.env import AlfworldEnv
from precision_router_alfworld.generate import generate_games

from precision_router import AlwaysHigh, JsonlTraceStore, RoutedChatModel
from precision_router.evaluation.calibration import calibrated
from precision_router.routing.base import RoutingState
from precision_router.routing.oracle import OracleDisagree, OracleKL
from precision_router.routing.spec import router_from_spec
from precision_router.testing import tiny_precision_pair


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    return generate_games(tmp_path_factory.mktemp("games"), 2, seed=11, difficulty="easy")


@pytest.fixture(scope="module")
def pair():
    return tiny_precision_pair("rtn-3bit")


def _play(pair, router, game, store=None, **config):
    agent = AlfworldAgent(RoutedChatModel(*pair, router, trace_store=store), AgentConfig(max_steps=12, **config))
    return agent.run_episode(AlfworldEnv(game, max_steps=12), conversation_id=f"{router.name}|{game.name}")


def test_specs():
    assert isinstance(router_from_spec("oracle-disagree"), OracleDisagree)
    oracle = router_from_spec("oracle-kl@0.7")
    assert isinstance(oracle, OracleKL) and oracle.threshold == 0.7


def test_decisions_follow_the_extras():
    disagree, kl = OracleDisagree(), OracleKL(0.5)
    state = RoutingState("t", extras={"low_choice": "go to a", "high_choice": "go to b", "kl": 0.2})
    assert disagree.decide(state).route == "high" and kl.decide(state).route == "low"
    state = RoutingState("t", extras={"low_choice": "go to a", "high_choice": "go to a", "kl": 0.9})
    assert disagree.decide(state).route == "low" and kl.decide(state).route == "high"
    assert disagree.decide(RoutingState("t")).route == "low"  # without both scores: no information


@pytest.mark.parametrize("repeat_penalty", [0.0, 5.0])
def test_disagreement_oracle_replays_the_high_only_episode(pair, games, repeat_penalty):
    """Score mode is deterministic: going high exactly where the choices differ plays high's actions."""
    for game in games:
        high = _play(pair, AlwaysHigh(), game, repeat_penalty=repeat_penalty)
        oracle = _play(pair, OracleDisagree(), game, repeat_penalty=repeat_penalty)
        assert [s.action for s in oracle.steps] == [s.action for s in high.steps]
        assert all(s.kl is not None and set(s.logprobs) == {"high", "low"} for s in oracle.steps)
        routes = [s.route for s in oracle.steps]
        assert "low" in routes  # the tiny 3-bit copy agrees on some steps


def test_kl_oracle_calibrates_to_a_share_on_traces(pair, games, tmp_path):
    store = JsonlTraceStore(tmp_path / "kl.jsonl")
    for game in games:
        _play(pair, AlwaysHigh(), game, store, score_both=True)
    uncalibrated = OracleKL(0.0)
    oracle = calibrated(uncalibrated, store.read(), 0.25)
    threshold = oracle.threshold
    kls = [s.kl for e in store.read() for s in e.steps]
    assert uncalibrated.threshold == 0.0 and oracle is not uncalibrated  # a new router, the old one untouched
    assert oracle.name == f"oracle-kl@{threshold:.4g}"
    assert sum(k >= threshold for k in kls) == pytest.approx(0.25 * len(kls), abs=1)
    episode = _play(pair, oracle, games[0])
    assert all((s.route == "high") == (s.p_high >= threshold) for s in episode.steps)
