"""The agent's settings: named bundles of options (``--setting``), the options themselves, how the agent acts.

:data:`SETTINGS` names the settings of the routing study; :class:`AgentOptions` holds every
option the agent factory (:mod:`precision_router_alfworld.factory`) reads, whether it comes from
the command line or from code; :class:`AgentConfig` is how the agent itself acts.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from precision_router_alfworld.prompts import PromptConfig

__all__ = ["SETTINGS", "AgentConfig", "AgentOptions"]

SETTINGS: dict[str, dict[str, object]] = {
    # The benchmark setting of the routing study (README, "The benchmark setting"): on generated
    # `trivial` games SmolLM2-135M wins 41.7 % at fp32 and 20.8 % at GPTQ 3-bit.
    "benchmark": {
        "model": "smollm2-135m-instruct",
        "high": "fp32",
        "low": "gptq-3bit",
        "mode": "score",
        "max_steps": 30,
        "exclude": ["help", "look", "inventory", "close", "examine"],
        "repeat_penalty": 10.0,
        "repeat_window": 8,
        "restate_goal": True,
        "track_inventory": True,
        "difficulty": "trivial",  # of the games generated when no ALFWorld data is given
    },
    # The real-game setting: SmolLM2-135M fine-tuned on ALFWorld walkthroughs (the shipped adapter,
    # `precision-router alfworld finetune`) on the real games, prompted as it was trained.
    "real": {
        "model": "smollm2-135m-alfworld",
        "high": "fp32",
        "low": "gptq-3bit",
        "mode": "score",
        "split": "valid_seen",
        "max_steps": 50,
        "exclude": ["help", "look", "inventory", "close", "examine"],
        "repeat_penalty": 2.0,
        "repeat_window": 8,
        "restate_goal": False,
        "track_inventory": True,
        "instructions": False,
        "fewshot": 0,
    },
}
"""Named bundles of agent options for ``--setting NAME``."""


@dataclass(frozen=True)
class AgentConfig:
    """How the agent acts.

    Attributes:
        mode: ``"score"`` (pick the likeliest admissible command) or ``"generate"`` (write it).
        max_steps: step cap per episode (ReAct uses 50).
        normalize: ``"sum"`` of token log-likelihoods per command, or their ``"mean"``.
        repeat_penalty: nats subtracted from a command's score per time it was played in the
            last ``repeat_window`` steps (loop avoidance); 0 disables.
        repeat_window: how many recent steps the penalty looks at.
        undo_penalty: nats subtracted from the command that would undo the previous one
            (``move X to R`` right after ``take X from R``, ``close R`` after ``open R`` and
            back); 0 disables.
        contextual_calibration: subtract this multiple of each command's score in a neutral
            context (no task, no observations), which removes the model's prior preference for
            some commands (short ``go to`` ones); 0 disables.
        score_both: in ``score`` mode, score with both precisions at every step and record both
            distributions and ``KL(pi_low || pi_high)`` in the trace (KL collection).
        exclude: commands never offered as candidates: an entry removes the command equal to
            it and every command that starts with it followed by a space, so ``"close"`` removes
            all ``close ...`` commands and ``"look"`` removes ``look``.
        prompt: prompt options (``restate_goal``; thoughts are on in ``generate`` mode).
        max_new_tokens: ``generate`` mode: most tokens per command.
        match_cutoff: ``generate`` mode: similarity (0-1) above which an inadmissible command is
            mapped to the closest admissible one.
    """

    mode: Literal["score", "generate"] = "score"
    max_steps: int = 30
    normalize: Literal["sum", "mean"] = "sum"
    repeat_penalty: float = 0.0
    repeat_window: int = 4
    undo_penalty: float = 0.0
    contextual_calibration: float = 0.0
    score_both: bool = False
    exclude: tuple[str, ...] = ("help",)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    max_new_tokens: int = 24
    match_cutoff: float = 0.6

    def __post_init__(self) -> None:
        if self.mode not in ("score", "generate"):
            msg = f"mode must be 'score' or 'generate', got {self.mode!r}"
            raise ValueError(msg)
        if self.max_steps < 1:
            msg = f"max_steps must be positive, got {self.max_steps}"
            raise ValueError(msg)


@dataclass(frozen=True)
class AgentOptions:
    """Everything the agent factory reads: the games, the models, how the agent acts.

    The command line (``--setting``, ``--data``, ... of every command that plays games) parses
    into these; code builds them directly, e.g. ``AgentOptions.from_setting("benchmark", games=6)``.
    Defaults are the command line's.
    """

    data: str | None = None
    split: str = "valid_seen"
    games: int | None = None
    skip: int = 0
    """Leave out the first ``skip`` selected games (e.g. those a model was fine-tuned on)."""
    task_types: list[str] | None = None
    shard: tuple[int, int] | None = None
    seed: int = 0
    model: str = "smollm2-135m-instruct"
    low: str = "gptq-3bit"
    high: str = "fp32"
    backend: Literal["torch", "llama.cpp"] = "torch"
    """``llama.cpp``: ``high`` / ``low`` are GGUF rungs (``q8_0``, ``q4_k_m`` ...) or ``.gguf`` files."""
    mode: Literal["score", "generate"] = "score"
    max_steps: int = 30
    normalize: Literal["sum", "mean"] = "sum"
    repeat_penalty: float = 0.0
    repeat_window: int = 4
    undo_penalty: float = 0.0
    restate_goal: bool = False
    track_inventory: bool = False
    contextual_calibration: float = 0.0
    instructions: bool = True
    exclude: list[str] = field(default_factory=lambda: ["help"])
    fewshot: int = 1
    fewshot_data: str | None = None
    fewshot_split: str = "train"
    tiny: bool = False
    ladder: list[str] | None = None
    """Route over these precisions, highest first (e.g. ``fp32 gptq-4bit gptq-3bit``), instead of ``high`` / ``low``."""
    ladder_costs: list[float] | None = None
    """Each ladder rung's cost (default: linear from 1 at the top to 0 at the bottom)."""
    difficulty: str | None = None
    """Of the games generated when no ALFWorld data is found (default ``easy``)."""

    @classmethod
    def from_setting(cls, name: str, **overrides: Any) -> AgentOptions:
        """The options of a named setting (:data:`SETTINGS`), ``overrides`` applied."""
        if name not in SETTINGS:
            msg = f"unknown setting {name!r}; use one of {sorted(SETTINGS)}"
            raise ValueError(msg)
        return cls(**{**SETTINGS[name], **overrides})  # type: ignore[arg-type]

    @classmethod
    def of(cls, source: AgentOptions | argparse.Namespace) -> AgentOptions:
        """``source`` itself, or the options a parsed command line holds (its other arguments ignored)."""
        if isinstance(source, AgentOptions):
            return source
        given = vars(source)
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})

    def replace(self, **changes: Any) -> AgentOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def agent_config(self, *, score_both: bool = False) -> AgentConfig:
        """How the agent acts under these options."""
        return AgentConfig(
            mode=self.mode,
            max_steps=self.max_steps,
            normalize=self.normalize,
            repeat_penalty=self.repeat_penalty,
            repeat_window=self.repeat_window,
            undo_penalty=self.undo_penalty,
            contextual_calibration=self.contextual_calibration,
            exclude=tuple(self.exclude),
            score_both=score_both,
            prompt=PromptConfig(
                restate_goal=self.restate_goal, track_inventory=self.track_inventory, instructions=self.instructions
            ),
        )
