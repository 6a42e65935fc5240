"""Stage 2 of router training: GRPO on whole episodes.

For each task a group of ``G`` episodes is rolled out with the router *sampling* its routes.
Each episode's return is ``R = 1[success] - lambda_high * (#high steps) - lambda_step * (#steps)``;
its advantage is the return normalised within its group, ``A = (R - mean_G) / (std_G + eps)``; and
the router is updated with ``-A * sum_t log pi(r_t | s_t) + beta * KL(pi || pi_0)``, the KL taken
per step against the starting router (the KL-ST checkpoint, or a fresh router in GRPO-only mode).

Rollouts are produced by a caller-supplied function (the ALFWorld runner, or a toy environment in
tests) and can be recorded to a trace store; with ``resume=True`` training restarts from the last
saved iteration and reuses rollouts already recorded for it.

Two router kinds train the same way: the paper's sequence router (:class:`RouterNet` over step
embeddings) and the TRIM-Agg-style :class:`~precision_router.routing.aggregate.AggregateNet` over
aggregated low-model and episode signals (``kind="aggregate"``).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch.nn import functional as F

from precision_router.routing.base import Router
from precision_router.routing.learned import LearnedRouter
from precision_router.routing.network import RouterConfig, RouterNet, pad_sequences
from precision_router.traces.schema import Episode
from precision_router.training.data import EmbeddingCache, episode_states, sequences, signal_rows

__all__ = ["GRPOConfig", "GRPOResult", "episode_return", "group_advantages", "load_resume_state", "train_grpo"]

logger = logging.getLogger(__name__)

Rollout = Callable[[Router, str, int, int], Episode]
"""``rollout(router, task, iteration, sample) -> Episode``: play one episode of ``task`` with ``router``.

``(iteration, sample)`` identifies the rollout, so a rollout function that records its episodes can
return the recorded one instead of replaying it when training resumes."""

RolloutMany = Callable[[Sequence[tuple[Router, str, int, int]]], list[Episode]]
"""``rollout_many([(router, task, iteration, sample), ...]) -> [Episode, ...]``: a whole iteration's
rollouts at once, in the order asked (e.g. played on parallel workers)."""


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO settings (defaults from the paper: lambda_high 0.02, lr 1e-6, beta 0.02).

    Attributes:
        group_size: episodes per task per iteration (``G``).
        iterations: policy updates.
        tasks_per_iteration: tasks sampled per iteration (all of them when ``None``).
        lambda_high: return penalty per high-precision step.
        lambda_step: return penalty per step.
        beta: weight of ``KL(pi || pi_0)``.
        lr: AdamW learning rate.
        eps: added to the group's standard deviation.
        seed: seed of task sampling, routing samples and initialisation.
    """

    group_size: int = 4
    iterations: int = 30
    tasks_per_iteration: int | None = 4
    lambda_high: float = 0.02
    lambda_step: float = 0.0
    beta: float = 0.02
    lr: float = 1e-6
    eps: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.group_size < 2:
            msg = f"group_size must be at least 2 (advantages are normalised within a group), got {self.group_size}"
            raise ValueError(msg)


@dataclass
class GRPOResult:
    """What GRPO produced: the checkpoint and per-iteration statistics."""

    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    plot: Path | None = None


def episode_return(episode: Episode, lambda_high: float, lambda_step: float) -> float:
    """``1[success] - lambda_high * #high - lambda_step * #steps``."""
    return float(bool(episode.success)) - lambda_high * episode.n_high - lambda_step * len(episode.steps)


def group_advantages(returns: Sequence[float], eps: float = 1e-6, references: Sequence[float] = ()) -> list[float]:
    """Returns normalised within their group.

    With ``references`` (returns of reference policies on the same task, e.g. low-only and a
    random policy), the mean and spread are taken over the group *and* the references, so a group
    that only matches what low-only achieves gets no credit: the reference-guided advantage that
    keeps GRPO from drifting to "route nothing high".
    """
    pool = [*returns, *references]
    mean = sum(pool) / len(pool)
    std = math.sqrt(sum((r - mean) ** 2 for r in pool) / len(pool))
    return [(r - mean) / (std + eps) for r in returns]


def _chosen_and_kl(
    logits: torch.Tensor, ref_logits: torch.Tensor, routes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step ``log pi(route)`` and ``KL(pi || pi_0)`` from the two networks' logits."""
    log_pi = F.log_softmax(logits, dim=-1)
    log_ref = F.log_softmax(ref_logits.detach(), dim=-1)
    chosen = log_pi.gather(1, routes[:, None])[:, 0]
    kl = (log_pi.exp() * (log_pi - log_ref)).sum(dim=-1)
    return chosen, kl


class _SequencePolicy:
    """GRPO's view of the paper's sequence router: embeddings in, :class:`LearnedRouter` out."""

    def __init__(self, encoder: Any, cache: EmbeddingCache) -> None:
        self.encoder = encoder
        self.cache = cache

    def router(self, net: RouterNet, seed: int, iteration: int) -> Router:
        return LearnedRouter(net.eval(), self.encoder, sample=True, seed=seed, name="grpo", version=f"grpo-{iteration}")

    def terms(
        self, net: RouterNet, reference: RouterNet, episodes: Sequence[Episode]
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``log pi(route)``, ``KL`` and the episode index of every step of ``episodes``."""
        records, owners = [], []
        for k, episode in enumerate(episodes):
            for record in episode_states(episode, signals=bool(net.config.n_signals)):
                records.append(record)
                owners.append(k)
        seqs = sequences(records, self.cache, net.config.max_steps)
        routes = torch.tensor([net.config.n_routes - 1 if r.route == "high" else 0 for r in records])
        x, valid = pad_sequences(seqs, net.config.max_steps)
        signals = signal_rows(records) if net.config.n_signals else None
        with torch.no_grad():
            ref_logits = reference(x, valid, signals)
        return (*_chosen_and_kl(net(x, valid, signals), ref_logits, routes), owners)

    def finish(self) -> None:
        self.cache.save()


class _AggregatePolicy:
    """GRPO's view of the TRIM-Agg-style router: per-step aggregate features, :class:`AggregateRouter` out."""

    def router(self, net: Any, seed: int, iteration: int) -> Router:
        from precision_router.routing.aggregate import AggregateRouter

        return AggregateRouter(net.eval(), sample=True, seed=seed, name="grpo-aggregate", version=f"grpo-{iteration}")

    def terms(
        self, net: Any, reference: Any, episodes: Sequence[Episode]
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        from precision_router.routing.aggregate import episode_features

        rows, routes, owners = [], [], []
        for k, episode in enumerate(episodes):
            rows += episode_features(episode)
            routes += [1 if step.route == "high" else 0 for step in episode.steps]
            owners += [k] * len(episode.steps)
        x = torch.tensor(rows, dtype=torch.float32)
        with torch.no_grad():
            ref_logits = reference(x)
        return (*_chosen_and_kl(net(x), ref_logits, torch.tensor(routes)), owners)

    def finish(self) -> None:
        pass


def load_resume_state(
    path: str | os.PathLike[str], net: RouterNet, optimizer: torch.optim.Optimizer
) -> tuple[int, list[dict[str, float]]]:
    """Load a GRPO resume file into ``net`` and ``optimizer``; returns ``(iteration, history)``.

    The file is read with ``weights_only=True``: tensors and plain containers only, so a state
    file from elsewhere cannot run code.

    Raises:
        CheckpointMismatchError: the file is not a resume state written by :func:`train_grpo`
            for this router (delete it, or train with ``resume=False``, to start over).
    """
    from precision_router.errors import CheckpointMismatchError

    start_over = f"delete {path} (or train with resume=False) to start this run over"
    try:
        saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        msg = f"{path} is not a GRPO resume state that loads as tensors and plain values only; {start_over}"
        raise CheckpointMismatchError(msg) from None
    keys = {"net", "optimizer", "iteration", "history"}
    if not isinstance(saved, dict) or not keys <= saved.keys():
        msg = f"{path} is not a GRPO resume state (expected keys {sorted(keys)}); {start_over}"
        raise CheckpointMismatchError(msg)
    iteration, history = saved["iteration"], saved["history"]
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0 or not isinstance(history, list):
        msg = f"{path} holds a malformed iteration count or history; {start_over}"
        raise CheckpointMismatchError(msg)
    try:
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        msg = f"{path} was saved for another router or optimizer ({exc}); {start_over}"
        raise CheckpointMismatchError(msg) from exc
    return iteration, history


def train_grpo(
    rollout: Rollout,
    tasks: Sequence[str],
    out: str | os.PathLike[str],
    *,
    encoder: Any = None,
    init: str | os.PathLike[str] | Any | None = None,
    router_config: Any = None,
    config: GRPOConfig | None = None,
    resume: bool = True,
    progress: bool = True,
    embedding_cache: str | os.PathLike[str] | None = None,
    plots: bool = True,
    references: Sequence[Router] = (),
    rollout_many: RolloutMany | None = None,
    kind: Literal["sequence", "aggregate"] = "sequence",
) -> GRPOResult:
    """Refine a router with GRPO; writes ``out`` after every iteration.

    Args:
        rollout: plays one episode of a task with the given (sampling) router.
        tasks: task keys passed to ``rollout`` (e.g. game names).
        out: checkpoint path (the state to resume from is kept in ``out`` + ``.state.pt``).
        encoder: the step encoder (the sequence router only; ``None`` for ``kind="aggregate"``).
        init: the starting router (a KL-ST checkpoint path or net, or for ``kind="aggregate"`` an
            :class:`~precision_router.routing.aggregate.AggregateNet` or its file); ``None`` starts
            fresh (GRPO-only).
        router_config: architecture of a fresh router (a :class:`RouterConfig`, or an
            :class:`~precision_router.routing.aggregate.AggregateConfig` for ``kind="aggregate"``).
        config: GRPO settings.
        resume: continue from ``out``'s saved state when it exists.
        progress: show a progress bar.
        embedding_cache: file for cached step embeddings.
        plots: write the per-iteration curves next to ``out`` (``*-grpo.png``).
        references: reference policies (e.g. ``AlwaysLow()``, ``RandomRouter(0.2, seed=0)``) played
            once per task and iteration (``rollout(ref, task, iteration, -1 - k)``); their returns
            join each group's baseline (:func:`group_advantages`) but are not trained on.
        rollout_many: plays all of an iteration's rollouts (the groups and the references' episodes)
            in one call, e.g. on parallel workers (the router, with this iteration's weights, is
            part of each request); default: ``rollout`` one by one. The update runs here.
        kind: ``sequence`` (the paper's :class:`RouterNet`) or ``aggregate`` (TRIM-Agg style: a
            small network over :data:`~precision_router.routing.aggregate.AGGREGATE_FEATURES`).
    """
    from tqdm.auto import tqdm

    config = config or GRPOConfig()
    out = Path(out)
    state_path = out.with_name(out.name + ".state.pt")
    reference: Any
    policy: _SequencePolicy | _AggregatePolicy
    if kind == "aggregate":
        from precision_router.routing.aggregate import AggregateConfig, AggregateNet

        if isinstance(init, AggregateNet):
            reference = copy.deepcopy(init)
        elif init is not None:
            reference = AggregateNet.load(init)  # type: ignore[arg-type]
        else:
            torch.manual_seed(config.seed)
            agg_config = router_config if isinstance(router_config, AggregateConfig) else AggregateConfig()
            reference = AggregateNet(agg_config)
        policy = _AggregatePolicy()
    elif kind == "sequence":
        if encoder is None:
            msg = "train_grpo(kind='sequence') needs the step encoder"
            raise ValueError(msg)
        if isinstance(init, RouterNet):
            reference = copy.deepcopy(init)
        elif init is not None:
            reference = RouterNet.load(init, encoder=encoder.name)
        else:
            torch.manual_seed(config.seed)
            base = router_config if isinstance(router_config, RouterConfig) else RouterConfig()
            reference = RouterNet(replace(base, embed_dim=encoder.dim, encoder=encoder.name, dropout=0.0))
        policy = _SequencePolicy(
            encoder, EmbeddingCache(encoder, embedding_cache or out.with_name(out.name + ".emb.pt"))
        )
    else:
        msg = f"kind must be 'sequence' or 'aggregate', got {kind!r}"
        raise ValueError(msg)
    reference.eval()
    for param in reference.parameters():
        param.requires_grad_(False)
    net = copy.deepcopy(reference)
    for param in net.parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=0.0)
    start_iteration = 0
    history: list[dict[str, float]] = []
    if resume and state_path.exists():
        start_iteration, history = load_resume_state(state_path, net, optimizer)
        logger.info("resuming GRPO at iteration %d", start_iteration)
    rng = random.Random(config.seed)
    schedule = [
        rng.sample(list(tasks), k=min(config.tasks_per_iteration or len(tasks), len(tasks)))
        for _ in range(config.iterations)
    ]
    for iteration in tqdm(range(start_iteration, config.iterations), desc="GRPO", disable=not progress):
        # this iteration's sampling policy: the current weights, a seed of its own
        seed = config.seed * 100_003 + iteration
        router = policy.router(net, seed, iteration)
        requests: list[tuple[Router, str, int, int]] = []
        for task in schedule[iteration]:
            requests += [(router, task, iteration, i) for i in range(config.group_size)]
            requests += [(ref, task, iteration, -1 - k) for k, ref in enumerate(references)]
        played = rollout_many(requests) if rollout_many is not None else [rollout(*r) for r in requests]
        per_task = config.group_size + len(references)
        groups: list[tuple[list[Episode], list[float]]] = []
        for start in range(0, len(played), per_task):
            episodes = played[start : start + config.group_size]
            returns = [episode_return(e, config.lambda_high, config.lambda_step) for e in episodes]
            baseline = [
                episode_return(e, config.lambda_high, config.lambda_step)
                for e in played[start + config.group_size : start + per_task]
            ]
            groups.append((episodes, group_advantages(returns, config.eps, baseline)))
        trained = [e for episodes, _ in groups for e in episodes]
        episode_advantages = [a for _, advs in groups for a in advs]
        log_pi, kl, owners = policy.terms(net, reference, trained)
        adv = torch.tensor([episode_advantages[k] for k in owners], dtype=torch.float32)
        episode_count = len(trained)
        # -A * sum_t log pi, averaged over episodes; KL averaged over steps
        policy_loss = -(adv * log_pi).sum() / episode_count
        kl_term = kl.mean()
        loss = policy_loss + config.beta * kl_term
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        all_episodes = [e for episodes, _ in groups for e in episodes]
        row = {
            "iteration": iteration + 1,
            "loss": float(loss.detach()),
            "kl": float(kl_term.detach()),
            "success": sum(bool(e.success) for e in all_episodes) / len(all_episodes),
            "high_share": sum(e.n_high for e in all_episodes) / max(1, sum(len(e.steps) for e in all_episodes)),
            "return": sum(episode_return(e, config.lambda_high, config.lambda_step) for e in all_episodes)
            / len(all_episodes),
            "rollouts": len(all_episodes) + len(references) * len(groups),
        }
        history.append(row)
        logger.info("GRPO iteration %d: %s", iteration + 1, row)
        net.eval()
        net.save(out, stage="grpo", iteration=iteration + 1, config=asdict(config), metrics=row)
        torch.save(
            {
                "net": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration + 1,
                "history": history,
            },
            state_path,
        )
    policy.finish()
    result = GRPOResult(checkpoint=out, history=history)
    if plots and history:
        from precision_router.evaluation.plots import plot_grpo_history

        result.plot = plot_grpo_history(history, out.with_name(out.stem + "-grpo.png"))
    return result
