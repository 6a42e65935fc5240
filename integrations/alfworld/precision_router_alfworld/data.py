"""Finding ALFWorld games on disk.

ALFWorld's text games live in ``json_2.1.1/<split>/<game folder>/<trial>/game.tw-pddl``, where the
game folder is named ``<task_type>-<Object>-<MovableRecep|None>-<Receptacle>-<scene>``. Each
``game.tw-pddl`` is a self-contained JSON document (``pddl_domain``, ``grammar``, ``pddl_problem``,
``solvable``, ``walkthrough``). This module never imports TextWorld: discovery reads paths and a
few bytes of JSON only.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from precision_router.errors import PrecisionRouterError

__all__ = [
    "DATA_ENV_VAR",
    "GAME_FILE",
    "JSON_DIR",
    "TASK_TYPES",
    "AlfworldDataError",
    "GameInfo",
    "data_root",
    "find_games",
]

logger = logging.getLogger(__name__)

TASK_TYPES: tuple[str, ...] = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
"""The six ALFWorld task types, in ALFWorld's own order (its task ids 1 to 6)."""

DATA_ENV_VAR = "ALFWORLD_DATA"
JSON_DIR = "json_2.1.1"
GAME_FILE = "game.tw-pddl"

_SOLVABLE = re.compile(rb'"solvable"\s*:\s*true')

_HOW_TO_GET_DATA = (
    f"Pass data=<folder>, or set ${DATA_ENV_VAR}, to the folder that holds {JSON_DIR}/ "
    f"(run `alfworld-download` to fetch the ALFWorld games there), or make games offline with "
    f"precision_router_alfworld.generate_games(out_dir, n) and pass data=out_dir, split='generated'."
)


class AlfworldDataError(PrecisionRouterError):
    """ALFWorld games could not be found or read; the message says where to get them."""


@dataclass(frozen=True)
class GameInfo:
    """One ALFWorld game file and what its folder name says about it.

    Attributes:
        path: The ``game.tw-pddl`` file.
        task_type: One of :data:`TASK_TYPES`.
        split: The split folder the game lies in (``train``, ``valid_seen``, ``generated``, ...).
        name: A stable id, ``"<game folder>/<trial folder>"``.
    """

    path: Path
    task_type: str
    split: str
    name: str

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> GameInfo:
        """Describe the game at ``path`` (a ``game.tw-pddl`` file or the trial folder holding one).

        The task type comes from the game folder's name; for files outside the ALFWorld layout it is
        guessed from the task sentence in the game's grammar.

        Raises:
            AlfworldDataError: No game file at ``path``.
        """
        file = Path(path).expanduser()
        if file.is_dir():
            file = file / GAME_FILE
        if not file.is_file():
            msg = f"No ALFWorld game file at {file}. Pass a {GAME_FILE} file (or the trial folder holding one)."
            raise AlfworldDataError(msg)
        file = file.resolve()
        trial, folder = file.parent, file.parent.parent
        task_type = _task_type_of_folder(folder.name)
        if task_type is None:
            task_type = _guess_task_type(_task_sentence(_read_json(file).get("grammar", "")))
        return cls(path=file, task_type=task_type, split=folder.parent.name, name=f"{folder.name}/{trial.name}")

    @property
    def folder(self) -> str:
        """The game folder's name, ``<task_type>-<Object>-<MovableRecep|None>-<Receptacle>-<scene>``."""
        return self.name.split("/", 1)[0]

    @property
    def object_type(self) -> str | None:
        """The target object class from the folder name (``"AlarmClock"``), or ``None`` outside the layout."""
        parts = self.folder.split("-")
        return parts[1] if len(parts) >= 5 else None

    @property
    def receptacle_type(self) -> str | None:
        """The goal receptacle class from the folder name (``"Desk"``; ``"DeskLamp"`` for look_at tasks)."""
        parts = self.folder.split("-")
        return parts[3] if len(parts) >= 5 else None

    def read(self) -> dict[str, Any]:
        """The game's JSON document (``pddl_domain``, ``grammar``, ``pddl_problem``, ``solvable``, ``walkthrough``)."""
        return _read_json(self.path)

    @property
    def walkthrough(self) -> list[str]:
        """The expert command list stored with the game (read from disk on each access)."""
        return list(self.read().get("walkthrough") or [])


def data_root(data: str | os.PathLike[str] | None = None) -> Path:
    """The folder whose subfolders are splits (ALFWorld's ``json_2.1.1``).

    Args:
        data: The folder that holds ``json_2.1.1``, ``json_2.1.1`` itself, or one split folder in it.
            Defaults to ``$ALFWORLD_DATA`` (what ``alfworld-download`` sets up).

    Raises:
        AlfworldDataError: Neither ``data`` nor ``$ALFWORLD_DATA`` points at ALFWorld games.
    """
    if data is None:
        env = os.environ.get(DATA_ENV_VAR)
        if not env:
            msg = f"No ALFWorld data given and ${DATA_ENV_VAR} is not set. {_HOW_TO_GET_DATA}"
            raise AlfworldDataError(msg)
        data, origin = env, f"${DATA_ENV_VAR}={env}"
    else:
        origin = str(data)
    path = Path(data).expanduser()
    if not path.is_dir():
        msg = f"ALFWorld data folder {origin} does not exist. {_HOW_TO_GET_DATA}"
        raise AlfworldDataError(msg)
    if (path / JSON_DIR).is_dir():
        return (path / JSON_DIR).resolve()
    if _is_split_dir(path):
        return path.resolve().parent
    if any(_is_split_dir(child) for child in _subdirs(path)):
        return path.resolve()
    msg = f"No ALFWorld games under {origin} (expected {JSON_DIR}/<split>/<game folder>/<trial>/{GAME_FILE}). "
    raise AlfworldDataError(msg + _HOW_TO_GET_DATA)


def find_games(
    data: str | os.PathLike[str] | None = None,
    split: str = "valid_seen",
    task_types: str | Iterable[str] | None = None,
    n: int | None = None,
    seed: int | None = None,
    skip: int = 0,
) -> list[GameInfo]:
    """List the solvable games of one split.

    Args:
        data: Where the games are (see :func:`data_root`); defaults to ``$ALFWORLD_DATA``.
        split: ``train``, ``valid_seen``, ``valid_unseen``, or ``generated`` for :func:`generate_games` output.
        task_types: Keep only these task types (one name or several); all six by default.
        n: At most this many games.
        seed: With a seed, the games come in a seeded random order (so ``n`` gives a seeded random sample,
            and a larger ``n`` with the same seed extends a smaller one); without one, in sorted path order.
        skip: Leave out the first ``skip`` games of that order before taking ``n`` (e.g. the games a
            model was fine-tuned on: ``n=400, seed=0`` for training, ``skip=400, seed=0`` for evaluation).

    Returns:
        The games, deterministic for given arguments and files. Games whose JSON does not say
        ``"solvable": true`` and ALFWorld's unsupported kinds (movable receptacles, sliced objects) are skipped.

    Raises:
        AlfworldDataError: No data found, or the split folder is missing.
        ValueError: An unknown task type, a negative ``n`` or a negative ``skip``.
    """
    wanted = _check_task_types(task_types)
    if n is not None and n < 0:
        msg = f"n must be >= 0 or None, got {n}"
        raise ValueError(msg)
    if skip < 0:
        msg = f"skip must be >= 0, got {skip}"
        raise ValueError(msg)
    root = data_root(data)
    split_dir = root / split
    if not split_dir.is_dir():
        available = sorted(child.name for child in _subdirs(root) if _is_split_dir(child))
        msg = f"No split '{split}' in {root}; available splits: {available or 'none'}. "
        raise AlfworldDataError(msg + _HOW_TO_GET_DATA)

    candidates: list[GameInfo] = []
    for file in sorted(split_dir.glob(f"*/*/{GAME_FILE}")):
        folder = file.parent.parent.name
        task_type = _task_type_of_folder(folder)
        if task_type is None or task_type not in wanted or "Sliced" in folder:
            continue
        name = f"{folder}/{file.parent.name}"
        candidates.append(GameInfo(path=file.resolve(), task_type=task_type, split=split, name=name))
    if seed is not None:
        random.Random(seed).shuffle(candidates)

    games: list[GameInfo] = []
    for game in candidates:
        if n is not None and len(games) >= n + skip:
            break
        if _SOLVABLE.search(game.path.read_bytes()):
            games.append(game)
        else:
            logger.debug("skipping %s: not marked solvable", game.name)
    if len(games) < skip:
        logger.warning("asked to skip %d games in %s, found only %d", skip, split_dir, len(games))
    games = games[skip:]
    if n is not None and len(games) < n:
        skipped = f" after skipping {skip}" if skip else ""
        logger.warning("asked for %d games in %s%s, found %d", n, split_dir, skipped, len(games))
    return games


def _check_task_types(task_types: str | Iterable[str] | None) -> tuple[str, ...]:
    if task_types is None:
        return TASK_TYPES
    wanted = (task_types,) if isinstance(task_types, str) else tuple(task_types)
    unknown = [t for t in wanted if t not in TASK_TYPES]
    if unknown:
        msg = f"Unknown ALFWorld task type(s) {unknown}; choose from {list(TASK_TYPES)}."
        raise ValueError(msg)
    return wanted


def _task_type_of_folder(folder: str) -> str | None:
    head = folder.split("-", 1)[0]
    return head if head in TASK_TYPES and "-" in folder else None


def _subdirs(path: Path) -> list[Path]:
    try:
        return [child for child in path.iterdir() if child.is_dir()]
    except OSError:
        return []


def _is_split_dir(path: Path) -> bool:
    return any(_task_type_of_folder(child.name) for child in _subdirs(path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"Cannot read ALFWorld game {path}: {exc}. Re-download it (alfworld-download) or regenerate it."
        raise AlfworldDataError(msg) from exc


_TASK_LINE = re.compile(r"Your task is to: ([^\"\n]*)")


def _task_sentence(text: str) -> str:
    """The goal sentence after ``Your task is to:`` in ``text`` (a grammar or an observation), no final period."""
    match = _TASK_LINE.search(text)
    return match.group(1).strip().rstrip(".").strip() if match else ""


def _guess_task_type(task: str) -> str:
    """Best guess of the task type from a goal sentence (used only for games outside the ALFWorld layout)."""
    words = set(re.findall(r"[a-z]+", task.lower()))
    if words & {"look"} or ("examine" in words and "with" in words):
        return "look_at_obj_in_light"
    if words & {"two"}:
        return "pick_two_obj_and_place"
    if words & {"clean"}:
        return "pick_clean_then_place_in_recep"
    if words & {"hot", "heat"}:
        return "pick_heat_then_place_in_recep"
    if words & {"cool", "cold"}:
        return "pick_cool_then_place_in_recep"
    return "pick_and_place_simple"
