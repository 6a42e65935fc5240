"""Fixtures for the ALFWorld integration: the shared development games and a private cache folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_alfworld_data() -> Path | None:
    """``$ALFWORLD_DATA`` if set, else ``<repo root>/../shared/alfworld`` if it exists (CI clones beside it)."""
    env = os.environ.get("ALFWORLD_DATA")
    if env:
        return Path(env).expanduser()
    shared = REPO_ROOT.parent / "shared" / "alfworld"
    return shared if shared.is_dir() else None


SHARED = shared_alfworld_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the development games' ``json_2.1.1`` (skips when there is none)."""
    if SHARED is None or not (SHARED / "json_2.1.1").is_dir():
        pytest.skip("no ALFWorld games: set $ALFWORLD_DATA or put the shared games in ../shared/alfworld")
    return SHARED


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep translations, transcripts and generated games out of the user's cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRECISION_ROUTER_CACHE", str(tmp_path_factory.mktemp("precision-router-cache")))
        yield


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    """A tiny ALFWorld-shaped tree (no real games): ``<tmp>/data/json_2.1.1/{train,valid_seen}``."""
    root = tmp_path / "data" / "json_2.1.1"
    layout = {
        "train": [
            ("pick_and_place_simple-Book-None-Desk-301", "trial_T1", True),
            ("pick_and_place_simple-Pen-None-Shelf-302", "trial_T2", True),
            ("pick_and_place_simple-Pen-None-Shelf-302", "trial_T3", True),
            ("look_at_obj_in_light-Book-None-DeskLamp-303", "trial_T4", True),
            ("pick_two_obj_and_place-CD-None-Safe-304", "trial_T5", False),
            ("pick_clean_then_place_in_recep-AppleSliced-None-Fridge-5", "trial_T6", True),
            ("pick_and_place_with_movable_recep-Pen-Mug-Desk-306", "trial_T7", True),
        ]
        + [(f"pick_heat_then_place_in_recep-Egg-None-Fridge-{i}", "trial_H", True) for i in range(10, 20)],
        "valid_seen": [("pick_cool_then_place_in_recep-Apple-None-CounterTop-1", "trial_V1", True)],
    }
    for split, games in layout.items():
        for folder, trial, solvable in games:
            path = root / split / folder / trial / "game.tw-pddl"
            path.parent.mkdir(parents=True)
            document = {"solvable": solvable, "walkthrough": ["go to desk 1"], "grammar": "", "pddl_problem": ""}
            path.write_text(json.dumps(document))
    return tmp_path / "data"
