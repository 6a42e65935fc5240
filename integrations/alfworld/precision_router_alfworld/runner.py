"""Run the routed agent over a list of games: resumable, with a progress bar and a summary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from precision_router.evaluation.metrics import RunMetrics, summarize
from precision_router.traces.schema import Episode
from precision_router.traces.store import TraceStore
from precision_router_alfworld.agent import AlfworldAgent
from precision_router_alfworld.data import GameInfo

__all__ = ["RunResult", "done_games", "episode_error", "progress_measures", "run_games"]

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """The episodes of one run (resumed ones included), their metrics and the games that failed.

    Attributes:
        run: the run's name.
        episodes: one per game played or resumed, in the order of the games.
        metrics: of ``episodes``.
        skipped: games resumed from the trace store.
        failed: game name -> the error that stopped its episode (no episode recorded for it).
    """

    run: str
    episodes: list[Episode]
    metrics: RunMetrics
    skipped: int
    failed: dict[str, str] = field(default_factory=dict)

    def summary_line(self) -> str:
        """One line for the terminal."""
        m = self.metrics
        return (
            f"{self.run}: success {m.success:.3f} ± {m.success_se:.3f} over {m.episodes} games, "
            f"high-precision share {m.high_share:.3f} (tokens {m.token_high_share:.3f}), "
            f"{m.mean_steps:.1f} steps/game, {m.seconds_per_step:.2f} s/step"
            + (f"; {len(self.failed)} games failed" if self.failed else "")
        )

    def failure_lines(self) -> list[str]:
        """One line per failed game: its name and the error."""
        return [f"{self.run}: {game} failed: {error}" for game, error in self.failed.items()]


def done_games(store: TraceStore | None, run: str) -> dict[str, Episode]:
    """Game name -> the episode ``store`` already holds for it under ``run`` (what resuming skips)."""
    if store is None:
        return {}
    return {e.info.get("game", ""): e for e in store if e.info.get("run") == run}


def run_games(
    agent: AlfworldAgent,
    games: Sequence[GameInfo],
    *,
    run: str,
    max_steps: int | None = None,
    resume: bool = True,
    progress: bool = True,
    on_episode: Any = None,
    keep_going: bool = True,
) -> RunResult:
    """Play every game once with ``agent``; episodes go to the agent model's trace store.

    Args:
        agent: the routed agent.
        games: games to play, in order.
        run: a name for this run (policy, seed, setting); stored in each episode's ``info["run"]``
            and used to resume: games already recorded under the same ``run`` are not replayed.
        max_steps: step cap (default: the agent's).
        resume: skip games already in the trace store for this ``run``.
        progress: show a tqdm progress bar.
        on_episode: optional callback ``f(game, episode)`` after each new episode.
        keep_going: an exception inside one episode is logged and recorded in
            :attr:`RunResult.failed` with the game's name, and the other games are played;
            ``False`` lets it propagate.
    """
    from tqdm.auto import tqdm

    from precision_router_alfworld.env import AlfworldEnv

    store = agent.model.trace_store
    done = done_games(store, run) if resume else {}
    episodes: list[Episode] = []
    failed: dict[str, str] = {}
    skipped = 0
    env: AlfworldEnv | None = None
    cap = max_steps or agent.config.max_steps
    bar = tqdm(games, desc=run, unit="game", disable=not progress)
    try:
        for game in bar:
            if game.name in done:
                episodes.append(done[game.name])
                skipped += 1
                continue
            try:
                if env is None:
                    env = AlfworldEnv(game, max_steps=cap)
                # one env for all games: switching games on a loaded engine is cheaper than a new env
                episode = agent.run_episode(env, conversation_id=f"{run}:{game.name}", game=game, info={"run": run})
            except Exception as exc:
                if not keep_going:
                    raise
                failed[game.name] = episode_error(exc)
                logger.exception("%s: game %s failed; playing the others", run, game.name)
                if env is not None:  # a fresh engine for the next game
                    env.close()
                    env = None
                continue
            episodes.append(episode)
            if on_episode is not None:
                on_episode(game, episode)
            wins = sum(bool(e.success) for e in episodes)
            bar.set_postfix(success=f"{wins}/{len(episodes)}")
    finally:
        if env is not None:
            env.close()
    if skipped:
        logger.info("%s: resumed %d games from the trace file", run, skipped)
    return RunResult(run=run, episodes=episodes, metrics=summarize(episodes), skipped=skipped, failed=failed)


def episode_error(exc: BaseException) -> str:
    """How a failed episode is reported: the exception's type and message, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def progress_measures(episodes: Sequence[Episode]) -> dict[str, float]:
    """Partial-progress measures beside success: picked anything up, and the A-B-A-B loop share."""
    took = sum(any(s.action.startswith("take ") and s.info.get("valid", True) for s in e.steps) for e in episodes)
    loop_steps = total = 0
    for episode in episodes:
        actions = [s.action for s in episode.steps]
        total += len(actions)
        loop_steps += sum(1 for i in range(2, len(actions)) if actions[i] == actions[i - 2])
    return {
        "took_something": took / len(episodes) if episodes else float("nan"),
        "loop_share": loop_steps / total if total else float("nan"),
    }
