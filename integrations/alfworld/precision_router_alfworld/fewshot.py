"""Few-shot ReAct-style transcripts, written by this project from real game replays.

A transcript replays a game's stored ``walkthrough`` through :class:`AlfworldEnv`, so every
observation is what the game really answers, and inserts a few ``think:`` lines generated from
templates of our own (a plan, the object found, taken, cleaned / heated / cooled, one of two
placed). Replays are cached on disk (``precision_router.cache.cache_dir("alfworld", "fewshot")``)
keyed by the game file and :data:`FEWSHOT_VERSION`, so later calls are instant.

Format: the game's first observation (room description, then ``Your task is to: ...``), then one
``> {action}`` line and one observation per turn; transcripts are separated by a blank line::

    You are in the middle of a room. Looking quickly around you, you see a cabinet 1, ...

    Your task is to: put a clean plate in countertop.
    > think: Plan: find a plate, take it, clean it with the sinkbasin, then put it in the countertop.
    OK.
    > go to shelf 1
    You arrive at shelf 1. On the shelf 1, you see a plate 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from precision_router_alfworld.data import AlfworldDataError, GameInfo, _check_task_types, find_games

__all__ = ["FEWSHOT_VERSION", "fewshot_transcript", "game_transcript"]

logger = logging.getLogger(__name__)

FEWSHOT_VERSION = "1"
"""Bump when the transcript format or the thought templates change (it invalidates the cache)."""

_VERB_DONE = {"clean": "clean", "heat": "hot", "cool": "cold"}
_COMMAND = re.compile(
    r"^(?:(?P<go>go to) (?P<go_r>.+)|(?P<open>open) (?P<open_r>.+)"
    r"|(?P<take>take) (?P<take_o>.+) from (?P<take_r>.+)|(?P<move>move) (?P<move_o>.+) to (?P<move_r>.+)"
    r"|(?P<verb>clean|heat|cool) (?P<verb_o>.+) with (?P<verb_r>.+)|(?P<use>use) (?P<use_o>.+))$"
)


def fewshot_transcript(
    task_type: str,
    *,
    data: str | os.PathLike[str] | None = None,
    k: int = 1,
    seed: int = 0,
    games: Sequence[GameInfo | str | os.PathLike[str]] | None = None,
) -> str:
    """``k`` worked examples of one task type, as one prompt-ready string.

    Examples come from ``games`` when given, else from the ``train`` split of ``data`` (default
    ``$ALFWORLD_DATA``, a seeded sample). Without ALFWorld data they come from games made by
    :func:`generate_games` in ``cache_dir("alfworld", "generated")``, so a fresh machine works offline.

    Example:
        >>> prompt = fewshot_transcript("pick_clean_then_place_in_recep", k=2)  # doctest: +SKIP

    Args:
        task_type: One of :data:`TASK_TYPES`.
        data: Where ALFWorld's games are (see :func:`data_root`).
        k: How many transcripts.
        seed: Which train games (a seeded sample; the same seed gives the same games).
        games: Use these games instead (those of ``task_type``, first ``k`` that replay to a win).

    Returns:
        The transcripts separated by a blank line (``""`` for ``k=0``).

    Raises:
        ValueError: An unknown task type, a negative ``k``, or ``games`` without a game of ``task_type``.
        AlfworldDataError: Fewer than ``k`` of the given ``games`` could be replayed to a win.
    """
    (task_type,) = _check_task_types(task_type)
    if k < 0:
        msg = f"k must be >= 0, got {k}"
        raise ValueError(msg)
    if k == 0:
        return ""
    if games is not None:
        chosen = [g if isinstance(g, GameInfo) else GameInfo.from_path(g) for g in games]
        chosen = [g for g in chosen if g.task_type == task_type]
        if not chosen:
            msg = f"None of the {len(games)} given games is a {task_type} game; pass games of that task type."
            raise ValueError(msg)
    else:
        chosen = _train_games(task_type, data, seed)
        if not chosen:
            chosen = _generated_games(task_type, k, seed)
    transcripts = _transcripts(chosen, k)
    if len(transcripts) < k:
        msg = (
            f"Only {len(transcripts)} of {len(chosen)} {task_type} games replayed to a win; {k} transcripts asked. "
            "Pass more games, or a smaller k."
        )
        raise AlfworldDataError(msg)
    return "\n\n".join(transcripts)


def game_transcript(game: GameInfo | str | os.PathLike[str]) -> str:
    """The transcript of one game: its walkthrough replayed, with thoughts (cached on disk).

    Raises:
        AlfworldDataError: The walkthrough does not win the game (or the game has none).
    """
    from precision_router_alfworld.env import AlfworldEnv

    info = game if isinstance(game, GameInfo) else GameInfo.from_path(game)
    cached = _read_cached(info)
    if cached is not None:
        return cached
    with AlfworldEnv(info, max_steps=500) as env:
        text = _replay(env, info)
    _write_cached(info, text)
    return text


# -- choosing games --------------------------------------------------------------------------------


def _train_games(task_type: str, data: str | os.PathLike[str] | None, seed: int) -> list[GameInfo]:
    try:
        return find_games(data, split="train", task_types=[task_type], seed=seed)
    except AlfworldDataError as exc:
        logger.info("no ALFWorld train games for few-shot examples (%s); using generated games", exc)
        return []


def _generated_games(task_type: str, k: int, seed: int) -> list[GameInfo]:
    from precision_router.cache import cache_dir
    from precision_router_alfworld.generate import generate_games

    out = cache_dir("alfworld", "generated")
    logger.info("few-shot examples for %s come from generated games in %s", task_type, out)
    return generate_games(out, k, seed=seed, task_types=[task_type], difficulty="easy")


def _transcripts(games: Iterable[GameInfo], k: int) -> list[str]:
    texts: list[str] = []
    for game in games:
        if len(texts) == k:
            break
        try:
            texts.append(game_transcript(game))
        except AlfworldDataError as exc:
            logger.warning("skipping %s for few-shot examples: %s", game.name, exc)
    return texts


# -- replay and thoughts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Command:
    kind: str  # go, open, take, move, clean, heat, cool, use, other
    obj: str = ""  # "apple 1"
    receptacle: str = ""  # "countertop 2"


def _parse(command: str) -> _Command:
    match = _COMMAND.match(command.strip())
    if match is None:
        return _Command("other")
    groups = match.groupdict()
    for kind in ("go", "open", "take", "move", "use"):
        if groups[kind]:
            return _Command(kind, obj=groups.get(f"{kind}_o") or "", receptacle=groups.get(f"{kind}_r") or "")
    return _Command(groups["verb"], obj=groups["verb_o"], receptacle=groups["verb_r"])


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _kind_of(name: str) -> str:
    """``"apple 1"`` -> ``"apple"``."""
    return re.sub(r"\s+\d+$", "", name)


def _replay(env: object, game: GameInfo) -> str:
    from precision_router_alfworld.env import AlfworldEnv

    assert isinstance(env, AlfworldEnv)
    walkthrough = game.walkthrough
    if not walkthrough:
        msg = f"{game.name} has no walkthrough to replay."
        raise AlfworldDataError(msg)
    commands = [_parse(c) for c in walkthrough]
    thoughts = _thoughts(game, commands)

    observation, _ = env.reset()
    lines = [observation]
    won = False

    def play(action: str) -> None:
        nonlocal won
        obs, won, _, _ = env.step(action)
        lines.extend((f"> {action}", obs))

    for thought in thoughts.get(-1, []):
        play(f"think: {thought}")
    for i, command in enumerate(walkthrough):
        play(command)
        if won:
            break
        for thought in thoughts.get(i, []):
            play(f"think: {thought}")
    if not won:
        msg = f"The walkthrough of {game.name} does not win it; it cannot serve as an example."
        raise AlfworldDataError(msg)
    return "\n".join(lines)


def _thoughts(game: GameInfo, commands: Sequence[_Command]) -> dict[int, list[str]]:
    """Thoughts to insert after step ``i`` (``-1``: before the first action), from templates."""
    takes = [c for c in commands if c.kind == "take"]
    moves = [c for c in commands if c.kind == "move"]
    changes = [c for c in commands if c.kind in _VERB_DONE]
    uses = [c for c in commands if c.kind == "use"]
    obj = _kind_of(takes[0].obj) if takes else (game.object_type or "object").lower()
    goal = _kind_of(moves[0].receptacle) if moves else (game.receptacle_type or "").lower()
    out: dict[int, list[str]] = {}

    def add(i: int, text: str) -> None:
        out.setdefault(i, []).append(text)

    # A plan, before anything else.
    if game.task_type == "look_at_obj_in_light":
        lamp = _kind_of(uses[0].obj) if uses else "desklamp"
        add(-1, f"Plan: get {_a(obj)} into my hands, then switch on {_a(lamp)} while I stand beside it.")
    elif game.task_type == "pick_two_obj_and_place":
        add(-1, f"Plan: the {goal} needs two {obj} items. I will bring them over one at a time.")
    elif changes:
        verb, place = changes[0].kind, _kind_of(changes[0].receptacle)
        add(-1, f"Plan: find {_a(obj)}, take it, {verb} it with the {place}, then put it in the {goal}.")
    else:
        add(-1, f"Plan: find {_a(obj)}, take it, and put it in the {goal}.")
    first = commands[0] if commands else None
    if first is not None and first.kind == "go":
        add(-1, f"The {first.receptacle} looks like a likely place for {_a(obj)}. I will start there.")

    placed = 0
    for i, command in enumerate(commands):
        following = commands[i + 1] if i + 1 < len(commands) else None
        if following is not None and following.kind == "take" and command.kind in ("go", "open"):
            add(i, f"There is {_a(following.obj)} here. I will pick it up.")
        elif following is not None and following.kind == "use" and command.kind == "go":
            add(i, f"The {following.obj} is here. Turning it on.")
        if following is None:
            continue
        if command.kind == "take":
            if following.kind == "go" and changes:
                change = next(c for c in commands[i:] if c.kind in _VERB_DONE)
                add(i, f"I hold the {command.obj}. Next stop: the {change.receptacle}, to {change.kind} it.")
            elif following.kind == "go" and uses:
                add(i, f"I hold the {command.obj}. Now I need a lit {_kind_of(uses[0].obj)} right next to me.")
            elif following.kind == "go":
                add(i, f"I hold the {command.obj}. Now I carry it to the {goal}.")
        elif command.kind in _VERB_DONE:
            add(i, f"The {command.obj} is {_VERB_DONE[command.kind]} now. Time to put it in the {goal}.")
        elif command.kind == "move":
            placed += 1
            if placed == 1 and game.task_type == "pick_two_obj_and_place":
                add(i, f"One {obj} is in the {command.receptacle}. I still need a second {obj}.")
    return out


# -- cache -------------------------------------------------------------------------------------------


def _cache_file(game: GameInfo) -> Path:
    from precision_router.cache import cache_dir

    digest = hashlib.sha256()
    for part in (FEWSHOT_VERSION.encode(), str(game.path).encode(), game.path.read_bytes()):
        digest.update(hashlib.sha256(part).digest())
    return cache_dir("alfworld", "fewshot") / f"{digest.hexdigest()}.json"


def _read_cached(game: GameInfo) -> str | None:
    try:
        with open(_cache_file(game), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("version") != FEWSHOT_VERSION or not isinstance(record.get("transcript"), str):
        return None
    return record["transcript"]


def _write_cached(game: GameInfo, text: str) -> None:
    file = _cache_file(game)
    record = {"version": FEWSHOT_VERSION, "game": str(game.path), "name": game.name, "transcript": text}
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, file)
    except OSError:
        logger.debug("could not cache the transcript of %s", game.name, exc_info=True)
        tmp.unlink(missing_ok=True)
