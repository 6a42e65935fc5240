"""precision-router: route each agent step to a high- or low-precision copy of one model.

The public names below are imported lazily (PEP 562): ``import precision_router`` loads
neither torch nor LangChain.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from precision_router.chat_model import RoutedChatModel
    from precision_router.conversation import ConversationTracker
    from precision_router.errors import (
        CheckpointMismatchError,
        EmptyTraceSetError,
        InvalidArgumentError,
        MissingExtraError,
        ModelLoadError,
        PolicySpecError,
        PrecisionRouterError,
        RouteDecisionError,
        TokenizerMismatchError,
        TraceFileError,
        TraceSchemaError,
        TraceWriteError,
    )
    from precision_router.graph import (
        ModelNode,
        RoutedMessagesState,
        RouterNode,
        build_routed_react_agent,
        route_edge,
    )
    from precision_router.middleware import PrecisionRoutingMiddleware, PrecisionRoutingState
    from precision_router.models.llamacpp import LlamaCppChatModel
    from precision_router.models.local import LocalChatModel
    from precision_router.models.pair import load_precision_pair
    from precision_router.routing.base import (
        AlwaysHigh,
        AlwaysLow,
        RandomRouter,
        RouteDecision,
        Router,
        RoutingState,
    )
    from precision_router.routing.encoder import StepEncoder
    from precision_router.routing.learned import LearnedRouter
    from precision_router.routing.network import RouterConfig, RouterNet
    from precision_router.traces.schema import Episode, Step
    from precision_router.traces.store import JsonlTraceStore

__all__ = [
    "AlwaysHigh",
    "AlwaysLow",
    "CheckpointMismatchError",
    "ConversationTracker",
    "EmptyTraceSetError",
    "Episode",
    "InvalidArgumentError",
    "JsonlTraceStore",
    "LearnedRouter",
    "LlamaCppChatModel",
    "LocalChatModel",
    "MissingExtraError",
    "ModelLoadError",
    "ModelNode",
    "PolicySpecError",
    "PrecisionRouterError",
    "PrecisionRoutingMiddleware",
    "PrecisionRoutingState",
    "RandomRouter",
    "RouteDecision",
    "RouteDecisionError",
    "RoutedChatModel",
    "RoutedMessagesState",
    "Router",
    "RouterConfig",
    "RouterNet",
    "RouterNode",
    "RoutingState",
    "Step",
    "StepEncoder",
    "TokenizerMismatchError",
    "TraceFileError",
    "TraceSchemaError",
    "TraceWriteError",
    "__version__",
    "build_routed_react_agent",
    "load_precision_pair",
    "route_edge",
]

_LAZY = {
    "RoutedChatModel": "precision_router.chat_model",
    "ConversationTracker": "precision_router.conversation",
    "CheckpointMismatchError": "precision_router.errors",
    "EmptyTraceSetError": "precision_router.errors",
    "MissingExtraError": "precision_router.errors",
    "ModelLoadError": "precision_router.errors",
    "PrecisionRouterError": "precision_router.errors",
    "TokenizerMismatchError": "precision_router.errors",
    "TraceSchemaError": "precision_router.errors",
    "InvalidArgumentError": "precision_router.errors",
    "PolicySpecError": "precision_router.errors",
    "RouteDecisionError": "precision_router.errors",
    "TraceFileError": "precision_router.errors",
    "TraceWriteError": "precision_router.errors",
    "ModelNode": "precision_router.graph",
    "RoutedMessagesState": "precision_router.graph",
    "RouterNode": "precision_router.graph",
    "build_routed_react_agent": "precision_router.graph",
    "route_edge": "precision_router.graph",
    "PrecisionRoutingMiddleware": "precision_router.middleware",
    "PrecisionRoutingState": "precision_router.middleware",
    "LlamaCppChatModel": "precision_router.models.llamacpp",
    "LocalChatModel": "precision_router.models.local",
    "load_precision_pair": "precision_router.models.pair",
    "AlwaysHigh": "precision_router.routing.base",
    "AlwaysLow": "precision_router.routing.base",
    "RandomRouter": "precision_router.routing.base",
    "RouteDecision": "precision_router.routing.base",
    "Router": "precision_router.routing.base",
    "RoutingState": "precision_router.routing.base",
    "StepEncoder": "precision_router.routing.encoder",
    "LearnedRouter": "precision_router.routing.learned",
    "RouterConfig": "precision_router.routing.network",
    "RouterNet": "precision_router.routing.network",
    "Episode": "precision_router.traces.schema",
    "Step": "precision_router.traces.schema",
    "JsonlTraceStore": "precision_router.traces.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)
