"""Routing: the state a router sees, routing policies, the step encoder and the router network.

Importing this package does not import torch; the network and encoder load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from precision_router.routing.base import (
    ROUTES,
    AlwaysHigh,
    AlwaysLow,
    RandomRouter,
    Route,
    RouteDecision,
    Router,
    RoutingState,
    ScoredRouter,
    ScoreReader,
    format_step,
    history_from_steps,
    router_window,
    scores_needed,
)

if TYPE_CHECKING:
    from precision_router.routing.encoder import StepEncoder
    from precision_router.routing.learned import LearnedRouter
    from precision_router.routing.network import RouterConfig, RouterNet

__all__ = [
    "ROUTES",
    "AlwaysHigh",
    "AlwaysLow",
    "LearnedRouter",
    "RandomRouter",
    "Route",
    "RouteDecision",
    "Router",
    "RouterConfig",
    "RouterNet",
    "RoutingState",
    "ScoreReader",
    "ScoredRouter",
    "StepEncoder",
    "format_step",
    "history_from_steps",
    "router_window",
    "scores_needed",
]

_LAZY = {
    "StepEncoder": "precision_router.routing.encoder",
    "LearnedRouter": "precision_router.routing.learned",
    "RouterConfig": "precision_router.routing.network",
    "RouterNet": "precision_router.routing.network",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
