"""The rollout engine: play games with a routing policy in-process, or on Ray workers.

Every command that plays episodes (``eval``, ``collect-kl``, ``collect-counterfactual``,
``alfworld run``, ``train-grpo``) goes through :class:`RolloutEngine`::

    from precision_router import JsonlTraceStore, RandomRouter
    from precision_router_alfworld.factory import resolve_games
    from precision_router_alfworld.rollouts import RolloutEngine
    from precision_router_alfworld.settings import AgentOptions

    options = AgentOptions.from_setting("benchmark", games=24)
    with RolloutEngine(options, workers=2) as engine:
        result = engine.play(RandomRouter(0.3, seed=0), resolve_games(options), run="random:0.3",
                             store=JsonlTraceStore("runs/eval.jsonl"))

:meth:`RolloutEngine.play` plays games with one policy, :meth:`RolloutEngine.play_jobs` a mixed
batch (GRPO: the groups and the reference policies of an iteration), :meth:`RolloutEngine.map`
any per-game work that needs the models and a game engine (counterfactual labels).

With ``workers <= 1``, or without Ray installed (the ``[ray]`` extra), the work runs in this
process (``play``: by :func:`~precision_router_alfworld.runner.run_games`). Otherwise a local Ray
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

import contextlib
import importlib.util
import itertools
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from precision_router.errors import PrecisionRouterError
from precision_router.evaluation.metrics import summarize
from precision_router.traces.schema import Episode
from precision_router.traces.store import TraceStore
from precision_router_alfworld.data import GameInfo
from precision_router_alfworld.runner import RunResult, episode_error, run_games
from precision_router_alfworld.settings import AgentOptions

__all__ = [
    "CrashOnce",
    "Job",
    "JobResult",
    "RolloutEngine",
    "RolloutError",
    "play_games",
    "ray_available",
    "resolve_workers",
]

logger = logging.getLogger(__name__)


class RolloutError(PrecisionRouterError):
    """Episodes a caller needs (e.g. a GRPO group) could not be played; the message names the games."""


_MAX_PROBES = 300
"""How many times a restarting worker is asked whether it is back (each unanswered ask takes seconds)."""


def ray_available() -> bool:
    """Whether Ray is installed (the ``[ray]`` extra)."""
    return importlib.util.find_spec("ray") is not None


def resolve_workers(workers: int | str | None) -> int | None:
    """``--workers``: a count, ``"auto"`` for this machine's cores, ``None`` for the engine's default."""
    if workers == "auto":
        return os.cpu_count() or 1
    return None if workers is None else int(workers)


def _is_object_ref(value: object) -> bool:
    """Whether ``value`` is a Ray object ref (without importing Ray when it is not installed)."""
    if not ray_available():
        return False
    import ray

    return isinstance(value, ray.ObjectRef)


@dataclass(frozen=True)
class CrashOnce:
    """Test hook: the worker that is handed ``game`` first exits at once (``os._exit``), like a ``kill -9``.

    ``marker`` is a file created just before exiting, so that the restarted worker (or another
    one) plays the game normally.
    """

    game: str
    marker: Path


@dataclass(frozen=True)
class Job:
    """One episode to play: ``game`` with ``router``, recorded under ``run`` (``info["run"]``)."""

    game: GameInfo
    run: str
    router: Any


@dataclass(frozen=True)
class JobResult:
    """What playing a :class:`Job` gave: its episode, or the error that stopped it (``episode`` is ``None``)."""

    job: Job
    episode: Episode | None = None
    error: str | None = None
    resumed: bool = False


@dataclass(frozen=True)
class _Outcome:
    """What a worker returns for one call: its value (an episode ...), or the error that stopped it."""

    value: Any = None
    error: str | None = None


class _Worker:
    """A worker's state (a Ray actor's, or this process's): the models, one environment, the recent policies' agents."""

    def __init__(
        self, options: AgentOptions, score_both: bool, crash: CrashOnce | None, models: dict[str, Any] | None = None
    ) -> None:
        from precision_router_alfworld.factory import load_models

        self.options = options
        self.score_both = score_both
        self.crash = crash
        self.models = models if models is not None else load_models(options)
        self.env: Any = None
        self.agents: OrderedDict[int, Any] = OrderedDict()
        self.encoders: dict[str, Any] = {}

    def _agent(self, policy_id: int, router_box: list[Any]) -> Any:
        """The agent of a policy, built the first time (its router fetched from the object store once)."""
        from precision_router_alfworld.factory import build_agent

        if policy_id not in self.agents:
            router = router_box[0]
            if _is_object_ref(router):  # on a Ray worker
                import ray

                router = ray.get(router)
            self._share_encoder(router)
            self.agents[policy_id] = build_agent(
                self.options, router, None, score_both=self.score_both, pair=self.models
            )
            while len(self.agents) > 8:
                self.agents.popitem(last=False)
        self.agents.move_to_end(policy_id)
        return self.agents[policy_id]

    def _share_encoder(self, router: Any) -> None:
        """One sentence encoder per worker, loaded once: a router that arrives with its own copy gets the shared one."""
        from precision_router.routing.encoder import StepEncoder

        encoder = getattr(router, "encoder", None)
        if isinstance(encoder, StepEncoder):
            with contextlib.suppress(AttributeError):
                router.encoder = self.encoders.setdefault(encoder.name, encoder)

    def ready(self) -> bool:
        """Answers once the worker has loaded its models."""
        return True

    def environment(self, game: GameInfo) -> Any:
        """The worker's one game engine (created on first use; ``reset(game)`` switches games)."""
        from precision_router_alfworld.env import AlfworldEnv

        if self.env is None:
            self.env = AlfworldEnv(game, max_steps=self.options.max_steps)
        return self.env

    def play(self, game: GameInfo, run: str, policy_id: int, router_box: list[Any]) -> _Outcome:
        """Play ``game`` with the policy in ``router_box`` (a list holding the router or its object ref)."""
        if self.crash is not None and game.name == self.crash.game and not self.crash.marker.exists():
            self.crash.marker.touch()
            os._exit(1)

        def episode() -> Episode:
            agent = self._agent(policy_id, router_box)
            env = self.environment(game)
            return agent.run_episode(env, conversation_id=f"{run}:{game.name}", game=game, info={"run": run})

        return self._guarded(episode, f"{run}: game {game.name}")

    def apply(self, fn: Callable[[_Worker, Any], Any], item: Any, name: str) -> _Outcome:
        """``fn(self, item)``: work that needs the worker's models and game engine (:meth:`RolloutEngine.map`)."""
        return self._guarded(lambda: fn(self, item), name)

    def _guarded(self, work: Callable[[], Any], name: str) -> _Outcome:
        try:
            return _Outcome(value=work())
        except Exception as exc:
            logger.exception("%s failed", name)
            if self.env is not None:  # a fresh engine for the next game
                self.env.close()
                self.env = None
            return _Outcome(error=episode_error(exc))


class RolloutEngine:
    """Plays games with routing policies: in this process, or on Ray workers (one model + env each).

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
        ray: ``True`` plays on Ray even with one worker, ``False`` never; default: on Ray when
            ``workers > 1`` or a cluster is named.
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
        ray: bool | None = None,
        crash_once: CrashOnce | None = None,
    ) -> None:
        self.options = options
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None
        self.use_ray = ray if ray is not None else (workers or 1) > 1 or self.ray_address is not None
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

    def start(self) -> None:
        """Load the models now (on every worker, waiting until all have) rather than on the first game."""
        if not self.use_ray:
            if self._models is None:
                from precision_router_alfworld.factory import load_models

                self._models = load_models(self.options)
            return
        import ray

        ray.get([actor.ready.remote() for actor in self._start()])

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
            agent = self._local_agent(router, store)
            return run_games(agent, games, run=run, resume=resume, progress=self.progress, on_episode=on_episode)
        jobs = [Job(g, run, router) for g in games]
        results = self.play_jobs(jobs, store=store, resume=resume, desc=run, on_episode=on_episode)
        episodes = [r.episode for r in results if r.episode is not None]
        return RunResult(
            run=run,
            episodes=episodes,
            metrics=summarize(episodes),
            skipped=sum(r.resumed for r in results),
            failed={r.job.game.name: r.error for r in results if r.error is not None},
        )

    def play_jobs(
        self,
        jobs: Sequence[Job],
        *,
        store: TraceStore | None = None,
        resume: bool = True,
        desc: str = "rollouts",
        on_episode: Any = None,
    ) -> list[JobResult]:
        """Play every job (mixed policies and runs allowed); results in the order of ``jobs``.

        Each new episode is appended to ``store`` once, by this process; with ``resume``, a job
        whose ``(run, game)`` ``store`` already holds is not played again (its stored episode is
        returned, ``resumed=True``).
        """
        done: dict[tuple[str, str], Episode] = {}
        if resume and store is not None:
            runs = {j.run for j in jobs}
            done = {(e.info.get("run", ""), e.info.get("game", "")): e for e in store if e.info.get("run") in runs}
        results: list[JobResult | None] = [None] * len(jobs)
        todo: list[int] = []
        for i, job in enumerate(jobs):
            stored = done.get((job.run, job.game.name))
            if stored is not None:
                results[i] = JobResult(job, episode=stored, resumed=True)
            else:
                todo.append(i)
        if todo:
            boxes: dict[int, tuple[int, list[Any]]] = {}  # id(router) -> (policy id, [router or its object ref])
            for i in todo:
                router = jobs[i].router
                if id(router) not in boxes:  # in a list: a Ray worker fetches it once, not on every call
                    boxes[id(router)] = (next(self._policies), [self._share(router)])
            calls = [("play", (jobs[i].game, jobs[i].run, *boxes[id(jobs[i].router)])) for i in todo]
            tally = _Tally(len(jobs), len(jobs) - len(todo), desc, store, on_episode, self.progress)
            try:
                for k, outcome in self._dispatch(calls, [jobs[i].game.name for i in todo]):
                    results[todo[k]] = tally.record(jobs[todo[k]], outcome)
            finally:
                tally.close()
        return [r for r in results if r is not None]

    def map(
        self,
        fn: Callable[[Any, GameInfo], Any],
        games: Sequence[GameInfo],
        *,
        on_result: Callable[[GameInfo, Any], None] | None = None,
        desc: str = "games",
    ) -> dict[str, str]:
        """Run ``fn(worker, game)`` for every game on the workers; the failed games' errors by name.

        ``fn`` must be a module-level function (it travels by reference). The worker it gets
        has ``models`` (by rung), ``options`` and ``environment(game)``; what ``fn`` returns
        comes back to ``on_result(game, value)``, called here as each game finishes (the place
        to write traces). A worker that dies hands its game to another, as in :meth:`play`.
        """
        from tqdm.auto import tqdm

        calls = [("apply", (fn, game, game.name)) for game in games]
        failed: dict[str, str] = {}
        with tqdm(total=len(games), desc=desc, unit="game", disable=not self.progress) as bar:
            for k, outcome in self._dispatch(calls, [g.name for g in games]):
                if outcome.error is not None:
                    failed[games[k].name] = outcome.error
                    logger.error("game %s failed: %s", games[k].name, outcome.error)
                elif on_result is not None:
                    on_result(games[k], outcome.value)
                bar.update(1)
                bar.set_postfix(failed=len(failed))
        return failed

    def _share(self, value: Any) -> Any:
        """``value`` as the workers get it: a Ray object ref on Ray, itself in this process."""
        if not self.use_ray:
            return value
        import ray

        self._start()
        return ray.put(value)

    def _dispatch(self, calls: list[tuple[str, tuple[Any, ...]]], names: list[str]) -> Iterator[tuple[int, _Outcome]]:
        """Each ``(worker method, args)`` call, on the Ray workers or on a local worker; outcomes as they finish."""
        return self._on_ray(calls, names) if self.use_ray else self._here(calls)

    def _local_agent(self, router: Any, store: TraceStore | None) -> Any:
        from precision_router_alfworld.factory import build_agent, load_models

        if self._models is None:
            self._models = load_models(self.options)
        return build_agent(self.options, router, store, score_both=self.score_both, pair=self._models)

    def _here(self, calls: list[tuple[str, tuple[Any, ...]]]) -> Iterator[tuple[int, _Outcome]]:
        """In this process, on one local worker (the same code a Ray actor runs)."""
        if self._models is None:
            from precision_router_alfworld.factory import load_models

            self._models = load_models(self.options)
        worker = _Worker(self.options, self.score_both, None, models=self._models)
        try:
            for k, (method, args) in enumerate(calls):
                yield k, getattr(worker, method)(*args)
        finally:
            if worker.env is not None:
                worker.env.close()

    def _on_ray(self, calls: list[tuple[str, tuple[Any, ...]]], names: list[str]) -> Iterator[tuple[int, _Outcome]]:
        """On the Ray workers: one call per idle worker; a dead worker's call is handed out again.

        A worker whose process died is restarted by Ray; it gets no job until a probe
        (``ready``) answers, so a restart in progress never costs a game its attempts.
        """
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        actors = list(self._start())
        deaths = dict.fromkeys(range(len(actors)), 0)
        probes = dict.fromkeys(range(len(actors)), 0)
        todo: deque[int] = deque(range(len(calls)))
        attempts = dict.fromkeys(range(len(calls)), 0)
        inflight: dict[Any, tuple[int, int | None]] = {}  # object ref -> (actor, job index; None: a probe)
        idle = list(range(len(actors)))

        def probe(index: int) -> None:
            probes[index] += 1
            if probes[index] <= _MAX_PROBES:
                inflight[actors[index].ready.remote()] = (index, None)
            else:
                logger.error("worker %d did not come back; playing on without it", index)

        try:
            while todo or any(j is not None for _, j in inflight.values()):
                while todo and idle:
                    index, j = idle.pop(0), todo.popleft()
                    attempts[j] += 1
                    method, args = calls[j]
                    inflight[getattr(actors[index], method).remote(*args)] = (index, j)
                if not inflight:  # every worker is gone
                    for j in todo:
                        yield j, _Outcome(error="no worker left (every worker died too often)")
                    return
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                index, done = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ActorUnavailableError:
                    if done is None:  # still restarting
                        probe(index)
                        continue
                    yield from self._lost(index, done, names, attempts, deaths, todo, probe)
                    continue
                except RayActorError:
                    if done is None:  # restarts used up: the worker is gone
                        logger.error("worker %d is gone for good; playing on without it", index)
                        continue
                    yield from self._lost(index, done, names, attempts, deaths, todo, probe)
                    continue
                probes[index] = 0
                idle.append(index)
                if done is not None:
                    yield done, outcome
        finally:  # Ctrl-C, an error in the driver, or probes still waiting: stop what is still running
            for ref in inflight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def _lost(
        self,
        index: int,
        j: int,
        names: list[str],
        attempts: dict[int, int],
        deaths: dict[int, int],
        todo: deque[int],
        probe: Any,
    ) -> Iterator[tuple[int, _Outcome]]:
        """Worker ``index`` died playing job ``j``: the job goes back in the queue (or fails), the worker is probed."""
        deaths[index] += 1
        logger.warning("worker %d died playing %s; handing the game out again", index, names[j])
        if deaths[index] <= self.max_attempts:
            probe(index)  # Ray restarts it
        if attempts[j] < self.max_attempts:
            todo.appendleft(j)
        else:
            yield j, _Outcome(error=f"its worker died {attempts[j]} times")


class _Tally:
    """The driver's side of finished jobs: appends each episode to the store once, the progress bar."""

    def __init__(
        self, total: int, resumed: int, desc: str, store: TraceStore | None, on_episode: Any, progress: bool
    ) -> None:
        from tqdm.auto import tqdm

        self.store = store
        self.on_episode = on_episode
        self.played: list[Episode] = []
        self.failures = 0
        self.bar = tqdm(total=total, initial=resumed, desc=desc, unit="game", disable=not progress)

    def record(self, job: Job, outcome: _Outcome) -> JobResult:
        """Record one finished job (its episode, or its error)."""
        episode: Episode | None = outcome.value
        if episode is None:
            self.failures += 1
            logger.error("%s: game %s failed: %s", job.run, job.game.name, outcome.error)
        else:
            if self.store is not None:
                self.store.append(episode)
            self.played.append(episode)
            if self.on_episode is not None:
                self.on_episode(job.game, episode)
        self.bar.update(1)
        if self.played:
            self.bar.set_postfix(
                success=f"{sum(bool(e.success) for e in self.played)}/{len(self.played)}",
                share=f"{summarize(self.played).high_share:.2f}",
                failed=self.failures,
            )
        return JobResult(job, episode=episode, error=outcome.error or ("unknown error" if episode is None else None))

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


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
