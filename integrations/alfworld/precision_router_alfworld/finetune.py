"""Supervised fine-tuning (LoRA) of the agent's model on expert ALFWorld trajectories.

Each trajectory is rendered exactly as the agent renders its prompt in ``score`` mode: for step
``t`` the prompt is ``chat.render(build_messages(opening, turns[:t], ...))`` and the action is
scored as its tokens plus the end-of-turn token (what :class:`~precision_router.ActionScorer`
scores). Because the agent's prompts only grow at the end, one sequence holds every step: the
tokens of the last prompt plus the last action, with the loss on the action tokens of the
target steps only. :func:`render_trajectory` checks that each step's prompt is a token prefix
of that sequence, so training optimises exactly the scores the agent acts on.

Training is a short explicit loop: LoRA adapters (``peft``) on every linear layer of the base,
AdamW with warm-up and cosine decay, length-bucketed batches, a validation loss on held-out
games, the best-validation adapter kept, and a state file (weights-only) to resume from.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from precision_router.errors import PrecisionRouterError
from precision_router_alfworld.prompts import PromptConfig, build_messages
from precision_router_alfworld.trajectories import Trajectory

__all__ = ["FinetuneConfig", "RenderedExample", "finetune", "render_trajectory", "split_by_game"]

logger = logging.getLogger(__name__)

IGNORE = -100
"""Label of tokens that carry no loss."""

STATE_FILE = "state.pt"
ADAPTER_DIR = "adapter"
SUMMARY_FILE = "training.json"


class FinetuneError(PrecisionRouterError):
    """Fine-tuning cannot run as asked (no trajectories, a prompt that does not render as a prefix, ...)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """What and how to fine-tune.

    Attributes:
        base: the base model (a preset, folder or ``.gguf`` file).
        prompt: the agent's prompt options; the fine-tuned agent must use the same ones.
        rank: LoRA rank.
        alpha: LoRA scaling numerator (scale = alpha / rank).
        dropout: LoRA dropout.
        target_modules: the linear layers that get adapters.
        top_layers: adapt only the top this many transformer layers (``None``: all). The
            backward pass stops at the lowest adapted layer, so fewer layers train faster.
        lr: peak learning rate.
        epochs: passes over the training trajectories (fractions allowed).
        batch_tokens: most tokens (padding included) in one batch.
        warmup_steps: linear warm-up before the cosine decay.
        weight_decay: AdamW weight decay.
        val_fraction: share of games held out for the validation loss.
        eval_every: optimizer steps between validation passes (and state saves).
        max_tokens: trajectories rendered longer than this are dropped.
        seed: data split, batch order and adapter initialisation.
    """

    base: str = "smollm2-135m-instruct"
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig(track_inventory=True, instructions=False))
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    top_layers: int | None = None
    lr: float = 1e-3
    epochs: float = 2.0
    batch_tokens: int = 4096
    warmup_steps: int = 20
    weight_decay: float = 0.0
    val_fraction: float = 0.05
    eval_every: int = 25
    max_tokens: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "rank": self.rank > 0,
            "alpha": self.alpha > 0,
            "lr": self.lr > 0,
            "epochs": self.epochs > 0,
            "batch_tokens": self.batch_tokens > 0,
            "eval_every": self.eval_every > 0,
            "max_tokens": self.max_tokens > 0,
            "top_layers": self.top_layers is None or self.top_layers > 0,
            "dropout": 0 <= self.dropout < 1,
            "val_fraction": 0 <= self.val_fraction < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            msg = f"invalid fine-tuning settings: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        data["prompt"] = asdict(self.prompt)
        return data


@dataclass(frozen=True)
class RenderedExample:
    """One trajectory as token ids, with labels on the target actions (``IGNORE`` elsewhere)."""

    game: str
    input_ids: list[int]
    labels: list[int]

    @property
    def target_tokens(self) -> int:
        """Tokens that carry loss."""
        return sum(label != IGNORE for label in self.labels)


def _prompt_ids(chat: Any, trajectory: Trajectory, t: int, prompt: PromptConfig) -> list[int]:
    messages = build_messages(trajectory.opening, trajectory.turns[:t], task=trajectory.task, config=prompt)
    text = chat.render(messages)
    return list(chat.tokenizer(text, add_special_tokens=False).input_ids)


def render_trajectory(chat: Any, trajectory: Trajectory, prompt: PromptConfig | None = None) -> RenderedExample:
    """Token ids and labels of ``trajectory`` as the agent (``score`` mode, no examples) sees it.

    Args:
        chat: a :class:`~precision_router.LocalChatModel` of the base (its chat template and tokenizer).
        trajectory: the played game.
        prompt: the agent's prompt options.

    Raises:
        FinetuneError: a step's prompt is not a token prefix of the next one (the template does not
            only grow at the end), so one sequence cannot stand for all steps.
    """
    from precision_router.models.scoring import _candidate_ids, _end_token_id

    prompt = prompt or PromptConfig()
    tokenizer = chat.tokenizer
    end_id = _end_token_id(tokenizer, None)
    ids: list[int] = []
    labels: list[int] = []
    for t, ((action, _), target) in enumerate(zip(trajectory.turns, trajectory.targets, strict=True)):
        prompt_ids = _prompt_ids(chat, trajectory, t, prompt)
        if prompt_ids[: len(ids)] != ids:
            msg = (
                f"{trajectory.game}: the prompt of step {t} does not extend the previous step's prompt and "
                "action token by token; the chat template must only grow at the end"
            )
            raise FinetuneError(msg)
        labels += [IGNORE] * (len(prompt_ids) - len(ids))
        ids = prompt_ids
        (action_ids,) = _candidate_ids(tokenizer, [action], end_id)
        ids = ids + action_ids
        labels += action_ids if target else [IGNORE] * len(action_ids)
    return RenderedExample(trajectory.game, ids, labels)


def split_by_game(
    trajectories: Sequence[Trajectory], val_fraction: float, seed: int
) -> tuple[list[Trajectory], list[Trajectory]]:
    """Hold out ``val_fraction`` of the games (all their variants) for validation."""
    games = sorted({t.game for t in trajectories})
    random.Random(seed).shuffle(games)
    held = set(games[: round(len(games) * val_fraction)])
    return [t for t in trajectories if t.game not in held], [t for t in trajectories if t.game in held]


def _batches(examples: Sequence[RenderedExample], batch_tokens: int, rng: random.Random | None) -> list[list[int]]:
    """Indices of examples grouped by length so that ``len(batch) * longest <= batch_tokens``."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = len(examples[i].input_ids)  # sorted: the newest is the longest
        if current and (len(current) + 1) * longest > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _collate(examples: Sequence[RenderedExample], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed token cross-entropy over the labelled tokens, and their count.

    ``model`` is the (adapted) causal LM; the output head runs on the labelled positions only
    (a tenth of the tokens), which saves most of the head's time and memory.
    """
    import torch

    body = getattr(model, model.base_model_prefix)
    hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[:, :-1][keep]).float()
    loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return loss, int(keep.sum())


def _top_layers(model: Any, top: int | None) -> list[int] | None:
    if top is None:
        return None
    n = int(model.config.num_hidden_layers)
    return list(range(max(0, n - top), n))


def _validate(model: Any, examples: Sequence[RenderedExample], batch_tokens: int, pad_id: int) -> float:
    import torch

    if not examples:
        return math.nan
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for batch in _batches(examples, batch_tokens, None):
            loss, n = _loss(model, _collate([examples[i] for i in batch], pad_id))
            total += float(loss)
            count += n
    model.train()
    return total / max(count, 1)


def plot_finetune_history(history: Sequence[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """Training loss (per logged step) and validation loss against optimizer steps."""
    from precision_router.evaluation.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    train = [r for r in history if "train_loss" in r]
    val = [r for r in history if "val_loss" in r]
    ax.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train", alpha=0.6)
    ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], marker="o", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per action token (nats)")
    ax.set_yscale("log")
    ax.legend()
    return save_figure(fig, path)


def finetune(
    trajectories: Sequence[Trajectory],
    out_dir: str | os.PathLike[str],
    config: FinetuneConfig | None = None,
    *,
    resume: bool = True,
    max_steps: int | None = None,
    model: Any = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Fine-tune LoRA adapters on ``trajectories``; write them under ``out_dir``.

    ``out_dir`` gets ``adapter/`` (the best-validation adapter, ``peft`` format), ``state.pt``
    (to resume), ``training.json`` (settings, data, history, time) and ``loss.png``.

    Args:
        trajectories: expert trajectories (:func:`~precision_router_alfworld.trajectories.expert_trajectories`).
        out_dir: where to write.
        config: settings.
        resume: continue from ``state.pt`` when it is there (same settings and data required).
        max_steps: stop after this many optimizer steps in total (for tests and time-boxed runs).
        model: a transformers causal LM to adapt instead of loading ``config.base`` (tests).
        tokenizer: its tokenizer (with ``model``).

    Returns:
        The summary written to ``training.json``.

    Raises:
        FinetuneError: no trajectories, or a state file from other settings or data.
    """
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from precision_router.models.loading import load_causal_lm
    from precision_router.models.local import LocalChatModel

    config = config or FinetuneConfig()
    if not trajectories:
        msg = "no trajectories to fine-tune on: play some walkthroughs first (expert_trajectories)"
        raise FinetuneError(msg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if model is None:
        loaded = load_causal_lm(config.base)
        model, tokenizer = loaded.model, loaded.tokenizer
    chat = LocalChatModel(hf_model=model, tokenizer=tokenizer, model_name=config.base)

    train_set, val_set = split_by_game(trajectories, config.val_fraction, config.seed)
    render = [render_trajectory(chat, t, config.prompt) for t in tqdm(trajectories, desc="render", leave=False)]
    by_id = {id(t): r for t, r in zip(trajectories, render, strict=True)}
    train = [by_id[id(t)] for t in train_set if len(by_id[id(t)].input_ids) <= config.max_tokens]
    val = [by_id[id(t)] for t in val_set if len(by_id[id(t)].input_ids) <= config.max_tokens]
    dropped = len(train_set) + len(val_set) - len(train) - len(val)
    if dropped:
        logger.warning("dropped %d trajectories longer than %d tokens", dropped, config.max_tokens)
    if not train:
        msg = f"no training trajectory fits in max_tokens={config.max_tokens}"
        raise FinetuneError(msg)
    data_key = {
        "trajectories": len(trajectories),
        "train_games": len({t.game for t in train_set}),
        "val_games": len({t.game for t in val_set}),
        "train_examples": len(train),
        "val_examples": len(val),
        "train_tokens": sum(len(e.input_ids) for e in train),
        "train_target_tokens": sum(e.target_tokens for e in train),
    }

    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=_top_layers(model, config.top_layers),
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = len(_batches(train, config.batch_tokens, None))
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(config.warmup_steps, total_steps // 4), total_steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    step, history, best = 0, [], math.inf
    state_file = out / STATE_FILE
    if resume and state_file.exists():
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        if state["config"] != json.dumps(config.to_dict(), sort_keys=True) or state["data"] != json.dumps(
            data_key, sort_keys=True
        ):
            msg = f"{state_file} was written with other settings or data; pass resume=False (--no-resume) to restart"
            raise FinetuneError(msg)
        set_peft_model_state_dict(peft_model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best = int(state["step"]), float(state["best"])
        history = json.loads(state["history"])
        started -= float(state["seconds"])
        logger.info("resuming from step %d of %d", step, total_steps)

    def save_state() -> None:
        tmp = state_file.with_name(STATE_FILE + ".part")
        torch.save(
            {
                "config": json.dumps(config.to_dict(), sort_keys=True),
                "data": json.dumps(data_key, sort_keys=True),
                "adapter": {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "best": best,
                "history": json.dumps(history),
                "seconds": time.perf_counter() - started,
            },
            tmp,
        )
        tmp.replace(state_file)

    def evaluate() -> None:
        nonlocal best
        val_loss = _validate(model, val, config.batch_tokens, pad_id)
        history.append({"step": step, "val_loss": val_loss, "seconds": time.perf_counter() - started})
        if not val or val_loss < best:
            best = val_loss if val else best
            peft_model.save_pretrained(str(out / ADAPTER_DIR))
        save_state()
        plot_finetune_history(history, out / "loss.png")

    limit = total_steps if max_steps is None else min(total_steps, max_steps)
    bar = tqdm(total=limit, initial=step, desc="fine-tune", unit="step")
    if step == 0:
        evaluate()
    while step < limit:
        epoch, offset = divmod(step, steps_per_epoch)
        batches = _batches(train, config.batch_tokens, random.Random(f"{config.seed}|{epoch}"))
        for batch in batches[offset:]:
            if step >= limit:
                break
            loss, n = _loss(model, _collate([train[i] for i in batch], pad_id))
            (loss / max(n, 1)).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            train_loss = loss.item() / max(n, 1)
            history.append({"step": step, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0]})
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", best_val=f"{best:.3f}")
            if step % config.eval_every == 0 or step == limit:
                evaluate()
    bar.close()
    if not (out / ADAPTER_DIR).exists():
        evaluate()
    summary = {
        "config": config.to_dict(),
        "data": data_key,
        "steps": step,
        "total_steps": total_steps,
        "best_val_loss": best,
        "final_val_loss": next((r["val_loss"] for r in reversed(history) if "val_loss" in r), math.nan),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary
