"""Offline router training from traces: KL-ST (stage 1) and GRPO (stage 2)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["KLSTConfig", "KLSTResult", "kl_labels", "train_klst"]

_LAZY = {name: "precision_router.training.klst" for name in __all__}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
