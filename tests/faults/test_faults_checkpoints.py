"""Fault suite, files a user can hand over: router checkpoints, GRPO resume states, the ALFWorld SAS cache.

A crafted pickle that would create a marker file must never run, and every malformed file
must fail with a PrecisionRouterError that says what to do (never torch's weights_only advice).
"""

from __future__ import annotations

import copy
import gzip
import os
import pickle
from pathlib import Path

import pytest
import torch

from precision_router import PrecisionRouterError, RouterConfig, RouterNet

SMALL = RouterConfig(embed_dim=8, d_model=8, n_heads=2, n_layers=1, max_steps=4)


class Plant:
    """Unpickling this creates ``path``: the stand-in for an attacker's code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def saved(tmp_path) -> dict:
    path = RouterNet(SMALL).save(tmp_path / "router.pt")
    return torch.load(path, weights_only=True)


def _load(tmp_path, checkpoint) -> None:
    path = tmp_path / "crafted.pt"
    torch.save(checkpoint, path)
    RouterNet.load(path)


def test_a_pickled_checkpoint_runs_nothing_and_gives_no_weights_only_advice(tmp_path, saved):
    marker = tmp_path / "marker"
    crafted = {**saved, "meta": {"x": Plant(marker)}}
    with pytest.raises(PrecisionRouterError) as caught:
        _load(tmp_path, crafted)
    assert not marker.exists()
    assert "weights_only" not in str(caught.value)
    assert "RouterNet.save" in str(caught.value)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c["config"].update(n_heads=0), "n_heads"),
        (lambda c: c["config"].update(d_model="wide"), "d_model"),
        (lambda c: c.pop("config"), "config"),
        (lambda c: c.pop("state_dict"), "weights"),
        (lambda c: c.update(state_dict={}), "layers"),
        (lambda c: c["config"].update(n_layers=10**9), "layers"),
        # 140 TB if allocated: the weights' shapes are checked against the config first
        (lambda c: c["config"].update(d_model=2**22, n_heads=1, max_steps=2**23), "do not match"),
        (lambda c: c.update(embed_dim=999), "inconsistent"),
    ],
    ids=["zero-heads", "str-width", "no-config", "no-weights", "empty-weights", "1e9-layers", "140TB", "top-level"],
)
def test_crafted_checkpoints_fail_clearly_before_allocating(tmp_path, saved, edit, words):
    crafted = copy.deepcopy(saved)
    edit(crafted)
    with pytest.raises(PrecisionRouterError, match=words):
        _load(tmp_path, crafted)


def test_grpo_resume_state_is_never_unpickled(tmp_path):
    from precision_router.testing import HashingEncoder
    from precision_router.training.grpo import GRPOConfig, train_grpo

    marker = tmp_path / "marker"
    out = tmp_path / "grpo.pt"
    torch.save(
        {"net": {}, "optimizer": {}, "iteration": 0, "history": [Plant(marker)]}, out.with_name("grpo.pt.state.pt")
    )

    def rollout(router, task, iteration, sample):  # pragma: no cover - never reached
        raise AssertionError("training started from a crafted state")

    config = GRPOConfig(group_size=2, iterations=1, tasks_per_iteration=1)
    with pytest.raises(PrecisionRouterError, match="resume"):
        train_grpo(rollout, ["t0"], out, encoder=HashingEncoder(16), config=config, progress=False, plots=False)
    assert not marker.exists()


def test_a_real_grpo_resume_state_loads(tmp_path):
    from precision_router.training.grpo import load_resume_state

    net = RouterNet(SMALL)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    path = tmp_path / "state.pt"
    history = [{"iteration": 1.0, "loss": 0.5}]
    torch.save({"net": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 1, "history": history}, path)
    assert load_resume_state(path, RouterNet(SMALL), torch.optim.AdamW(net.parameters(), lr=1e-3)) == (1, history)


def test_no_pickle_loads_of_user_files_anywhere():
    """No ``weights_only=False``; a pickle load only of a file whose HMAC (this user's key) was checked."""
    root = Path(__file__).resolve().parents[2]
    sources = [*root.glob("precision_router/**/*.py"), *root.glob("integrations/*/*/**/*.py")]
    offenders = []
    for source in sources:
        for number, line in enumerate(source.read_text().splitlines(), start=1):
            loads = "pickle.load(" in line or "pickle.loads(" in line
            if "weights_only=False" in line or (loads and "signed by this user's key" not in line):
                offenders.append(f"{source.relative_to(root)}:{number}")
    assert offenders == []


def test_alfworld_sas_cache_unpickles_only_what_this_user_signed(tmp_path, monkeypatch):
    env = pytest.importorskip("precision_router_alfworld.env")
    monkeypatch.setattr("precision_router.cache.cache_dir", lambda *parts: _mkdir(tmp_path.joinpath("cache", *parts)))
    env._cache_key.cache_clear()
    try:
        file = env._sas_cache_file("(domain)", "(problem)")
    except Exception:  # fast_downward missing
        pytest.skip("the ALFWorld engine is not installed")
    marker = tmp_path / "marker"
    crafted = gzip.compress(pickle.dumps(Plant(marker)))
    for planted in (crafted, b"\0" * 32 + crafted):
        file.write_bytes(planted)
        assert env._read_translation(file) is None
        assert not marker.exists()
    env._write_translation(file, ("task", "begin_version"))
    assert env._read_translation(file) == ("task", "begin_version")
    key = tmp_path / "cache" / "alfworld" / "sas" / "signing.key"
    assert key.stat().st_mode & 0o077 == 0
    env._cache_key.cache_clear()


def _mkdir(path: Path) -> Path:
    os.makedirs(path, exist_ok=True)
    return path
