"""Make new, verified-solvable ALFWorld games offline, for all six task types.

A generated game is a ``game.tw-pddl`` file like ALFWorld's own: ``pddl_domain`` and ``grammar`` are
the ``alfred.pddl`` / ``alfred.twl2`` files shipped inside the ``alfworld`` package (the grammar's
``UNKNOWN GOAL`` replaced by the task sentence), and ``pddl_problem`` describes a small room built
here from ALFRED's own world knowledge shipped in ``alfworld.gen``: a room kind allowed for the task
type, one of ALFRED's floor plans of that kind (its receptacle and object classes, from
``gen/layouts/FloorPlan*-objects.json``; its number is the game folder's scene number), which
objects fit in which receptacle and which can be heated / cooled / cleaned / sliced / toggled
(``gen/constants.py``), ALFRED-style ids (``Apple_bar__minus_00_dot_52_bar__plus_00_dot_91_...``),
and the goal formula and task sentences of ``gen/goal_library.py``. The walkthrough is scripted
from the room; every game is replayed through :class:`AlfworldEnv` and kept only if it is won.

Difficulty levels (:data:`DIFFICULTIES`):

``trivial``
    2-3 receptacles (more when the task needs an appliance), no distractor objects; the target
    lies in plain sight. For small models: what is left is the order of the steps.
``easy``
    3-5 receptacles, 1-3 distractor objects; every target object lies in plain sight (on a
    receptacle that does not open), so arriving at it shows it.
``medium``
    5-8 receptacles, 3-6 distractors; each target lies inside a closed receptacle (cabinet,
    drawer, fridge, safe, microwave) with probability 1/2.
``hard``
    8-12 receptacles, 6-12 distractors; every target lies inside a closed receptacle where it can.

Rooms needing an appliance (sink basin, microwave, fridge, desk lamp) always have one; it counts
towards the number of receptacles.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from precision_router_alfworld.data import GAME_FILE, JSON_DIR, GameInfo, _check_task_types

__all__ = ["DIFFICULTIES", "GENERATED_SPLIT", "Difficulty", "generate_games"]

logger = logging.getLogger(__name__)

GENERATED_SPLIT = "generated"
GENERATOR_VERSION = "1"


@dataclass(frozen=True)
class Difficulty:
    """How big and how hidden a generated room is.

    Attributes:
        receptacles: Inclusive range of the number of receptacles in the room.
        distractors: Inclusive range of the number of non-target objects.
        hidden: Probability that a target object starts inside a closed receptacle (when one can hold it).
    """

    receptacles: tuple[int, int]
    distractors: tuple[int, int]
    hidden: float


DIFFICULTIES: dict[str, Difficulty] = {
    "trivial": Difficulty(receptacles=(2, 3), distractors=(0, 0), hidden=0.0),
    "easy": Difficulty(receptacles=(3, 5), distractors=(1, 3), hidden=0.0),
    "medium": Difficulty(receptacles=(5, 8), distractors=(3, 6), hidden=0.5),
    "hard": Difficulty(receptacles=(8, 12), distractors=(6, 12), hidden=1.0),
}

# Receptacle classes a room kind may hold, with the most instances of each.
_ROOMS: dict[str, dict[str, int]] = {
    "Kitchen": {
        "CounterTop": 3,
        "Cabinet": 6,
        "Drawer": 4,
        "Fridge": 1,
        "Microwave": 1,
        "SinkBasin": 1,
        "StoveBurner": 4,
        "CoffeeMachine": 1,
        "DiningTable": 1,
        "GarbageCan": 1,
        "Shelf": 2,
        "SideTable": 1,
        "Toaster": 1,
    },
    "Bathroom": {
        "SinkBasin": 2,
        "BathtubBasin": 1,
        "Cabinet": 4,
        "CounterTop": 1,
        "Drawer": 3,
        "GarbageCan": 1,
        "HandTowelHolder": 1,
        "Shelf": 2,
        "Toilet": 1,
        "ToiletPaperHanger": 1,
        "TowelHolder": 1,
        "Cart": 1,
    },
    "Bedroom": {
        "Bed": 1,
        "Desk": 1,
        "Dresser": 1,
        "Drawer": 6,
        "Shelf": 4,
        "SideTable": 2,
        "GarbageCan": 1,
        "Safe": 1,
        "LaundryHamper": 1,
        "ArmChair": 1,
    },
    "LivingRoom": {
        "Sofa": 1,
        "ArmChair": 2,
        "CoffeeTable": 1,
        "SideTable": 2,
        "Drawer": 4,
        "Cabinet": 4,
        "Shelf": 3,
        "TVStand": 1,
        "GarbageCan": 1,
        "DiningTable": 1,
        "Ottoman": 1,
        "Dresser": 1,
        "Safe": 1,
    },
}

# Appliance a task type needs, and the action property its target must have.
_APPLIANCE = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "Cleanable", "clean"),
    "pick_heat_then_place_in_recep": ("Microwave", "Heatable", "heat"),
    "pick_cool_then_place_in_recep": ("Fridge", "Coolable", "cool"),
}
_LAMP = "DeskLamp"
_LAMP_HOLDERS = ("Desk", "SideTable", "Dresser")
# ALFRED never asks to put things into a sink or a bathtub.
_NOT_GOALS = frozenset({"SinkBasin", "BathtubBasin"})
# Type constants that alfred.pddl's actions name, so every problem must declare them.
_DOMAIN_RTYPES = ("SinkBasin", "Microwave", "Fridge")
_DOMAIN_OTYPES = ("Knife", "ButterKnife")
_PROPERTIES = {"Cleanable": "cleanable", "Heatable": "heatable", "Coolable": "coolable", "Sliceable": "sliceable"}


@dataclass
class _Receptacle:
    cls: str
    id: str
    location: str


@dataclass
class _Object:
    cls: str
    id: str
    receptacle: _Receptacle


@dataclass
class _Room:
    kind: str
    scene: int  # the ALFRED floor plan whose classes the room uses
    things: list[str]  # movable object classes of that floor plan
    task_type: str
    target: str
    goal: str  # receptacle class, or "DeskLamp" for look_at tasks
    sentence: str
    receptacles: list[_Receptacle] = field(default_factory=list)
    objects: list[_Object] = field(default_factory=list)
    start: str = ""
    targets: list[_Object] = field(default_factory=list)
    goal_receptacle: _Receptacle | None = None
    appliance: _Receptacle | None = None
    lamp: _Object | None = None


def generate_games(
    out_dir: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    task_types: str | Iterable[str] | None = None,
    difficulty: str = "easy",
) -> list[GameInfo]:
    """Write ``n`` new solvable games under ``out_dir/json_2.1.1/generated/``.

    Game ``i`` has task type ``task_types[i % len(task_types)]`` (all six by default, in :data:`TASK_TYPES`
    order) and depends only on ``(seed, difficulty, task type, i)``: the same call writes the same files,
    and a larger ``n`` extends a smaller one. Files that already hold the same game are kept as they are.

    Example:
        >>> games = generate_games("/tmp/alfworld-gen", 12, seed=0)  # doctest: +SKIP
        >>> find_games("/tmp/alfworld-gen", split="generated") == sorted(games, key=lambda g: g.path)  # doctest: +SKIP

    Args:
        out_dir: Folder to write into; ``find_games(out_dir, split="generated")`` finds the games.
        n: How many games.
        seed: Seed of the whole batch.
        task_types: One task type or several; all six by default.
        difficulty: ``"trivial"``, ``"easy"``, ``"medium"`` or ``"hard"`` (see the module docstring).

    Returns:
        The games, in generation order. Each file holds ``pddl_domain``, ``grammar``, ``pddl_problem``,
        ``solvable: true``, a ``walkthrough`` that wins it, and ``precision_router`` metadata.

    Raises:
        ValueError: A bad ``n``, task type or difficulty.
        RuntimeError: A game could not be made winnable (a bug: please report it with the arguments).
    """
    from tqdm.auto import tqdm

    from precision_router_alfworld.env import AlfworldEnv

    if n < 0:
        msg = f"n must be >= 0, got {n}"
        raise ValueError(msg)
    if difficulty not in DIFFICULTIES:
        msg = f"Unknown difficulty {difficulty!r}; choose from {list(DIFFICULTIES)}."
        raise ValueError(msg)
    types = _check_task_types(task_types)
    split_dir = Path(out_dir).expanduser() / JSON_DIR / GENERATED_SPLIT
    domain, grammar = _game_logic()

    games: list[GameInfo] = []
    env: AlfworldEnv | None = None
    try:
        for index in tqdm(range(n), desc=f"generating {difficulty} ALFWorld games", unit="game", disable=None):
            task_type = types[index % len(types)]
            for attempt in range(20):
                rng = random.Random(f"{GENERATOR_VERSION}|{seed}|{difficulty}|{task_type}|{index}|{attempt}")
                room = _build_room(rng, task_type, DIFFICULTIES[difficulty])
                trial = f"trial_{difficulty}_s{seed}_{index:05d}" + (f"_{attempt}" if attempt else "")
                folder = f"{task_type}-{room.target}-None-{room.goal}-{room.scene}"
                path = split_dir / folder / trial / GAME_FILE
                problem = _problem_text(room, trial)
                meta = {
                    "generator_version": GENERATOR_VERSION,
                    "seed": seed,
                    "index": index,
                    "attempt": attempt,
                    "difficulty": difficulty,
                    "room": room.kind,
                    "floor_plan": room.scene,
                }
                game = GameInfo(
                    path=path.resolve(), task_type=task_type, split=GENERATED_SPLIT, name=f"{folder}/{trial}"
                )
                if _already_written(path, problem):
                    games.append(game)
                    break
                document = {
                    "pddl_domain": domain,
                    "grammar": grammar.replace("UNKNOWN GOAL", room.sentence),
                    "pddl_problem": problem,
                    "solvable": False,
                    "walkthrough": [],
                    "precision_router": meta,
                }
                _write_json(path, document)
                if env is None:
                    env = AlfworldEnv(game, max_steps=200)
                walkthrough = _verified_walkthrough(env, game, room)
                if walkthrough is None:
                    logger.warning("generated game %s was not won by its walkthrough; trying again", game.name)
                    path.unlink()
                    _remove_empty_dirs(path.parent, split_dir)
                    continue
                document.update(solvable=True, walkthrough=walkthrough)
                _write_json(path, document)
                games.append(game)
                break
            else:
                msg = (
                    f"Could not make a winnable {task_type} game (seed={seed}, index={index}, "
                    f"difficulty={difficulty}); please report this with these arguments."
                )
                raise RuntimeError(msg)
    finally:
        if env is not None:
            env.close()
    return games


# -- the room ------------------------------------------------------------------------------------


def _build_room(rng: random.Random, task_type: str, level: Difficulty) -> _Room:
    """Choose a room kind and one of ALFRED's floor plans of it, a target, a goal and a layout."""
    from alfworld.gen import constants, goal_library

    fits = constants.VAL_RECEPTACLE_OBJECTS
    openable = set(constants.OPENABLE_CLASS_LIST)
    scenes = _scene_classes()
    for _ in range(1000):
        kind = rng.choice(sorted(constants.GOALS_VALID[task_type]))
        scene = rng.choice([p for p in constants.SCENE_TYPE[kind] if p in scenes])
        present = scenes[scene]
        # The floor plan's receptacle classes (as many instances as the room kind allows) and movable objects.
        pool = {c: most for c, most in _ROOMS[kind].items() if c in present}
        things = sorted(o for o in present if any(o in fits.get(c, ()) for c in pool) and "Sliced" not in o)
        appliance, prop, _ = _APPLIANCE.get(task_type, (None, None, None))
        if (appliance is not None and appliance not in pool) or sum(pool.values()) < level.receptacles[0]:
            continue
        holders = [c for c in _LAMP_HOLDERS if c in pool]
        if task_type == "look_at_obj_in_light" and (not holders or _LAMP not in present):
            continue
        # Look-at targets are things one would hold under a desk lamp: they fit on the lamp's furniture.
        objects = [o for o in things if task_type != "look_at_obj_in_light" or any(o in fits[c] for c in holders)]
        if prop is not None:
            objects = [o for o in objects if o in constants.VAL_ACTION_OBJECTS[prop]]
        if not objects:
            continue
        target = rng.choice(objects)
        if task_type == "look_at_obj_in_light":
            goal = _LAMP
        else:
            goals = sorted(c for c in pool if target in fits.get(c, ()) and c != appliance and c not in _NOT_GOALS)
            if not goals:
                continue
            goal = rng.choice(goals)
        sources = sorted(c for c in pool if target in fits.get(c, ()) and c != goal)
        hidden = [c for c in sources if c in openable]
        visible = [c for c in sources if c not in openable]
        if not sources or (level.hidden == 0.0 and not visible):
            continue
        n_targets = 2 if task_type == "pick_two_obj_and_place" else 1
        source_classes = []
        for _ in range(n_targets):
            want_hidden = rng.random() < level.hidden
            choices = (hidden if want_hidden else visible) or (visible if level.hidden < 1.0 else hidden) or sources
            source_classes.append(rng.choice(choices))
        template = rng.choice(goal_library.gdict[task_type]["templates"])
        sentence = template.format(obj=target.lower(), recep=goal.lower(), toggle=_LAMP.lower())
        room = _Room(
            kind=kind, scene=scene, things=things, task_type=task_type, target=target, goal=goal, sentence=sentence
        )
        _lay_out(rng, room, level, pool, source_classes, appliance, holders)
        return room
    msg = f"no room fits task type {task_type}"  # unreachable with ALFRED's floor plans
    raise RuntimeError(msg)


@functools.cache
def _scene_classes() -> dict[int, frozenset[str]]:
    """ALFRED floor plan number -> the object and receptacle classes in it (shipped in ``alfworld.gen``)."""
    layouts = resources.files("alfworld.gen").joinpath("layouts")
    scenes = {}
    for entry in layouts.iterdir():
        match = re.fullmatch(r"FloorPlan(\d+)-objects\.json", entry.name)
        if match:
            scenes[int(match.group(1))] = frozenset(json.loads(entry.read_text(encoding="utf-8")))
    return scenes


def _lay_out(
    rng: random.Random,
    room: _Room,
    level: Difficulty,
    pool: dict[str, int],
    source_classes: Sequence[str],
    appliance: str | None,
    holders: Sequence[str],
) -> None:
    from alfworld.gen import constants

    fits = constants.VAL_RECEPTACLE_OBJECTS
    ids = _Ids(rng)
    # Receptacle classes: the ones the task needs, then random others up to the drawn count.
    classes: list[str] = []
    lamp_holder = rng.choice(list(holders)) if room.task_type == "look_at_obj_in_light" else None
    for needed in (room.goal if room.goal != _LAMP else None, appliance, lamp_holder, *source_classes):
        if needed is not None and needed not in classes:
            classes.append(needed)
    wanted = max(rng.randint(*level.receptacles), len(classes))
    spare = [c for c, most in sorted(pool.items()) for _ in range(most)]
    for c in classes:
        spare.remove(c)
    rng.shuffle(spare)
    classes += spare[: wanted - len(classes)]
    rng.shuffle(classes)
    for cls in classes:
        room.receptacles.append(_Receptacle(cls=cls, id=ids.receptacle(cls), location=ids.location()))
    room.start = ids.location()

    def pick(cls: str) -> _Receptacle:
        return rng.choice([r for r in room.receptacles if r.cls == cls])

    if room.goal != _LAMP:
        room.goal_receptacle = pick(room.goal)
    if appliance is not None:
        room.appliance = pick(appliance)
    for cls in source_classes:
        target = _Object(cls=room.target, id=ids.object(room.target), receptacle=pick(cls))
        room.targets.append(target)
        room.objects.append(target)
    if lamp_holder is not None:
        room.lamp = _Object(cls=_LAMP, id=ids.object(_LAMP), receptacle=pick(lamp_holder))
        room.objects.append(room.lamp)
    # Distractors: other classes, each in a receptacle it fits in.
    others = [o for o in room.things if o != room.target]
    holders_of = [r for r in room.receptacles if any(o in fits.get(r.cls, ()) for o in others)]
    for _ in range(rng.randint(*level.distractors)):
        if not holders_of:
            break
        receptacle = rng.choice(holders_of)
        cls = rng.choice([o for o in others if o in fits[receptacle.cls]])
        room.objects.append(_Object(cls=cls, id=ids.object(cls), receptacle=receptacle))


class _Ids:
    """ALFRED-style unique ids: ``Class_bar_<x>_bar_<y>_bar_<z>`` and ``loc_bar_<x>_bar_<z>_bar_<r>_bar_<h>``."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._used: set[str] = set()

    def _unique(self, make: Any) -> str:
        while True:
            text = make()
            if text not in self._used:
                self._used.add(text)
                return text

    def _coords(self) -> str:
        def one() -> str:
            value = round(self._rng.uniform(-4.0, 4.0), 2)
            sign = "_minus_" if value < 0 else "_plus_"
            return sign + f"{abs(value):05.2f}".replace(".", "_dot_")

        return "_bar_".join(one() for _ in range(3))

    def object(self, cls: str) -> str:
        return self._unique(lambda: f"{cls}_bar_{self._coords()}")

    def receptacle(self, cls: str) -> str:
        if cls.endswith("Basin"):  # ALFRED names basins after their sink / bathtub: Sink_bar_..._bar_SinkBasin
            return self._unique(lambda: f"{cls[: -len('Basin')]}_bar_{self._coords()}_bar_{cls}")
        return self.object(cls)

    def location(self) -> str:
        def make() -> str:
            def num(v: int) -> str:
                return f"_minus_{-v}" if v < 0 else str(v)

            x, z = self._rng.randint(-12, 12), self._rng.randint(-12, 12)
            rotation, horizon = self._rng.randint(0, 3), self._rng.choice((-30, -15, 0, 15, 30, 45, 60))
            return f"loc_bar_{num(x)}_bar_{num(z)}_bar_{rotation}_bar_{num(horizon)}"

        return self._unique(make)


# -- PDDL ------------------------------------------------------------------------------------------


def _problem_text(room: _Room, trial: str) -> str:
    from alfworld.gen import constants, goal_library

    fits = constants.VAL_RECEPTACLE_OBJECTS
    openable = set(constants.OPENABLE_CLASS_LIST)
    movable = set(constants.MOVABLE_RECEPTACLES)
    rtypes = sorted({r.cls for r in room.receptacles} | set(_DOMAIN_RTYPES))
    otypes = sorted({o.cls for o in room.objects} | set(_DOMAIN_OTYPES) | {room.target})

    facts: list[str] = []
    for r in room.receptacles:
        facts.append(f"(receptacleType {r.id} {r.cls}Type)")
        if r.cls in openable:
            facts.append(f"(openable {r.id})")
        facts.append(f"(receptacleAtLocation {r.id} {r.location})")
    for o in room.objects:
        facts.append(f"(objectType {o.id} {o.cls}Type)")
        if o.cls == _LAMP:
            facts.append(f"(toggleable {o.id})")
        else:
            facts.append(f"(pickupable {o.id})")
        for prop, predicate in _PROPERTIES.items():
            if o.cls in constants.VAL_ACTION_OBJECTS[prop]:
                facts.append(f"({predicate} {o.id})")
        if o.cls in movable:
            facts.append(f"(isReceptacleObject {o.id})")
        facts.append(f"(inReceptacle {o.id} {o.receptacle.id})")
        facts.append(f"(objectAtLocation {o.id} {o.receptacle.location})")
    present = {o.cls for o in room.objects}
    for rtype in sorted({r.cls for r in room.receptacles}):
        facts.extend(f"(canContain {rtype}Type {otype}Type)" for otype in sorted(present & set(fits.get(rtype, ()))))
    facts.append(f"(atLocation agent1 {room.start})")

    goal = goal_library.gdict[room.task_type]["pddl"].replace("#", "-")
    goal = goal.format(obj=room.target, recep=room.goal, toggle=_LAMP)
    objects = ["agent1 - agent"]
    objects += [f"{t}Type - otype" for t in otypes]
    objects += [f"{t}Type - rtype" for t in rtypes]
    objects += [f"{o.id} - object" for o in room.objects]
    objects += [f"{r.id} - receptacle" for r in room.receptacles]
    objects += [f"{loc} - location" for loc in sorted({r.location for r in room.receptacles} | {room.start})]
    indent = "\n        "
    return (
        f"\n(define (problem plan_{trial})\n(:domain alfred)\n(:objects{indent}"
        + indent.join(objects)
        + f"\n)\n(:init{indent}"
        + indent.join(facts)
        + "\n)\n"
        + goal
    )


def _game_logic() -> tuple[str, str]:
    """The ``alfred.pddl`` domain and ``alfred.twl2`` grammar shipped inside the ``alfworld`` package."""
    data = resources.files("alfworld").joinpath("data")
    return data.joinpath("alfred.pddl").read_text(encoding="utf-8"), data.joinpath("alfred.twl2").read_text(
        encoding="utf-8"
    )


# -- walkthrough -----------------------------------------------------------------------------------


def _verified_walkthrough(env: Any, game: GameInfo, room: _Room) -> list[str] | None:
    """The scripted solution of ``room`` in command form, if replaying it in ``env`` wins the game."""
    from alfworld.gen import constants

    env.reset(game)
    names = env.entity_names
    openable = set(constants.OPENABLE_CLASS_LIST)
    commands: list[str] = []
    here = room.start
    opened: set[str] = set()

    def name(thing: _Receptacle | _Object) -> str:
        return names[thing.id.lower()]

    def go(r: _Receptacle) -> None:
        nonlocal here
        if here != r.location:
            commands.append(f"go to {name(r)}")
            here = r.location

    def reach(r: _Receptacle) -> None:
        go(r)
        if r.cls in openable and r.id not in opened:
            commands.append(f"open {name(r)}")
            opened.add(r.id)

    for target in room.targets:
        reach(target.receptacle)
        commands.append(f"take {name(target)} from {name(target.receptacle)}")
        if room.appliance is not None:
            verb = _APPLIANCE[room.task_type][2]
            go(room.appliance)
            commands.append(f"{verb} {name(target)} with {name(room.appliance)}")
        if room.goal_receptacle is not None:
            reach(room.goal_receptacle)
            commands.append(f"move {name(target)} to {name(room.goal_receptacle)}")
    if room.lamp is not None:
        go(room.lamp.receptacle)
        commands.append(f"use {name(room.lamp)}")

    won = False
    for i, command in enumerate(commands):
        if command not in env.admissible_commands:
            logger.debug("%s: %r is not admissible at step %d", game.name, command, i)
            return None
        _, won, _, _ = env.step(command)
        if won and i < len(commands) - 1:
            return None
    return commands if won else None


# -- files -----------------------------------------------------------------------------------------


def _already_written(path: Path, problem: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return (
        bool(document.get("solvable")) and bool(document.get("walkthrough")) and document.get("pddl_problem") == problem
    )


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
    os.replace(tmp, path)


def _remove_empty_dirs(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
