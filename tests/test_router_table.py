"""benchmarks/real_router_table.py: rows by policy, by merged prefixes and by run key."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest

from precision_router.traces.schema import Episode, Step

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_router_table.py"


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("real_router_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _episode(policy: str, run: str, game: str, success: bool, routes: str) -> Episode:
    steps = [Step(index=i, action="look", route="high" if r == "h" else "low") for i, r in enumerate(routes)]
    return Episode(policy=policy, success=success, steps=steps, info={"game": game, "run": f"{policy}|{run}"})


def _write(path: Path, episodes: list[Episode]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(e.model_dump_json() + "\n" for e in episodes)
    return path


def test_one_policy_played_with_two_low_models_becomes_two_rows(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    games = ["g0", "g1", "g2", "g3"]
    episodes = [_episode("high", "pair@q3", g, True, "hh") for g in games]
    episodes += [_episode("low", "pair@q3", g, g != "g3", "ll") for g in games]
    episodes += [_episode("low", "pair@q2", g, g == "g0", "ll") for g in games]
    path = _write(tmp_path / "episodes.jsonl.gz", episodes)

    merged = table.results_of(table.collect([path], {}))
    assert [r.name for r in merged] == ["high", "low"]  # without --run-name the later run overwrites

    runs = {"low|pair@q2": "low (q2)", "low|pair@q3": "low (q3)"}
    results = {r.name: r for r in table.results_of(table.collect([path], {}, runs=runs))}
    assert sorted(results) == ["high", "low (q2)", "low (q3)"]
    assert sum(results["low (q3)"].outcomes.values()) == 3
    assert sum(results["low (q2)"].outcomes.values()) == 1
    text = table.versus(list(results.values()), "high")
    assert "| low (q2) | -0.750 ±" in text
    assert "| low (q3) | -0.250 ±" in text


def test_partial_policies_are_left_out_unless_asked(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    episodes = [_episode("high", "r", g, True, "h") for g in ("g0", "g1")]
    episodes.append(_episode("random:0.2", "r", "g0", False, "l"))
    path = _write(tmp_path / "episodes.jsonl.gz", episodes)
    assert [r.name for r in table.results_of(table.collect([path], {}))] == ["high"]
    partial = table.results_of(table.collect([path], {}, partial=True))
    assert [r.name for r in partial] == ["high", "random:0.2"]
    assert all(len(r.outcomes) == 1 for r in partial)  # compared on the game both played


def test_positions_tabulate_the_high_share_by_step_index(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    episodes = [_episode("early", "r", g, True, "hhllll") for g in ("g0", "g1")]
    episodes += [_episode("late", "r", "g0", False, "llllhh"), _episode("late", "r", "g1", True, "lll")]
    rows = table.collect([_write(tmp_path / "episodes.jsonl.gz", episodes)], {})
    text = table.positions(rows, [0, 2, 4])
    lines = text.splitlines()
    assert lines[0] == "| policy | steps 0-1 | steps 2-3 | steps 4+ |"
    assert "| early | 1.00 (4) | 0.00 (4) | 0.00 (4) |" in lines
    assert "| late | 0.00 (4) | 0.00 (3) | 1.00 (2) |" in lines
    with pytest.raises(ValueError, match="increasing"):
        table.positions(rows, [5, 2])
