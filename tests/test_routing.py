import pytest
import torch

from precision_router.errors import CheckpointMismatchError
from precision_router.routing import (
    AlwaysHigh,
    AlwaysLow,
    LearnedRouter,
    RandomRouter,
    RouterConfig,
    RouterNet,
    RoutingState,
    history_from_steps,
)
from precision_router.routing.network import pad_sequences


def _state(cid: str = "c", steps: int = 0) -> RoutingState:
    return RoutingState("put a mug in the sink", tuple((f"go to {i}", f"you see {i}") for i in range(steps)), cid)


def test_fixed_policies():
    assert AlwaysHigh().decide(_state()).route == "high"
    assert AlwaysLow().decide(_state()).route == "low"


def test_random_router_share_and_reproducibility():
    router = RandomRouter(0.3, seed=7)
    routes = [router.decide(_state(f"c{i}", s)).route for i in range(50) for s in range(20)]
    share = routes.count("high") / len(routes)
    assert 0.26 < share < 0.34
    again = [RandomRouter(0.3, seed=7).decide(_state(f"c{i}", s)).route for i in range(50) for s in range(20)]
    assert routes == again
    other_seed = [RandomRouter(0.3, seed=8).decide(_state(f"c{i}", s)).route for i in range(50) for s in range(20)]
    assert routes != other_seed
    with pytest.raises(ValueError, match="p_high"):
        RandomRouter(1.5)


def test_history_pairs_actions_with_their_answers():
    assert history_from_steps(["a0", "a1", "a2"], ["o0", "o1", "o2"]) == (("a0", "o1"), ("a1", "o2"))
    assert _state(steps=3).step_index == 3
    assert _state(steps=2).step_texts()[1] == "Action: go to 0\nObservation: you see 0"


def test_router_net_ignores_padding_and_truncates():
    torch.manual_seed(0)
    net = RouterNet(RouterConfig(embed_dim=16, d_model=32, n_heads=4, max_steps=4, dropout=0.0)).eval()
    short = torch.randn(3, 16)
    long = torch.randn(9, 16)
    batched = net.probs([short, long])
    assert batched.shape == (2, 2)
    assert torch.allclose(batched.sum(-1), torch.ones(2))
    assert torch.allclose(batched[0], net.probs([short])[0], atol=1e-5)
    x, valid = pad_sequences([long], max_steps=4)
    assert x.shape == (1, 5, 16) and valid.all()
    assert torch.equal(x[0, 0], long[0]) and torch.equal(x[0, 1:], long[-4:])


def test_router_checkpoint_round_trip_and_mismatches(tmp_path):
    net = RouterNet(RouterConfig(embed_dim=16, d_model=32, n_heads=4, dropout=0.0, encoder="enc-a"))
    path = net.save(tmp_path / "router.pt", note="unit test")
    back = RouterNet.load(path, encoder="enc-a", embed_dim=16, n_routes=2)
    assert back.config == net.config
    assert back.fingerprint() == net.fingerprint()
    assert back.meta == {"note": "unit test"}
    x = torch.randn(1, 3, 16)
    valid = torch.ones(1, 3, dtype=torch.bool)
    assert torch.allclose(back(x, valid), net.eval()(x, valid))
    with pytest.raises(CheckpointMismatchError, match="encoder"):
        RouterNet.load(path, encoder="enc-b")
    with pytest.raises(CheckpointMismatchError, match="embed_dim"):
        RouterNet.load(path, embed_dim=384)
    with pytest.raises(CheckpointMismatchError, match="n_routes"):
        RouterNet.load(path, n_routes=3)
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(CheckpointMismatchError, match="not a precision-router"):
        RouterNet.load(bad)
    old = torch.load(path, weights_only=True)
    old["format_version"] = 999
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CheckpointMismatchError, match="format 999"):
        RouterNet.load(tmp_path / "old.pt")


def test_step_encoder_embeds_only_new_steps(encoder, monkeypatch):
    first = encoder.encode_state(_state(steps=2))
    assert first.shape == (3, encoder.dim) and encoder.dim == 384
    seen: list[list[str]] = []
    original = encoder._embed

    def spy(texts):
        seen.append(list(texts))
        return original(texts)

    monkeypatch.setattr(encoder, "_embed", spy)
    second = encoder.encode_state(_state(steps=3))
    assert seen == [[_state(steps=3).step_texts()[-1]]]
    assert torch.allclose(second[:3], first)


def test_learned_router_decides_and_round_trips(encoder, tmp_path):
    config = RouterConfig(embed_dim=encoder.dim, d_model=32, n_heads=4, dropout=0.0, encoder=encoder.name)
    net = RouterNet(config)
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.0, 5.0]))  # strongly prefer "high"
    router = LearnedRouter(net, encoder)
    decision = router.decide(_state(steps=2))
    assert decision.route == "high" and decision.p_high > 0.9
    path = net.save(tmp_path / "r.pt")
    loaded = LearnedRouter.from_checkpoint(path, encoder=encoder, threshold=0.999999)
    assert loaded.version == router.version
    assert loaded.decide(_state(steps=2)).route == "low"
    from precision_router.routing import StepEncoder

    with pytest.raises(CheckpointMismatchError, match="encoder"):
        LearnedRouter.from_checkpoint(path, encoder=StepEncoder("some/other-encoder"))


def test_step_encoder_dtypes_agree(encoder):
    from precision_router.routing.encoder import StepEncoder

    texts = _state(steps=4).step_texts()
    full = StepEncoder(dtype="float32").encode(texts)
    half = StepEncoder(dtype="bfloat16").encode(texts)
    assert full.dtype == half.dtype == torch.float32 and half.shape == (len(texts), encoder.dim)
    assert torch.nn.functional.cosine_similarity(full, half).min() > 0.999
    assert not torch.equal(full, half)  # really ran in bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        StepEncoder(dtype="int8")


def test_step_encoder_direct_and_batched_paths_agree(encoder):
    from precision_router.routing import encoder as encoder_module

    texts = [f"> go to drawer {i}\nThe drawer {i} is closed." for i in range(encoder_module._DIRECT_MAX + 2)]
    batched = encoder_module.StepEncoder(dtype="float32").encode(texts)  # more than _DIRECT_MAX: encode()
    direct = encoder_module.StepEncoder(dtype="float32")
    one_by_one = torch.cat([direct.encode([t]) for t in texts])
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    assert torch.allclose(one_by_one.norm(dim=-1), torch.ones(len(texts)), atol=1e-4)  # normalised


def test_routers_pickle_for_rollout_workers(encoder):
    """Routers travel to rollout workers (Ray objects): a pickled copy decides the same, with its own lock."""
    import pickle

    from precision_router.routing.budget import BudgetRouter

    random_router = RandomRouter(0.5, seed=3)
    budget = BudgetRouter(RandomRouter(0.5, seed=3), max_high=1)
    for router in (random_router, budget):
        copy = pickle.loads(pickle.dumps(router))
        assert [copy.decide(_state(steps=s)).route for s in range(8)] == [
            router.decide(_state(steps=s)).route for s in range(8)
        ]
    config = RouterConfig(embed_dim=encoder.dim, d_model=32, n_heads=4, dropout=0.0, encoder=encoder.name)
    learned = LearnedRouter(RouterNet(config), encoder)
    blob = pickle.dumps(learned)
    assert len(blob) < 5_000_000  # the sentence encoder itself stays behind; the copy loads its own
    copy = pickle.loads(blob)
    assert copy.version == learned.version
    assert copy.decide(_state(steps=2)).p_high == pytest.approx(learned.decide(_state(steps=2)).p_high, abs=1e-5)
