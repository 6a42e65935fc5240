"""Where precision-router keeps files it builds once: exported and quantized checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]

ENV_VAR = "PRECISION_ROUTER_CACHE"


def cache_dir(*parts: str) -> Path:
    """``$PRECISION_ROUTER_CACHE`` (default: the user cache folder) joined with ``parts``; created."""
    root = os.environ.get(ENV_VAR)
    if root:
        base = Path(root).expanduser()
    else:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("precision-router"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
