"""The agent factory: the games, the models and the routed agent that a set of :class:`AgentOptions` describes.

Importable from code (examples, benchmarks, tests) as well as used by the command line::

    from precision_router import RandomRouter
    from precision_router_alfworld.factory import build_agent, resolve_games
    from precision_router_alfworld.settings import AgentOptions

    options = AgentOptions.from_setting("benchmark", games=6)
    agent = build_agent(options, RandomRouter(0.3, seed=0))
    games = resolve_games(options)

Every function also takes a parsed command line (an ``argparse.Namespace`` with the agent
arguments), read through :meth:`AgentOptions.of`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from precision_router_alfworld.settings import AgentOptions

if TYPE_CHECKING:
    from precision_router.routing.base import Router
    from precision_router.traces.store import TraceStore
    from precision_router_alfworld.agent import AlfworldAgent
    from precision_router_alfworld.data import GameInfo
    from precision_router_alfworld.prompts import Example

__all__ = [
    "build_agent",
    "example_source",
    "file_digest",
    "load_models",
    "load_pair",
    "policy_key",
    "resolve_games",
    "run_name",
]

logger = logging.getLogger(__name__)

Options = AgentOptions | argparse.Namespace


def resolve_games(options: Options) -> list[GameInfo]:
    """The games the options select (generated ones when no data is available), ``shard`` applied."""
    opts = AgentOptions.of(options)
    games = _select_games(opts)
    if opts.shard:
        k, n = opts.shard
        games = games[k - 1 :: n]
    return games


def _select_games(opts: AgentOptions) -> list[GameInfo]:
    from precision_router_alfworld.data import AlfworldDataError, find_games

    try:
        return find_games(
            opts.data, split=opts.split, task_types=opts.task_types, n=opts.games, seed=opts.seed, skip=opts.skip
        )
    except AlfworldDataError:
        if opts.data:
            raise
        from precision_router.cache import cache_dir
        from precision_router_alfworld.generate import generate_games

        difficulty = opts.difficulty or "easy"
        folder = cache_dir("alfworld", f"generated-{difficulty}")
        logger.warning("no ALFWorld data found: using generated %s games in %s", difficulty, folder)
        existing = find_games(folder, split="generated") if (folder / "json_2.1.1").exists() else []
        if len(existing) < (opts.games or 12) + opts.skip:
            generate_games(
                folder,
                (opts.games or 12) + opts.skip,
                seed=opts.seed,
                task_types=opts.task_types,
                difficulty=difficulty,
            )
        return find_games(
            folder, split="generated", task_types=opts.task_types, n=opts.games, seed=opts.seed, skip=opts.skip
        )


def load_pair(options: Options) -> tuple[Any, Any]:
    """The ``(high, low)`` models the options name (tiny random ones with ``tiny``)."""
    opts = AgentOptions.of(options)
    if opts.tiny:
        from precision_router.testing import tiny_precision_pair

        return tiny_precision_pair("rtn-3bit")
    from precision_router import load_precision_pair

    return load_precision_pair(opts.model, low=opts.low, high=opts.high, backend=opts.backend)


def load_models(options: Options) -> dict[str, Any]:
    """The models by rung, highest precision first: ``{"high", "low"}``, or the ``ladder`` the options name."""
    opts = AgentOptions.of(options)
    if not opts.ladder:
        high, low = load_pair(opts)
        return {"high": high, "low": low}
    top, *cheaper = opts.ladder
    if opts.tiny:  # round-to-nearest stand-ins with the rungs' bit widths
        from precision_router.testing import tiny_precision_ladder

        bits = [re.search(r"(\d+)bit", rung) for rung in cheaper]
        tiny = tiny_precision_ladder(["fp32", *(f"rtn-{b.group(1) if b else 4}bit" for b in bits)])
        return dict(zip(opts.ladder, tiny.values(), strict=True))
    from precision_router import load_precision_pair

    models: dict[str, Any] = {}
    for rung in cheaper:
        high, low = load_precision_pair(opts.model, low=rung, high=top, backend=opts.backend)
        models.setdefault(top, high)
        models[rung] = low
    return models


def build_agent(
    options: Options,
    router: Router,
    trace_store: TraceStore | None = None,
    *,
    score_both: bool = False,
    pair: Sequence[Any] | dict[str, Any] | None = None,
) -> AlfworldAgent:
    """The routed agent the options describe, over ``pair`` (models loaded once and shared) or fresh ones.

    Args:
        options: the agent options (or a parsed command line).
        router: the routing policy.
        trace_store: where the agent's episodes go.
        score_both: score every step with the top and the bottom precision (KL collection).
        pair: ``(high, low)``, or models by rung (:func:`load_models`); default: loaded now.
    """
    from precision_router import RoutedChatModel
    from precision_router_alfworld.agent import AlfworldAgent

    opts = AgentOptions.of(options)
    models = pair if pair is not None else load_models(opts)
    if isinstance(models, dict) and list(models) != ["high", "low"]:
        model = RoutedChatModel.from_ladder(models, router, costs=opts.ladder_costs, trace_store=trace_store)
    else:
        high, low = models.values() if isinstance(models, dict) else models
        model = RoutedChatModel(high, low, router, trace_store=trace_store)
    return AlfworldAgent(model, opts.agent_config(score_both=score_both), examples=example_source(opts))


def example_source(options: Options) -> Callable[[str], Sequence[Example]]:
    """Task type -> solved example games for the prompt (cached per task type)."""
    from precision_router_alfworld.prompts import parse_transcript

    opts = AgentOptions.of(options)
    if opts.fewshot <= 0:
        return lambda task_type: ()

    @functools.cache
    def examples(task_type: str) -> tuple[Example, ...]:
        from precision_router_alfworld.fewshot import fewshot_transcript

        data = opts.fewshot_data or opts.data
        if opts.fewshot_split != "train":
            from precision_router_alfworld.data import find_games

            games = find_games(data, split=opts.fewshot_split, task_types=[task_type])
            text = fewshot_transcript(task_type, k=opts.fewshot, games=games)
        else:
            text = fewshot_transcript(task_type, data=data, k=opts.fewshot, seed=opts.seed)
        return tuple(parse_transcript(text))

    return examples


def policy_key(spec: str, router: Router, calibrated_on: str | None = None) -> str:
    """The policy's part of a run name: its spec, the calibration traces and the router's weights.

    A learned router's weight fingerprint is part of the key, and so is a content hash of the
    traces a calibrated threshold was set on: retraining the checkpoint at the same path, or
    recalibrating on other traces, replays the games instead of reusing the old policy's episodes.
    """
    parts = [spec]
    if calibrated_on is not None:
        parts.append(f"cal{calibrated_on}")
    if router.version:
        parts.append(f"v{router.version}")
    return "#".join(parts)


def file_digest(path: Path) -> str:
    """Short content hash of a file (names the calibration traces in run names)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:10]


def run_name(options: Options, policy: str | None = None) -> str:
    """Default run name: the policy key and the options that change results.

    ``policy`` defaults to the command line's ``policy`` argument (when ``options`` is one).
    """
    opts = AgentOptions.of(options)
    if policy is None:
        policy = str(vars(options).get("policy")) if isinstance(options, argparse.Namespace) else "?"
    models = f"{opts.model}@{opts.low}" if not opts.ladder else f"{opts.model}@{'/'.join(opts.ladder)}"
    parts = [policy, opts.mode, models, f"seed{opts.seed}", f"steps{opts.max_steps}"]
    if opts.normalize != "sum":
        parts.append(opts.normalize)
    if opts.repeat_penalty:
        parts.append(f"rep{opts.repeat_penalty:g}" + (f"w{opts.repeat_window}" if opts.repeat_window != 4 else ""))
    if opts.restate_goal:
        parts.append("goal")
    if opts.track_inventory:
        parts.append("inv")
    if not opts.instructions:
        parts.append("noinstr")
    if opts.undo_penalty:
        parts.append(f"undo{opts.undo_penalty:g}")
    if opts.contextual_calibration:
        parts.append(f"cal{opts.contextual_calibration:g}")
    if opts.fewshot_split != "train":
        parts.append(f"fs-{opts.fewshot_split}")
    if sorted(opts.exclude) != ["help"]:
        parts.append("ex-" + "-".join(sorted(opts.exclude)))
    if opts.fewshot != 1:
        parts.append(f"fs{opts.fewshot}")
    return "|".join(parts)
