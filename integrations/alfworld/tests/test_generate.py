from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from precision_router_alfworld import TASK_TYPES, AlfworldEnv, GameInfo, find_games, generate_games

pytestmark = pytest.mark.alfworld


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[GameInfo]]]:
    out = tmp_path_factory.mktemp("generated")
    games = {
        "easy": generate_games(out, 12, seed=0, difficulty="easy"),
        "hard": generate_games(out, 6, seed=0, difficulty="hard"),
    }
    return out, games


def test_all_six_task_types_in_the_alfworld_layout(generated):
    out, games = generated
    assert Counter(g.task_type for g in games["easy"]) == dict.fromkeys(TASK_TYPES, 2)
    assert Counter(g.task_type for g in games["hard"]) == dict.fromkeys(TASK_TYPES, 1)
    everything = games["easy"] + games["hard"]
    found = find_games(out, split="generated")
    assert sorted(found, key=lambda g: g.path) == sorted(everything, key=lambda g: g.path)
    for game in everything:
        assert game.split == "generated"
        rel = game.path.relative_to(out.resolve()).as_posix()
        assert re.fullmatch(
            rf"json_2\.1\.1/generated/{game.task_type}-[A-Za-z]+-None-[A-Za-z]+-\d+/trial_\w+/game\.tw-pddl", rel
        )
        document = json.loads(game.path.read_text())
        assert document["solvable"] is True
        assert document["walkthrough"]
        assert {"pddl_domain", "grammar", "pddl_problem"} <= set(document)
        assert "UNKNOWN GOAL" not in document["grammar"]


def test_every_generated_game_is_won_by_its_walkthrough(generated):
    _, games = generated
    everything = games["easy"] + games["hard"]
    with AlfworldEnv(everything[0]) as env:
        for game in everything:
            obs, info = env.reset(game)
            assert info["task"] and obs.endswith(f"Your task is to: {info['task']}.")
            for i, action in enumerate(game.walkthrough):
                assert action in env.admissible_commands, (game.name, i, action)
                _, won, _, _ = env.step(action)
            assert won, game.name


def test_difficulty_shapes_the_room(generated):
    _, games = generated
    with AlfworldEnv(games["easy"][0]) as env:
        for level, (low, high) in (("easy", (3, 5)), ("hard", (8, 12))):
            for game in games[level]:
                _, info = env.reset(game)
                receptacles = [c for c in info["admissible_commands"] if c.startswith("go to ")]
                assert low <= len(receptacles) <= high, (game.name, receptacles)
                if level == "easy":  # targets lie in plain sight: nothing is opened before the first take
                    walkthrough = game.walkthrough
                    first_take = next(i for i, c in enumerate(walkthrough) if c.startswith("take "))
                    assert not any(c.startswith("open ") for c in walkthrough[:first_take]), walkthrough


def test_generation_is_deterministic_and_idempotent(generated, tmp_path: Path):
    out, games = generated
    again = generate_games(tmp_path, 3, seed=0, difficulty="easy")
    for a, b in zip(again, games["easy"][:3], strict=True):
        assert a.name == b.name
        assert a.path.read_text() == b.path.read_text()
    mtimes = {g.path: g.path.stat().st_mtime_ns for g in games["easy"]}
    assert generate_games(out, 12, seed=0, difficulty="easy") == games["easy"]
    assert {g.path: g.path.stat().st_mtime_ns for g in games["easy"]} == mtimes  # kept, not rewritten
    other = generate_games(tmp_path, 3, seed=1, difficulty="easy")
    assert [g.path.read_text() for g in other] != [g.path.read_text() for g in again]


def test_one_task_type_and_medium(tmp_path: Path):
    games = generate_games(tmp_path, 2, seed=5, task_types="pick_heat_then_place_in_recep", difficulty="medium")
    assert [g.task_type for g in games] == ["pick_heat_then_place_in_recep"] * 2
    assert all(any(c.startswith("heat ") for c in g.walkthrough) for g in games)


def test_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="difficulty"):
        generate_games(tmp_path, 1, difficulty="brutal")
    with pytest.raises(ValueError, match="task type"):
        generate_games(tmp_path, 1, task_types=["make_coffee"])
    with pytest.raises(ValueError, match="n must"):
        generate_games(tmp_path, -1)
    assert generate_games(tmp_path, 0) == []
