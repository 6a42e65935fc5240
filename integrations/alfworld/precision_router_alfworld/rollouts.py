"""The rollout engine: play games with a routing policy in-process, or on Ray workers.

Every command that plays episodes (``eval``, ``collect-kl``, ``alfworld run``) goes through
:class:`RolloutEngine`::

    from precision_router import JsonlTraceStore, RandomRouter
    from precision_router_alfworld.factory import resolve_games
    from precision_router_alfworld.rollouts import RolloutEngine
    from precision_router_alfworld.settings import AgentOptions

    options = AgentOptions.from_setting("benchmark", games=24)
    with RolloutEngine(options, workers=2) as engine:
        result = engine.play(RandomRouter(0.3, seed=0), resolve_games(options), run="random:0.3",
                             store=JsonlTraceStore("runs/eval.jsonl"))

With ``workers <= 1``, or without Ray installed (the ``[ray]`` extra), the games are played in
this process by :func:`~precision_router_alfworld.runner.run_games`. Otherwise a local Ray
instance is started (or the cluster at ``ray_address`` / ``$RAY_ADDRESS`` is joined) and each
worker is a Ray actor that loads the models (the factory's :func:`load_models`) and one
environment once, then plays the games it is handed with the router the driver sent (as a Ray
object, deserialized once per policy). Workers never write traces: the driver owns the trace
store and appends each finished episode exactly once.

Faults: a worker that dies mid-episode (``RayActorError``) is restarted by Ray and its game is
handed out again (a game whose worker died ``max_attempts`` times is reported failed); an
exception inside an episode is returned with the game's name and the other games continue
(:attr:`RunResult.failed`). Ctrl-C stops the workers; every episode finished before it is on disk.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from precision_router.evaluation.metrics import summarize
from precision_router.traces.schema import Episode
from precision_router.traces.store import TraceStore
from precision_router_alfworld.data import GameInfo
from precision_router_alfworld.runner import RunResult, done_games, episode_error, run_games
from precision_router_alfworld.settings import AgentOptions

__all__ = ["CrashOnce", "RolloutEngine", "play_games", "ray_available", "resolve_workers"]

logger = logging.getLogger(__name__)


def ray_available() -> bool:
    """Whether Ray is installed (the ``[ray]`` extra)."""
    return importlib.util.find_spec("ray") is not None


def resolve_workers(workers: int | str | None) -> int | None:
    """``--workers``: a count, ``"auto"`` for this machine's cores, ``None`` for the engine's default."""
    if workers == "auto":
        return os.cpu_count() or 1
    return None if workers is None else int(workers)


@dataclass(frozen=True)
class CrashOnce:
    """Test hook: the worker that is handed ``game`` first exits at once (``os._exit``), like a ``kill -9``.

    ``marker`` is a file created just before exiting, so that the restarted worker (or another
    one) plays the game normally.
    """

    game: str
    marker: Path


@dataclass(frozen=True)
class _Outcome:
    """What a worker returns for one game: its episode, or the error that stopped it."""

    game: str
    episode: Episode | None = None
    error: str | None = None


class _Worker:
    """One Ray actor's state: the models, the environment and the agent of the current policy."""

    def __init__(self, options: AgentOptions, score_both: bool, crash: CrashOnce | None) -> None:
        from precision_router_alfworld.factory import load_models

        self.options = options
        self.score_both = score_both
        self.crash = crash
        self.models = load_models(options)
        self.env: Any = None
        self.policy: tuple[int, Any] | None = None

    def play(self, game: GameInfo, run: str, policy_id: int, router_box: list[Any]) -> _Outcome:
        """Play ``game`` with the router in ``router_box`` (a Ray object ref, fetched once per policy)."""
        from precision_router_alfworld.env import AlfworldEnv
        from precision_router_alfworld.factory import build_agent

        if self.crash is not None and game.name == self.crash.game and not self.crash.marker.exists():
            self.crash.marker.touch()
            os._exit(1)
        try:
            if self.policy is None or self.policy[0] != policy_id:
                import ray

                router = ray.get(router_box[0])
                agent = build_agent(self.options, router, None, score_both=self.score_both, pair=self.models)
                self.policy = (policy_id, agent)
            agent = self.policy[1]
            if self.env is None:
                self.env = AlfworldEnv(game, max_steps=self.options.max_steps)
            episode = agent.run_episode(self.env, conversation_id=f"{run}:{game.name}", game=game, info={"run": run})
        except Exception as exc:
            logger.exception("%s: game %s failed", run, game.name)
            if self.env is not None:
                self.env.close()
                self.env = None
            return _Outcome(game.name, error=episode_error(exc))
        return _Outcome(game.name, episode=episode)

    def ready(self) -> bool:
        """Whether the worker has loaded (for waiting on startup)."""
        return True


class RolloutEngine:
    """Plays games with a routing policy: in this process, or on Ray workers (one model + env each).

    Args:
        options: the agent options (models, games, how the agent acts).
        workers: how many workers; ``<= 1`` plays in this process (unless a cluster is named).
            Default: 1 without a cluster, one per CPU of the cluster with one.
        ray_address: a Ray cluster to join (default ``$RAY_ADDRESS``; none: a local instance
            with ``workers`` CPUs).
        score_both: score every step with both precisions (KL collection).
        models: already loaded models for the in-process path (:func:`load_models`).
        max_attempts: how many times a game is handed out when its worker dies.
        progress: show a tqdm bar over games.
        crash_once: test hook (:class:`CrashOnce`).
    """

    def __init__(
        self,
        options: AgentOptions,
        *,
        workers: int | None = None,
        ray_address: str | None = None,
        score_both: bool = False,
        models: dict[str, Any] | None = None,
        max_attempts: int = 3,
        progress: bool = True,
        crash_once: CrashOnce | None = None,
    ) -> None:
        self.options = options
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None
        self.use_ray = (workers or 1) > 1 or self.ray_address is not None
        if self.use_ray and not ray_available():
            logger.warning("Ray is not installed (pip install 'precision-router[ray]'): playing in this process")
            self.use_ray = False
        self.workers = workers
        self.score_both = score_both
        self.max_attempts = max_attempts
        self.progress = progress
        self.crash_once = crash_once
        self._models = models
        self._actors: list[Any] = []
        self._started_ray = False
        self._policies = itertools.count()

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> RolloutEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers, and disconnect from Ray when this engine connected (a local instance stops)."""
        if not self._actors and not self._started_ray:
            return
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def _start(self) -> list[Any]:
        if self._actors:
            return self._actors
        import ray

        if not ray.is_initialized():
            if self.ray_address:
                ray.init(address=self.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers or 1, include_dashboard=False, log_to_driver=False)
            self._started_ray = True
        count = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        logger.info("starting %d rollout workers", count)
        # OMP/MKL threads follow num_cpus=1: one core per worker
        actor = ray.remote(num_cpus=1, max_restarts=self.max_attempts, max_task_retries=0)(_Worker)
        self._actors = [
            actor.remote(self.options, self.score_both, self.crash_once)  # type: ignore[attr-defined]
            for _ in range(count)
        ]
        return self._actors

    # -- playing ---------------------------------------------------------------------------------
    def play(
        self,
        router: Any,
        games: Sequence[GameInfo],
        *,
        run: str,
        store: TraceStore | None = None,
        resume: bool = True,
        on_episode: Any = None,
    ) -> RunResult:
        """Play every game once with ``router``; each new episode is appended to ``store`` once.

        Args:
            router: the routing policy.
            games: the games, in order (results come back in this order).
            run: the run's name (``info["run"]`` of each episode; resuming skips the games
                ``store`` holds under it).
            store: where episodes go (written by this process only).
            resume: skip games already in ``store`` under ``run``.
            on_episode: optional callback ``f(game, episode)`` after each new episode.
        """
        if not self.use_ray:
            from precision_router_alfworld.factory import build_agent, load_models

            if self._models is None:
                self._models = load_models(self.options)
            agent = build_agent(self.options, router, store, score_both=self.score_both, pair=self._models)
            return run_games(agent, games, run=run, resume=resume, progress=self.progress, on_episode=on_episode)
        return self._play_on_ray(router, games, run=run, store=store, resume=resume, on_episode=on_episode)

    def _play_on_ray(
        self,
        router: Any,
        games: Sequence[GameInfo],
        *,
        run: str,
        store: TraceStore | None,
        resume: bool,
        on_episode: Any,
    ) -> RunResult:
        import ray
        from ray.exceptions import RayActorError
        from tqdm.auto import tqdm

        done = done_games(store, run) if resume else {}
        by_name = {g.name: g for g in games}
        todo: deque[GameInfo] = deque(g for g in games if g.name not in done)
        finished: dict[str, Episode] = {}
        failed: dict[str, str] = {}
        attempts: dict[str, int] = {}
        actors = list(self._start())
        deaths = dict.fromkeys(range(len(actors)), 0)
        policy_id = next(self._policies)
        router_box = [ray.put(router)]  # in a list: the workers fetch it once, not on every call
        inflight: dict[Any, tuple[int, GameInfo]] = {}
        idle = list(range(len(actors)))
        bar = tqdm(total=len(games), initial=len(done), desc=run, unit="game", disable=not self.progress)
        try:
            while todo or inflight:
                while todo and idle:
                    index, game = idle.pop(0), todo.popleft()
                    attempts[game.name] = attempts.get(game.name, 0) + 1
                    ref = actors[index].play.remote(game, run, policy_id, router_box)
                    inflight[ref] = (index, game)
                if not inflight:  # every worker is gone
                    for game in todo:
                        failed[game.name] = "no worker left (every worker died too often)"
                    todo.clear()
                    break
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                index, game = inflight.pop(ref)
                try:
                    outcome: _Outcome = ray.get(ref)
                except RayActorError as exc:
                    deaths[index] += 1
                    logger.warning("worker %d died playing %s (%s)", index, game.name, type(exc).__name__)
                    if deaths[index] <= self.max_attempts:
                        idle.append(index)  # Ray restarts it; calls wait for the restart
                    if attempts[game.name] < self.max_attempts:
                        todo.appendleft(game)
                    else:
                        failed[game.name] = f"its worker died {attempts[game.name]} times"
                    continue
                idle.append(index)
                if outcome.episode is None:
                    failed[game.name] = outcome.error or "unknown error"
                    logger.error("%s: game %s failed: %s", run, game.name, outcome.error)
                else:
                    if store is not None:
                        store.append(outcome.episode)
                    finished[game.name] = outcome.episode
                    if on_episode is not None:
                        on_episode(by_name[game.name], outcome.episode)
                bar.update(1)
                played = list(finished.values())
                metrics = summarize(played) if played else None
                if metrics is not None:
                    bar.set_postfix(
                        success=f"{sum(bool(e.success) for e in played)}/{len(played)}",
                        share=f"{metrics.high_share:.2f}",
                        failed=len(failed),
                    )
        except KeyboardInterrupt:
            for ref in inflight:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        if done:
            logger.info("%s: resumed %d games from the trace file", run, len(done))
        episodes = [done.get(g.name) or finished[g.name] for g in games if g.name in done or g.name in finished]
        return RunResult(run=run, episodes=episodes, metrics=summarize(episodes), skipped=len(done), failed=failed)


def play_games(
    options: AgentOptions,
    router: Any,
    games: Sequence[GameInfo],
    *,
    run: str,
    store: TraceStore | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    score_both: bool = False,
    resume: bool = True,
    progress: bool = True,
    on_episode: Any = None,
    crash_once: CrashOnce | None = None,
) -> RunResult:
    """Play ``games`` once with ``router`` on a :class:`RolloutEngine` started for this call."""
    with RolloutEngine(
        options,
        workers=workers,
        ray_address=ray_address,
        score_both=score_both,
        progress=progress,
        crash_once=crash_once,
    ) as engine:
        return engine.play(router, games, run=run, store=store, resume=resume, on_episode=on_episode)
