"""Fine-tuning on expert trajectories: the renderer, the training loop, adapters as presets."""

from __future__ import annotations

import pytest
import torch
from precision_router_alfworld.agent import AgentConfig, AlfworldAgent
from precision_router_alfworld.env import AlfworldEnv
from precision_router_alfworld.finetune import (
    IGNORE,
    FinetuneConfig,
    _validate,
    finetune,
    render_trajectory,
    split_by_game,
)
from precision_router_alfworld.generate import generate_games
from precision_router_alfworld.prompts import PromptConfig
from precision_router_alfworld.trajectories import expert_trajectories, read_trajectories, write_trajectories

from precision_router import AlwaysHigh, RoutedChatModel
from precision_router.models.local import LocalChatModel
from precision_router.models.scoring import _candidate_ids, _end_token_id
from precision_router.testing import tiny_causal_lm, tiny_precision_pair, tiny_tokenizer

PROMPT = PromptConfig(track_inventory=True, instructions=False)


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    folder = tmp_path_factory.mktemp("games")
    return generate_games(folder, 2, seed=3, task_types=["pick_and_place_simple", "pick_clean_then_place_in_recep"])


@pytest.fixture(scope="module")
def trajectories(games):
    return list(expert_trajectories(games, search_variants=1, seed=0))


def test_walkthroughs_and_search_variants_win(games, trajectories, tmp_path):
    assert [t.variant for t in trajectories] == ["expert", "search-1", "expert", "search-1"]
    for expert, search in zip(trajectories[::2], trajectories[1::2], strict=True):
        assert expert.won and search.won and expert.game == search.game
        assert len(search.turns) > len(expert.turns)  # the search visits other places first
        assert all(o != "Nothing happens." for _, o in search.turns)  # every action does something
        acts = [a for a, _ in expert.turns if not a.startswith(("go to", "open"))]
        assert [a for a, _ in search.turns if not a.startswith(("go to", "open"))] == acts
    # the same seed plays the same detours; the file round-trips
    again = list(expert_trajectories(games, search_variants=1, seed=0))
    assert again == trajectories
    write_trajectories(tmp_path / "t.jsonl.gz", trajectories)
    assert read_trajectories(tmp_path / "t.jsonl.gz") == trajectories


def test_the_renderer_gives_exactly_the_agents_prompts(games, trajectories):
    """Drive the real agent along a walkthrough; every prompt it scores is a prefix of the rendered sequence."""
    high, low = tiny_precision_pair("rtn-3bit")
    agent = AlfworldAgent(RoutedChatModel(high, low, AlwaysHigh()), AgentConfig(max_steps=30, prompt=PROMPT))
    trajectory = trajectories[1]  # a search variant: detours included
    prompts: list[str] = []

    def follow_the_walkthrough(prompt, candidates, normalize="sum"):
        wanted = trajectory.turns[len(prompts)][0]
        prompts.append(prompt)
        return torch.tensor([0.0 if c == wanted else -100.0 for c in candidates], dtype=torch.float64)

    agent.scorers["high"].score = follow_the_walkthrough  # type: ignore[method-assign]
    game = next(g for g in games if g.name == trajectory.game)
    episode = agent.run_episode(AlfworldEnv(game, max_steps=30), conversation_id="walk")
    assert episode.success and [s.action for s in episode.steps] == [a for a, _ in trajectory.turns]

    rendered = render_trajectory(high, trajectory, PROMPT)
    tokenizer = high.tokenizer
    end_id = _end_token_id(tokenizer, None)
    for prompt, (action, _) in zip(prompts, trajectory.turns, strict=True):
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        (action_ids,) = _candidate_ids(tokenizer, [action], end_id)
        assert rendered.input_ids[: len(ids)] == ids
        assert rendered.input_ids[len(ids) : len(ids) + len(action_ids)] == action_ids
        assert rendered.labels[len(ids) : len(ids) + len(action_ids)] == action_ids
        assert all(label == IGNORE for label in rendered.labels[: len(ids)][-3:])
    assert rendered.target_tokens == sum(len(_candidate_ids(tokenizer, [a], end_id)[0]) for a, _ in trajectory.turns)


def _chat(seed: int = 0) -> LocalChatModel:
    tokenizer = tiny_tokenizer()
    return LocalChatModel(hf_model=tiny_causal_lm(tokenizer, seed=seed), tokenizer=tokenizer, model_name="tiny")


def _config(**overrides):
    settings = {"prompt": PROMPT, "rank": 4, "alpha": 8, "dropout": 0.0, "lr": 5e-3, "epochs": 4.0}
    settings |= {"batch_tokens": 100_000, "val_fraction": 0.0, "eval_every": 2, "warmup_steps": 0}
    return FinetuneConfig(**(settings | overrides))


def test_a_few_steps_lower_the_loss_and_resume_where_they_stopped(trajectories, tmp_path):
    chat = _chat()
    examples = [render_trajectory(chat, t, PROMPT) for t in trajectories]
    before = _validate(chat.hf_model, examples, 100_000, 0)
    summary = finetune(
        trajectories, tmp_path / "run", _config(), model=chat.hf_model, tokenizer=chat.tokenizer, max_steps=4
    )
    after = _validate(chat.hf_model, examples, 100_000, 0)
    assert summary["steps"] == 4 and after < before - 0.1
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    trained = [p.detach().clone() for n, p in chat.hf_model.named_parameters() if "lora_" in n]

    # the same run in two halves, the second resumed from state.pt, ends at the same weights
    halves = _chat()
    finetune(
        trajectories, tmp_path / "halves", _config(), model=halves.hf_model, tokenizer=halves.tokenizer, max_steps=2
    )
    resumed = _chat()
    finetune(
        trajectories, tmp_path / "halves", _config(), model=resumed.hf_model, tokenizer=resumed.tokenizer, max_steps=4
    )
    again = [p.detach() for n, p in resumed.hf_model.named_parameters() if "lora_" in n]
    assert len(again) == len(trained) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(again, trained, strict=True))


def test_resume_refuses_a_state_of_other_settings(trajectories, tmp_path):
    from precision_router_alfworld.finetune import FinetuneError

    chat = _chat()
    finetune(trajectories, tmp_path, _config(), model=chat.hf_model, tokenizer=chat.tokenizer, max_steps=1)
    other = _chat()
    with pytest.raises(FinetuneError, match="--no-resume"):
        finetune(trajectories, tmp_path, _config(lr=1e-4), model=other.hf_model, tokenizer=other.tokenizer)


def test_validation_games_are_held_out_whole(trajectories):
    train, val = split_by_game(trajectories, 0.5, seed=0)
    assert len(val) == 2 and {t.game for t in train}.isdisjoint({t.game for t in val})


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rank=0"):
        FinetuneConfig(rank=0)
    with pytest.raises(ValueError, match="val_fraction"):
        FinetuneConfig(val_fraction=1.5)


def test_an_adapter_merges_into_its_base(tmp_path, monkeypatch):
    """``merge_adapter`` writes a plain checkpoint that computes what base + adapter computes."""
    from peft import LoraConfig, get_peft_model

    from precision_router.models.loading import load_causal_lm, merge_adapter

    monkeypatch.setenv("PRECISION_ROUTER_CACHE", str(tmp_path / "cache"))
    tokenizer = tiny_tokenizer()
    base = tiny_causal_lm(tokenizer)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    adapted = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False))
    adapted.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([tokenizer("go to desk 1").input_ids])
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits
    merged = load_causal_lm(merge_adapter(tmp_path / "base", tmp_path / "adapter", "tiny-adapted"))
    with torch.no_grad():
        got = merged.model(input_ids=ids).logits
        plain = load_causal_lm(tmp_path / "base").model(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)


def test_the_fine_tuned_preset_is_registered_by_entry_point():
    from precision_router.models.presets import all_presets, get_preset

    preset = get_preset("smollm2-135m-alfworld")
    assert preset is not None and preset.base == "smollm2-135m-instruct"
    assert "smollm2-135m-alfworld" in all_presets()
    assert (preset.adapter() / "adapter_config.json").is_file()
    assert preset.cache_key().startswith("smollm2-135m-alfworld-")
