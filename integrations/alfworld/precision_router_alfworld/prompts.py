"""Chat prompts for the ALFWorld ReAct agent.

The prompt is a chat: a system turn with the instructions, one solved example game as earlier
user / assistant turns, then the current game: each observation a user turn, each action an
assistant turn. Prompts only ever grow at the end during an episode, so the scorer's prefix KV
cache carries from one step to the next.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

__all__ = ["Example", "PromptConfig", "build_messages", "carried", "parse_transcript"]

_INSTRUCTIONS = (
    "You are a household robot playing a text game. Each turn you read what you observe and reply with "
    "one command for the game, and nothing else. Commands: go to <place>, open <place>, close <place>, "
    "take <object> from <place>, move <object> to <place>, clean <object> with <sink>, heat <object> with "
    "<microwave>, cool <object> with <fridge>, use <lamp>, examine <thing>, inventory, look."
)
_THINKING = " You may also reply 'think: <a short plan>' to reason before acting; the game answers 'OK.'."


@dataclass(frozen=True)
class Example:
    """A solved game: the opening observation and the ``(action, observation)`` turns that follow."""

    opening: str
    turns: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def without_thoughts(self) -> Example:
        """The same game with its ``think:`` turns removed."""
        return Example(self.opening, tuple(t for t in self.turns if not t[0].lower().startswith("think:")))


@dataclass(frozen=True)
class PromptConfig:
    """How the prompt is written.

    Attributes:
        thoughts: allow (and show) ``think:`` actions (the ``generate`` mode); scoring mode drops them.
        restate_goal: append ``(Your task: ...)`` to every observation of the current game.
        track_inventory: append ``(You are carrying: ...)`` to every observation of the current
            game, read from the transcript (small models lose track of what they hold).
        instructions: open with the system turn that explains the game; a model fine-tuned on
            the game's trajectories does without it (shorter prompts, faster steps).
    """

    thoughts: bool = False
    restate_goal: bool = False
    track_inventory: bool = False
    instructions: bool = True


def parse_transcript(text: str) -> list[Example]:
    """Parse ``fewshot_transcript`` text (``> action`` lines, each followed by its observation).

    Several games are separated by blank-line-delimited openings; each game starts with its
    opening observation (the text before its first ``> `` line).
    """
    games: list[Example] = []
    for block in re.split(r"\n\s*\n(?=You are in the middle of a room)", text.strip()):
        parts = re.split(r"^> ", block.strip(), flags=re.MULTILINE)
        opening = parts[0].strip()
        turns = []
        for part in parts[1:]:
            action, _, observation = part.partition("\n")
            turns.append((action.strip(), observation.strip()))
        if opening:
            games.append(Example(opening, tuple(turns)))
    return games


_PICK = re.compile(r"You pick up the (.+?) from ")
_PUT = re.compile(r"You (?:move|put) the (.+?) (?:to|in|on) ")


def carried(turns: Sequence[tuple[str, str]]) -> list[str]:
    """What the agent holds after ``turns``, read from the game's own feedback."""
    held: list[str] = []
    for _, observation in turns:
        if match := _PICK.search(observation):
            held.append(match.group(1))
        elif (match := _PUT.search(observation)) and match.group(1) in held:
            held.remove(match.group(1))
    return held


def _annotate(observation: str, task: str, held: list[str], config: PromptConfig) -> str:
    notes = []
    if config.track_inventory:
        notes.append(f"You are carrying: {', '.join(held) if held else 'nothing'}.")
    if config.restate_goal and task:
        notes.append(f"Your task: {task}.")
    return f"{observation}\n({' '.join(notes)})" if notes else observation


def build_messages(
    opening: str,
    turns: Sequence[tuple[str, str]],
    *,
    task: str = "",
    examples: Sequence[Example] = (),
    config: PromptConfig | None = None,
) -> list[BaseMessage]:
    """The chat for the next action of the current game.

    Args:
        opening: the current game's opening observation (room and task).
        turns: the current game's ``(action, observation)`` turns so far.
        task: the goal sentence (for ``restate_goal``).
        examples: solved example games shown first.
        config: prompt options.
    """
    config = config or PromptConfig()
    messages: list[BaseMessage] = []
    if config.instructions:
        messages.append(SystemMessage(_INSTRUCTIONS + (_THINKING if config.thoughts else "")))
    for example in examples:
        shown = example if config.thoughts else example.without_thoughts()
        messages.append(HumanMessage(f"Example game.\n{shown.opening}"))
        for action, observation in shown.turns:
            messages += [AIMessage(action), HumanMessage(observation)]
    new_game = "New game.\n" if examples else ""
    messages.append(HumanMessage(f"{new_game}{opening}"))
    for i, (action, observation) in enumerate(turns):
        held = carried(turns[: i + 1]) if config.track_inventory else []
        messages += [AIMessage(action), HumanMessage(_annotate(observation, task, held, config))]
    return messages
