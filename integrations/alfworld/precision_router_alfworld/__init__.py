"""ALFWorld for precision-router: find games, play them step by step, few-shot transcripts, new games.

The public names below are imported lazily (PEP 562): ``import precision_router_alfworld`` loads
neither TextWorld, ALFWorld nor torch; the game engine loads on the first ``AlfworldEnv.reset()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from precision_router_alfworld.agent import AgentConfig, AlfworldAgent
    from precision_router_alfworld.data import TASK_TYPES, AlfworldDataError, GameInfo, data_root, find_games
    from precision_router_alfworld.env import AlfworldEnv, AlfworldEnvError
    from precision_router_alfworld.fewshot import fewshot_transcript, game_transcript
    from precision_router_alfworld.generate import DIFFICULTIES, generate_games
    from precision_router_alfworld.prompts import Example, PromptConfig
    from precision_router_alfworld.runner import RunResult, run_games
    from precision_router_alfworld.settings import SETTINGS, AgentOptions

__all__ = [
    "DIFFICULTIES",
    "TASK_TYPES",
    "SETTINGS",
    "AgentConfig",
    "AgentOptions",
    "AlfworldAgent",
    "Example",
    "PromptConfig",
    "RunResult",
    "run_games",
    "AlfworldDataError",
    "AlfworldEnv",
    "AlfworldEnvError",
    "GameInfo",
    "__version__",
    "data_root",
    "fewshot_transcript",
    "find_games",
    "game_transcript",
    "generate_games",
]

# Public name -> module that defines it. Add new names here (and to __all__).
_LAZY: dict[str, str] = {
    "TASK_TYPES": "precision_router_alfworld.data",
    "AlfworldDataError": "precision_router_alfworld.data",
    "GameInfo": "precision_router_alfworld.data",
    "data_root": "precision_router_alfworld.data",
    "find_games": "precision_router_alfworld.data",
    "AlfworldEnv": "precision_router_alfworld.env",
    "AlfworldEnvError": "precision_router_alfworld.env",
    "fewshot_transcript": "precision_router_alfworld.fewshot",
    "game_transcript": "precision_router_alfworld.fewshot",
    "DIFFICULTIES": "precision_router_alfworld.generate",
    "generate_games": "precision_router_alfworld.generate",
    "AgentConfig": "precision_router_alfworld.settings",
    "AgentOptions": "precision_router_alfworld.settings",
    "SETTINGS": "precision_router_alfworld.settings",
    "AlfworldAgent": "precision_router_alfworld.agent",
    "Example": "precision_router_alfworld.prompts",
    "PromptConfig": "precision_router_alfworld.prompts",
    "RunResult": "precision_router_alfworld.runner",
    "run_games": "precision_router_alfworld.runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
