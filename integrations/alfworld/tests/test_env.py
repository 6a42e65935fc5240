from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
from precision_router_alfworld import AlfworldDataError, AlfworldEnv, AlfworldEnvError, GameInfo, find_games

pytestmark = pytest.mark.alfworld


@pytest.fixture(scope="module")
def games(shared_data: Path) -> list[GameInfo]:
    """One valid_seen game of each task type."""
    picked = {}
    for game in find_games(shared_data, split="valid_seen"):
        picked.setdefault(game.task_type, game)
    return list(picked.values())


@pytest.fixture(scope="module")
def env(games: list[GameInfo]):
    with AlfworldEnv(games[0]) as env:
        yield env


def test_reset_drops_the_banner_and_parses_the_task(env: AlfworldEnv, games: list[GameInfo]):
    for game in games:
        obs, info = env.reset(game)
        assert "Welcome to TextWorld" not in obs
        assert not obs.startswith("-=")
        assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see ")
        _room, task_line = obs.split("\n\n")
        assert task_line == f"Your task is to: {info['task']}."
        assert not info["task"].startswith("Your task")
        assert info["task"] == env.task
        assert info["task_type"] == game.task_type == env.task_type
        assert info["game"] == str(game.path)
        assert info["name"] == game.name
        assert info["won"] is False and info["steps"] == 0
        assert env.steps_taken == 0 and not env.done and not env.won


def test_admissible_commands(env: AlfworldEnv, games: list[GameInfo]):
    _, info = env.reset(games[0])
    commands = info["admissible_commands"]
    assert commands == sorted(commands) == env.admissible_commands
    assert {"look", "inventory", "help"} <= set(commands)
    assert all(re.fullmatch(r"go to [a-z]+ \d+", c) for c in commands if c.startswith("go to"))
    first = games[0].walkthrough[0]
    assert first in commands
    obs, _won, _done, info = env.step(first)
    assert obs.startswith(f"You arrive at {first.removeprefix('go to ')}.")
    assert info["admissible_commands"] == env.admissible_commands
    assert any(c.startswith("examine ") for c in env.admissible_commands)


def test_think_invalid_and_normalised_actions(env: AlfworldEnv, games: list[GameInfo]):
    _, info = env.reset(games[0])
    before = info["admissible_commands"]
    obs, won, done, info = env.step("think: first I should look around.")
    assert (obs, won, done) == ("OK.", False, False)
    assert info["think"] and info["valid"] and info["steps"] == 1
    assert info["admissible_commands"] == before
    obs, won, done, info = env.step("Think: capitals are thoughts too")
    assert obs == "OK."
    obs, _, _, info = env.step("fly to the moon")
    assert obs == "Nothing happens." and not info["valid"] and not info["think"]
    obs, _, _, info = env.step("Go to " + games[0].walkthrough[0].removeprefix("go to "))  # no case fixing
    assert obs == "Nothing happens."
    obs, _, _, info = env.step(f"  {games[0].walkthrough[0]}. \n")
    assert obs.startswith("You arrive at") and info["valid"] and info["action"] == games[0].walkthrough[0]
    assert env.steps_taken == 5


def test_max_steps_cap(games: list[GameInfo]):
    with AlfworldEnv(games[0], max_steps=3) as env:
        with pytest.raises(AlfworldEnvError, match="before reset"):
            env.step("look")
        env.reset()
        assert env.step("think: one")[2] is False
        assert env.step("look")[2] is False
        _obs, won, done, info = env.step("nonsense")
        assert done and not won and env.done and info["steps"] == 3
        with pytest.raises(AlfworldEnvError, match="over"):
            env.step("look")
        env.reset()  # a new episode starts afresh
        assert env.steps_taken == 0 and not env.done
    with pytest.raises(ValueError):
        AlfworldEnv(games[0], max_steps=0)


def test_replaying_the_same_env_twice_and_switching_games(env: AlfworldEnv, games: list[GameInfo]):
    for game in (games[1], games[1], games[2]):
        env.reset(game)
        for i, action in enumerate(game.walkthrough):
            _obs, won, done, info = env.step(action)
            assert won == (i == len(game.walkthrough) - 1)
        assert done and env.won and info["won"] and env.steps_taken == len(game.walkthrough)
        with pytest.raises(AlfworldEnvError):
            env.step("look")


def test_env_from_a_path_and_close(games: list[GameInfo]):
    game = games[3]
    env = AlfworldEnv(str(game.path.parent))
    assert env.game == game
    env.reset()
    env.close()
    _obs, info = env.reset()  # usable again after close
    assert info["name"] == game.name
    env.close()
    with pytest.raises(AlfworldDataError, match="No ALFWorld game file"):
        AlfworldEnv(game.path.parent.parent)


def test_engine_matches_plain_textworld(games: list[GameInfo]):
    """The memoised engine answers exactly what TextWorld + ALFWorld's wrappers answer."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    argv = list(sys.argv)
    rng = random.Random(0)
    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    game = games[0]  # a small bedroom: plain TextWorld is slow on big kitchens
    plain = textworld.start(str(game.path), request_infos=infos, wrappers=[AlfredDemangler(), AlfredInfos])
    with AlfworldEnv(game, cache=False) as env:
        state = plain.reset()
        obs, info = env.reset()
        assert obs == state["feedback"].split("\n\n", 1)[1]
        assert info["admissible_commands"] == state["admissible_commands"]
        actions = [rng.choice(state["admissible_commands"]) for _ in range(6)] + ["jump", *game.walkthrough]
        for action in actions:
            state, _, _ = plain.step(action)
            obs, won, _done, info = env.step(action)
            assert obs == state["feedback"].strip()
            assert info["admissible_commands"] == state["admissible_commands"]
            assert won == bool(state["won"])
    sys.argv = argv  # plain TextWorld leaves fast-downward's argv behind ...
    with AlfworldEnv(games[1], cache=False) as env:
        env.reset()
    assert sys.argv == argv  # ... the env puts it back


def test_translations_are_cached_on_disk(games: list[GameInfo]):
    from precision_router_alfworld.env import _sas_cache_file

    game = games[4]
    document = game.read()
    file = _sas_cache_file(document["pddl_domain"], document["pddl_problem"])
    file.unlink(missing_ok=True)
    with AlfworldEnv(game, cache=False) as env:
        env.reset()
    assert not file.exists()
    with AlfworldEnv(game) as env:
        env.reset()
    assert file.is_file()
    file.write_bytes(b"a torn file")
    with AlfworldEnv(game) as env:  # an unreadable cache file is translated again and replaced
        env.reset()
        for action in game.walkthrough:
            _, won, _, _ = env.step(action)
        assert won
    assert file.read_bytes() != b"a torn file"
