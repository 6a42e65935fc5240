"""Expert trajectories for fine-tuning: walkthroughs replayed, with optional search detours.

An ALFWorld walkthrough is a privileged plan: it walks straight to the receptacle that holds the
object, which an agent cannot know. Trained on walkthroughs alone, a model learns where objects
usually are but never what to do when they are not there. A *search* variant therefore inserts,
before each walkthrough step that walks to an object (``go to L`` followed by ``take O from L``),
visits to other receptacles the agent has not seen yet (opening the closed ones), as a
searching agent would, before the walkthrough goes on. Every action of a trajectory is a
training target except the walkthrough step right after a detour that already showed an object
of the target's kind (the agent should have taken that one).

Trajectories are plain data (:class:`Trajectory`) saved as gzipped JSON lines, so the replay
(about a second of game loading per game) happens once.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from precision_router_alfworld.data import AlfworldDataError, GameInfo

__all__ = ["Trajectory", "expert_trajectories", "read_trajectories", "write_trajectories"]

logger = logging.getLogger(__name__)

_GO = re.compile(r"^go to (.+)$")
_TAKE = re.compile(r"^take (.+?) from (.+)$")


@dataclass(frozen=True)
class Trajectory:
    """One played game: its opening, the ``(action, observation)`` turns, which actions are targets.

    Attributes:
        game: the game's stable name (:attr:`GameInfo.name`).
        task_type: one of the six ALFWorld task types.
        task: the goal sentence.
        opening: the first observation (room and task).
        turns: ``(action, observation)`` pairs in the order played.
        targets: per turn, whether its action is a training target.
        variant: ``"expert"`` (the walkthrough) or ``"search-<k>"`` (the k-th search variant).
        won: whether the trajectory wins the game.
    """

    game: str
    task_type: str
    task: str
    opening: str
    turns: tuple[tuple[str, str], ...]
    targets: tuple[bool, ...]
    variant: str = "expert"
    won: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.turns) != len(self.targets):
            msg = f"{self.game}: {len(self.turns)} turns but {len(self.targets)} target flags"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["turns"] = [list(t) for t in self.turns]
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_dict`."""
        return cls(
            game=data["game"],
            task_type=data["task_type"],
            task=data["task"],
            opening=data["opening"],
            turns=tuple((str(a), str(o)) for a, o in data["turns"]),
            targets=tuple(bool(t) for t in data["targets"]),
            variant=data.get("variant", "expert"),
            won=bool(data.get("won", True)),
            info=dict(data.get("info") or {}),
        )


def _kind(name: str) -> str:
    """``"apple 1"`` -> ``"apple"``."""
    return re.sub(r"\s+\d+$", "", name).strip()


def _play_walkthrough(env: Any, game: GameInfo, rng: random.Random | None, max_detours: int) -> Trajectory | None:
    """Replay ``game``'s walkthrough in ``env``; with ``rng``, insert search detours. ``None`` if it does not win."""
    walkthrough = game.walkthrough
    if not walkthrough:
        raise AlfworldDataError(f"{game.name} has no walkthrough")
    opening, info = env.reset()
    turns: list[tuple[str, str]] = []
    targets: list[bool] = []
    visited: set[str] = set()
    won = False
    skip_next_target = False

    def play(action: str, target: bool) -> str:
        nonlocal won
        observation, won, _, _ = env.step(action)
        turns.append((action, observation))
        targets.append(target)
        return str(observation)

    for i, command in enumerate(walkthrough):
        go = _GO.match(command)
        following = _TAKE.match(walkthrough[i + 1]) if i + 1 < len(walkthrough) else None
        if rng is not None and go and following and following.group(2) == go.group(1):
            wanted = _kind(following.group(1))
            for _ in range(rng.randint(1, max_detours) if max_detours else 0):
                options = [
                    c
                    for c in env.admissible_commands
                    if (m := _GO.match(c)) and m.group(1) != go.group(1) and m.group(1) not in visited
                ]
                if not options:
                    break
                detour = rng.choice(sorted(options))
                place = _GO.match(detour).group(1)  # type: ignore[union-attr]
                visited.add(place)
                observation = play(detour, True)
                if f"{place} is closed" in observation and f"open {place}" in env.admissible_commands:
                    observation = play(f"open {place}", True)
                if re.search(rf"\b{re.escape(wanted)} \d+", observation.split(". ", 1)[-1]):
                    skip_next_target = True  # it saw one: walking on to L is not what to teach
                    break
        if go:
            visited.add(go.group(1))
        if rng is not None and command not in env.admissible_commands:
            continue  # a detour already did it (opened the receptacle the walkthrough opens next)
        play(command, not skip_next_target)
        skip_next_target = False
        if won:
            break
    if not won:
        return None
    return Trajectory(
        game=game.name,
        task_type=game.task_type,
        task=str(info.get("task", "")),
        opening=opening,
        turns=tuple(turns),
        targets=tuple(targets),
        variant="expert" if rng is None else "search",
        won=True,
    )


def expert_trajectories(
    games: Sequence[GameInfo], *, search_variants: int = 0, max_detours: int = 3, seed: int = 0
) -> Iterator[Trajectory]:
    """Play each game's walkthrough (and ``search_variants`` search variants of it).

    Args:
        games: the games to play.
        search_variants: search variants per game, besides the plain walkthrough.
        max_detours: most receptacles visited before each walkthrough step that walks to an object.
        seed: seeds the detours; the same games and seed give the same trajectories.

    Yields:
        Winning trajectories; games whose walkthrough does not win are skipped with a warning.
    """
    from precision_router_alfworld.env import AlfworldEnv

    if search_variants < 0 or max_detours < 0:
        msg = f"search_variants and max_detours must be >= 0, got {search_variants} and {max_detours}"
        raise ValueError(msg)
    env: AlfworldEnv | None = None
    try:
        for game in games:
            if env is None:
                env = AlfworldEnv(game, max_steps=500)
            else:
                env.reset(game)
            for k in range(search_variants + 1):
                rng = None if k == 0 else random.Random(f"{seed}|{game.name}|{k}")
                trajectory = _play_walkthrough(env, game, rng, max_detours)
                if trajectory is None:
                    logger.warning("%s: the walkthrough does not win (variant %d); skipped", game.name, k)
                    continue
                if k:
                    trajectory = dataclasses.replace(trajectory, variant=f"search-{k}")
                yield trajectory
    finally:
        if env is not None:
            env.close()


def write_trajectories(path: str | os.PathLike[str], trajectories: Iterable[Trajectory]) -> int:
    """Write trajectories as gzipped JSON lines (atomically: a temporary file renamed); returns the count."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    n = 0
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for trajectory in trajectories:
            f.write(json.dumps(trajectory.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(out)
    return n


def read_trajectories(path: str | os.PathLike[str]) -> list[Trajectory]:
    """Read what :func:`write_trajectories` wrote.

    Raises:
        AlfworldDataError: no such file.
    """
    file = Path(path)
    if not file.is_file():
        msg = f"no trajectory file at {file}; write one with `precision-router alfworld finetune --trajectories-only`"
        raise AlfworldDataError(msg)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        return [Trajectory.from_dict(json.loads(line)) for line in f if line.strip()]
