from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from precision_router_alfworld import TASK_TYPES, AlfworldDataError, GameInfo, data_root, find_games

from precision_router.errors import PrecisionRouterError


@pytest.mark.alfworld
def test_task_types_are_alfworlds_six():
    from alfworld.agents.environment.alfred_tw_env import TASK_TYPES as ALFWORLD_TASK_TYPES

    assert list(TASK_TYPES) == [ALFWORLD_TASK_TYPES[i] for i in range(1, 7)]


def test_data_root_accepts_every_layout(fake_data: Path, monkeypatch: pytest.MonkeyPatch):
    root = (fake_data / "json_2.1.1").resolve()
    assert data_root(fake_data) == root
    assert data_root(fake_data / "json_2.1.1") == root
    assert data_root(fake_data / "json_2.1.1" / "valid_seen") == root
    assert data_root(str(fake_data)) == root
    monkeypatch.setenv("ALFWORLD_DATA", str(fake_data))
    assert data_root() == root
    assert [g.name for g in find_games()] == ["pick_cool_then_place_in_recep-Apple-None-CounterTop-1/trial_V1"]


def test_a_split_folder_finds_its_own_and_sibling_splits(fake_data: Path):
    split = fake_data / "json_2.1.1" / "valid_seen"
    assert len(find_games(split, split="valid_seen")) == 1
    assert len(find_games(split, split="train")) > 1


@pytest.mark.parametrize("where", ["missing", "empty", "unset"])
def test_no_data_is_a_clear_error(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    data = {"missing": tmp_path / "nope", "empty": tmp_path, "unset": None}[where]
    with pytest.raises(AlfworldDataError) as info:
        find_games(data)
    assert isinstance(info.value, PrecisionRouterError)
    message = str(info.value)
    assert "alfworld-download" in message
    assert "generate_games" in message
    assert "ALFWORLD_DATA" in message


def test_a_bad_env_var_is_named_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "gone"))
    with pytest.raises(AlfworldDataError, match=r"\$ALFWORLD_DATA=.*gone"):
        data_root()


def test_a_missing_split_lists_the_available_ones(fake_data: Path):
    with pytest.raises(AlfworldDataError, match=r"valid_unseen.*\['train', 'valid_seen'\]"):
        find_games(fake_data, split="valid_unseen")


def test_find_games_skips_unsolvable_sliced_and_movable_games(fake_data: Path):
    names = [g.name for g in find_games(fake_data, split="train")]
    assert "pick_two_obj_and_place-CD-None-Safe-304/trial_T5" not in names  # solvable: false
    assert not any("Sliced" in n or "movable" in n for n in names)
    assert names == sorted(names)
    assert len(names) == 14


def test_game_info_fields(fake_data: Path):
    game = find_games(fake_data, split="train", task_types="look_at_obj_in_light")[0]
    assert game.task_type == "look_at_obj_in_light"
    assert game.split == "train"
    assert game.name == "look_at_obj_in_light-Book-None-DeskLamp-303/trial_T4"
    assert game.folder == "look_at_obj_in_light-Book-None-DeskLamp-303"
    assert (game.object_type, game.receptacle_type) == ("Book", "DeskLamp")
    assert game.path.name == "game.tw-pddl" and game.path.is_absolute()
    assert game.walkthrough == ["go to desk 1"]
    assert GameInfo.from_path(game.path) == game
    assert GameInfo.from_path(game.path.parent) == game


def test_game_info_from_a_missing_path(tmp_path: Path):
    with pytest.raises(AlfworldDataError, match="No ALFWorld game file"):
        GameInfo.from_path(tmp_path / "nothing.tw-pddl")


def test_filters(fake_data: Path):
    heat = find_games(fake_data, split="train", task_types="pick_heat_then_place_in_recep")
    assert len(heat) == 10
    assert {g.task_type for g in heat} == {"pick_heat_then_place_in_recep"}
    both = find_games(fake_data, split="train", task_types=["pick_and_place_simple", "look_at_obj_in_light"])
    assert Counter(g.task_type for g in both) == {"pick_and_place_simple": 3, "look_at_obj_in_light": 1}
    with pytest.raises(ValueError, match="Unknown ALFWorld task type"):
        find_games(fake_data, task_types=["pick_and_place"])
    with pytest.raises(ValueError, match="n must be"):
        find_games(fake_data, n=-1)


def test_first_n_and_seeded_samples(fake_data: Path):
    everything = find_games(fake_data, split="train")
    assert find_games(fake_data, split="train", n=4) == everything[:4]
    assert find_games(fake_data, split="train", n=0) == []
    sample = find_games(fake_data, split="train", n=5, seed=7)
    assert sample == find_games(fake_data, split="train", n=5, seed=7)  # deterministic
    assert sample != everything[:5]
    assert find_games(fake_data, split="train", n=8, seed=7)[:5] == sample  # a larger n extends it
    assert find_games(fake_data, split="train", n=5, seed=8) != sample
    assert sorted(find_games(fake_data, split="train", seed=3), key=lambda g: g.name) == everything


def test_skip_leaves_out_the_games_a_smaller_sample_took(fake_data: Path):
    everything = find_games(fake_data, split="train", seed=7)
    trained_on = find_games(fake_data, split="train", n=5, seed=7)
    held_out = find_games(fake_data, split="train", seed=7, skip=5)
    assert held_out == everything[5:]
    assert not set(trained_on) & set(held_out)
    assert find_games(fake_data, split="train", n=3, seed=7, skip=5) == everything[5:8]
    assert find_games(fake_data, split="train", seed=7, skip=100) == []
    with pytest.raises(ValueError, match="skip must be"):
        find_games(fake_data, skip=-1)


def test_cli_skip_selects_the_held_out_games(fake_data: Path):
    import argparse

    from precision_router_alfworld.cli import add_agent_arguments
    from precision_router_alfworld.factory import resolve_games

    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    base = ["--data", str(fake_data), "--split", "train", "--seed", "3"]
    assert resolve_games(parser.parse_args([*base, "--skip", "4"])) == resolve_games(parser.parse_args(base))[4:]


def test_shared_development_games(shared_data: Path):
    valid = find_games(shared_data, split="valid_seen")
    train = find_games(shared_data, split="train")
    assert len(valid) == 140
    assert len(train) == 600
    assert Counter(g.task_type for g in train) == dict.fromkeys(TASK_TYPES, 100)
    assert set(Counter(g.task_type for g in valid)) == set(TASK_TYPES)
    assert len({g.name for g in valid}) == 140


def test_importing_the_package_loads_no_engine():
    code = (
        "import sys, precision_router_alfworld as p\n"
        "p.find_games; p.GameInfo; p.TASK_TYPES; p.AlfworldEnv; p.fewshot_transcript; p.generate_games\n"
        "heavy = [m for m in ('textworld', 'alfworld', 'fast_downward', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert set(p.__all__) <= set(dir(p))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_shards_split_the_selected_games(fake_data):
    import argparse

    from precision_router_alfworld.cli import add_agent_arguments
    from precision_router_alfworld.factory import resolve_games

    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    base = ["--data", str(fake_data), "--split", "train", "--games", "10", "--seed", "3"]
    everything = resolve_games(parser.parse_args(base))
    shards = [resolve_games(parser.parse_args([*base, "--shard", f"{k}/3"])) for k in (1, 2, 3)]
    assert sorted(g.path for s in shards for g in s) == sorted(g.path for g in everything)
    assert all(4 >= len(s) >= 3 for s in shards)
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--shard", "4/3"])


def test_cli_setting_bundles_options_and_later_flags_override():
    import argparse

    from precision_router_alfworld.cli import add_agent_arguments
    from precision_router_alfworld.factory import run_name
    from precision_router_alfworld.settings import SETTINGS

    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    plain = parser.parse_args([])
    bench = parser.parse_args(["--setting", "benchmark"])
    for key, value in SETTINGS["benchmark"].items():
        assert getattr(bench, key) == value
    assert plain.exclude == ["help"] and not plain.restate_goal
    bench.exclude.append("look")  # a copy: the bundle itself is untouched
    assert SETTINGS["benchmark"]["exclude"].count("look") == 1
    override = parser.parse_args(["--setting", "benchmark", "--max-steps", "12", "--low", "gptq-4bit"])
    assert (override.max_steps, override.low, override.repeat_penalty) == (12, "gptq-4bit", 10.0)
    bench.policy = override.policy = "high"
    assert run_name(bench) != run_name(override)
    with pytest.raises(SystemExit):
        parser.parse_args(["--setting", "no-such-setting"])


def test_policy_key_tells_retrained_and_recalibrated_policies_apart(tmp_path):
    import torch
    from precision_router_alfworld.factory import policy_key

    from precision_router import LearnedRouter, RandomRouter, RouterConfig, RouterNet
    from precision_router.routing.threshold import UncertaintyRouter
    from precision_router.testing import HashingEncoder

    encoder = HashingEncoder(16)
    config = RouterConfig(embed_dim=16, d_model=16, n_heads=2, encoder=encoder.name)
    keys = set()
    for seed in (0, 1):  # the same path, retrained: a different key, so no stale cached episodes
        torch.manual_seed(seed)
        RouterNet(config).save(tmp_path / "router.pt")
        keys.add(
            policy_key("learned:router.pt", LearnedRouter.from_checkpoint(tmp_path / "router.pt", encoder=encoder))
        )
    assert len(keys) == 2 and all(k.startswith("learned:router.pt#v") for k in keys)
    assert policy_key("random:0.2", RandomRouter(0.2, seed=0)) == "random:0.2"
    calibrated = [policy_key("calibrated:entropy@0:0.3", UncertaintyRouter(0.5), on) for on in ("aaa", "bbb")]
    assert calibrated == ["calibrated:entropy@0:0.3#calaaa", "calibrated:entropy@0:0.3#calbbb"]
