"""Evaluation metrics, the report table and the frontier plot, on hand-made episodes."""

from __future__ import annotations

import math

import pytest

from precision_router.evaluation import (
    PolicyResult,
    cpt,
    ghc,
    ghc_se,
    paired_difference,
    paired_table,
    pgr,
    plot_frontier,
    report_table,
    summarize,
)
from precision_router.traces.schema import Episode, Step


def _episode(routes: str, success: bool, tokens: int = 10) -> Episode:
    steps = [Step(index=i, route="high" if r == "h" else "low", input_tokens=tokens) for i, r in enumerate(routes)]
    return Episode(steps=steps, success=success)


def _policy(name: str, wins: int, games: int, routes: str) -> PolicyResult:
    outcomes = {f"game{i}": i < wins for i in range(games)}
    return PolicyResult(name, summarize([_episode(routes, won) for won in outcomes.values()]), outcomes)


def test_summarize_counts_success_share_and_tokens():
    episodes = [_episode("hll", True, tokens=30), _episode("l", False, tokens=10), _episode("hh", None)]  # type: ignore[arg-type]
    m = summarize(episodes)
    assert m.episodes == 3 and m.success == pytest.approx(1 / 3)  # no outcome counts as a failure
    assert m.success_se == pytest.approx(math.sqrt((1 / 3) * (2 / 3) / 3))
    assert m.high_share == pytest.approx(3 / 6) and m.mean_steps == pytest.approx(2)
    assert m.token_high_share == pytest.approx((30 + 10 + 10) / (90 + 10 + 20))


def test_seconds_per_episode_is_wall_clock_and_compared_with_high():
    def timed(routes: str, seconds: float | None) -> Episode:
        episode = _episode(routes, True)
        episode.started_at = 1000.0
        episode.ended_at = None if seconds is None else 1000.0 + seconds
        return episode

    high = summarize([timed("hh", 10.0), timed("hh", 30.0)])
    routed = summarize([timed("hl", 4.0), timed("hl", 6.0), timed("hl", None)])  # unfinished: left out
    assert high.seconds_per_episode == pytest.approx(20.0) and routed.seconds_per_episode == pytest.approx(5.0)
    assert math.isnan(summarize([timed("l", None)]).seconds_per_episode)
    table = report_table([PolicyResult("high", high), PolicyResult("low", routed)])
    low_row = table.splitlines()[3].split(" | ")
    assert low_row[-2:] == ["5.0", "0.25 |"]  # s/game and time vs high-only


def test_gain_metrics_at_known_points():
    assert ghc(0.5, 0.2, 0.3) == pytest.approx(1.0)
    assert math.isnan(ghc(0.5, 0.2, 0.0))
    assert ghc_se(0.03, 0.04, 0.5) == pytest.approx(0.1)
    assert pgr(0.35, 0.2, 0.5) == pytest.approx(0.5) and math.isnan(pgr(0.3, 0.4, 0.4))
    # the curve low (0, .2) -> policy (.2, .4) -> high (1, .6): a quarter of the gap at c = .1
    assert cpt(0.25, 0.2, 0.4, 0.2, 0.6) == pytest.approx(0.1)
    assert cpt(0.5, 0.2, 0.4, 0.2, 0.6) == pytest.approx(0.2)
    assert cpt(0.95, 0.2, 0.4, 0.2, 0.6) == pytest.approx(0.2 + 0.8 * (0.58 - 0.4) / 0.2)
    assert cpt(0.5, 0.3, 0.6, 0.2, 0.6) == pytest.approx(0.15)  # as good as high at c = .3


def test_report_table_and_plot(tmp_path):
    results = [
        _policy("high", 6, 10, "hhhh"),
        _policy("low", 2, 10, "llll"),
        _policy("random:0.5", 4, 10, "hlhl"),
        _policy("learned:r.pt", 5, 10, "hlll"),
    ]
    table = report_table(results)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    assert set(rows) == {"high", "low", "random:0.5", "learned:r.pt"}
    learned = rows["learned:r.pt"]
    assert learned[1] == "0.500" and learned[3] == "0.250"  # S and c
    assert learned[5] == "1.200"  # GHC = (0.5 - 0.2) / 0.25
    se = math.sqrt(0.25 / 10 + 0.16 / 10) / 0.25
    assert learned[6] == f"{se:.3f}" and learned[7] == "0.750"  # its SE and PGR
    assert rows["low"][5] == "—"
    png = plot_frontier(results, tmp_path / "frontier.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_difference_counts_discordant_games():
    a = {"g1": True, "g2": True, "g3": False, "g4": False, "extra": True}
    b = {"g1": True, "g2": False, "g3": False, "g4": True}
    diff, se, n, only_a, only_b = paired_difference(a, b)
    assert (diff, n, only_a, only_b) == (0.0, 4, 1, 1)
    assert se == pytest.approx(math.sqrt((2 / 3) / 4))  # diffs 0, 1, 0, -1: variance 2/3
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference({"g1": True}, {"g1": False})


def test_paired_table_compares_with_low_and_the_nearest_random():
    results = [
        _policy("high", 6, 10, "hhhh"),
        _policy("low", 2, 10, "llll"),
        _policy("random:0.2", 3, 10, "hlllh"),
        _policy("random:0.8", 5, 10, "hhhhl"),
        _policy("learned:r.pt", 5, 10, "hlll"),
    ]
    rows = [line.split(" | ") for line in paired_table(results).splitlines()[2:]]
    assert [(r[0].lstrip("| "), r[1]) for r in rows] == [("learned:r.pt", "low"), ("learned:r.pt", "random:0.2")]
    assert rows[0][2].startswith("+0.300") and rows[0][3].rstrip(" |") == "3 / 0"
    assert paired_table(results[:2]) == ""


def _randomised_games(n_games: int, p: float, decisive: int, seed: int) -> list[Episode]:
    """Random-policy episodes where only step ``decisive``'s precision matters: high wins, low loses."""
    import random

    rng = random.Random(seed)
    episodes = []
    for g in range(n_games):
        routes = ["high" if rng.random() < p else "low" for _ in range(12)]
        steps = [Step(index=i, route=r, p_high=p) for i, r in enumerate(routes)]  # type: ignore[arg-type]
        won = routes[decisive] == "high"
        episodes.append(Episode(steps=steps, success=won, policy=f"random:{p}", info={"game": f"game{g}"}))
    return episodes


def test_step_uplift_finds_the_one_step_that_decides():
    from precision_router.evaluation import step_uplift

    episodes = _randomised_games(200, 0.2, decisive=3, seed=0) + _randomised_games(200, 0.3, decisive=3, seed=1)
    # a deterministic router's episodes are left out: its routes depend on the state
    episodes += [Episode(steps=[Step(index=0, route="high")], success=True, policy="margin@0", info={"game": "x"})]
    rows = step_uplift(episodes, [0, 3, 4, 12], bootstrap=50)
    assert [(r.start, r.stop) for r in rows] == [(0, 3), (3, 4), (4, 12)]
    before, decisive, after = rows
    assert decisive.effect == pytest.approx(1.0) and decisive.se == pytest.approx(0.0, abs=1e-9)
    assert decisive.steps == 400 and 0 < decisive.high < 400
    for row in (before, after):
        assert row.effect is not None and abs(row.effect) < 3 * row.se + 0.05 and row.se > 0


def test_step_uplift_refuses_traces_without_randomised_routes():
    from precision_router.errors import EmptyTraceSetError
    from precision_router.evaluation import step_uplift

    with pytest.raises(EmptyTraceSetError, match="random:<p>"):
        step_uplift([_episode("hl", True)])
    with pytest.raises(ValueError, match="increasing"):
        step_uplift(_randomised_games(4, 0.5, 0, 0), [5, 2])
