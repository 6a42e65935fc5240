"""Acceptance: every shared valid_seen game is won by replaying its walkthrough through AlfworldEnv."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from precision_router_alfworld import GameInfo, find_games

pytestmark = [pytest.mark.slow, pytest.mark.alfworld]


def _replay(games: list[GameInfo]) -> dict[str, str]:
    """Replay each game's walkthrough with one env; return what went wrong, by game name."""
    from precision_router_alfworld import AlfworldEnv

    problems: dict[str, str] = {}
    with AlfworldEnv(games[0]) as env:
        for game in games:
            env.reset(game)
            won = False
            for i, action in enumerate(game.walkthrough):
                if action not in env.admissible_commands:
                    problems[game.name] = f"step {i}: {action!r} not admissible"
                    break
                _, won, _, _ = env.step(action)
            if not won and game.name not in problems:
                problems[game.name] = "walkthrough ended without a win"
    return problems


def test_every_valid_seen_walkthrough_wins(shared_data: Path):
    games = find_games(shared_data, split="valid_seen")
    assert len(games) == 140
    # One engine per worker process, games dealt round-robin (kitchens are the slow ones).
    workers = max(1, min(2, os.cpu_count() or 1))
    chunks = [games[i::workers] for i in range(workers)]
    if workers == 1:
        results = [_replay(chunks[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_replay, chunks)
    problems = {name: why for result in results for name, why in result.items()}
    assert not problems, problems
