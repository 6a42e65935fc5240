from __future__ import annotations

import time
from pathlib import Path

import pytest
from precision_router_alfworld import TASK_TYPES, fewshot_transcript, find_games, game_transcript

pytestmark = pytest.mark.alfworld


def _check(text: str, task_type: str) -> None:
    assert text.startswith("You are in the middle of a room.")
    lines = text.splitlines()
    actions = [line[2:] for line in lines if line.startswith("> ")]
    thoughts = [a for a in actions if a.startswith("think: ")]
    assert len(thoughts) >= 2
    assert all(lines[lines.index(f"> {t}") + 1] == "OK." for t in thoughts)
    assert any(line.startswith("You arrive at ") for line in lines)  # real observations
    assert "Your task is to: " in text
    verb = {
        "pick_clean_then_place_in_recep": "clean ",
        "pick_heat_then_place_in_recep": "heat ",
        "pick_cool_then_place_in_recep": "cool ",
        "look_at_obj_in_light": "use ",
    }.get(task_type, "move ")
    assert any(a.startswith(verb) for a in actions)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_transcripts_from_train_games(task_type: str, shared_data: Path):
    text = fewshot_transcript(task_type, data=shared_data)
    _check(text, task_type)
    game = find_games(shared_data, split="train", task_types=task_type, seed=0)[0]
    assert text == game_transcript(game)
    for action in game.walkthrough:
        assert f"> {action}\n" in text + "\n"


def test_k_transcripts_and_the_disk_cache(shared_data: Path):
    from precision_router.cache import cache_dir

    task_type = "pick_and_place_simple"
    two = fewshot_transcript(task_type, data=shared_data, k=2, seed=1)
    parts = two.split("\n\nYou are in the middle of a room.")
    assert len(parts) == 2
    assert two.count("Your task is to: ") == 2
    assert list(cache_dir("alfworld", "fewshot").glob("*.json"))
    start = time.perf_counter()
    assert fewshot_transcript(task_type, data=shared_data, k=2, seed=1) == two
    assert time.perf_counter() - start < 1.0  # served from the cache, no game is loaded
    assert fewshot_transcript(task_type, data=shared_data, k=2, seed=2) != two
    assert fewshot_transcript(task_type, data=shared_data, k=0) == ""


def test_explicit_games(shared_data: Path):
    games = find_games(shared_data, split="valid_seen", task_types="look_at_obj_in_light", n=2)
    text = fewshot_transcript("look_at_obj_in_light", games=games, k=2)
    _check(text, "look_at_obj_in_light")
    with pytest.raises(ValueError, match="None of the"):
        fewshot_transcript("pick_two_obj_and_place", games=games)
    with pytest.raises(ValueError, match="Unknown"):
        fewshot_transcript("pick_three_obj")


def test_without_alfworld_data_generated_games_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from precision_router.cache import cache_dir

    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(empty))
    monkeypatch.setenv("PRECISION_ROUTER_CACHE", str(tmp_path / "cache"))
    for task_type in TASK_TYPES:
        text = fewshot_transcript(task_type)
        _check(text, task_type)
    generated = find_games(cache_dir("alfworld", "generated"), split="generated")
    assert {g.task_type for g in generated} == set(TASK_TYPES)
    assert fewshot_transcript("pick_two_obj_and_place") == fewshot_transcript("pick_two_obj_and_place")
