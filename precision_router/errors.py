"""Exceptions raised by precision-router.

Every error a user can act on derives from :class:`PrecisionRouterError`, and its
message says what to do about it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointMismatchError",
    "EmptyTraceSetError",
    "InvalidArgumentError",
    "MissingExtraError",
    "ModelLoadError",
    "PolicySpecError",
    "PrecisionRouterError",
    "RouteDecisionError",
    "TokenizerMismatchError",
    "TraceFileError",
    "TraceSchemaError",
    "TraceWriteError",
]


class PrecisionRouterError(Exception):
    """Base class of every error precision-router raises on purpose."""


class TokenizerMismatchError(PrecisionRouterError):
    """The high- and low-precision models do not share one tokenizer / vocabulary."""


class CheckpointMismatchError(PrecisionRouterError):
    """A router checkpoint does not match the encoder, dimension, K or format expected."""


class TraceSchemaError(PrecisionRouterError):
    """A trace file was written with a schema this version cannot read."""


class TraceWriteError(PrecisionRouterError, OSError):
    """An episode could not be written completely; nothing of it is acknowledged."""


class TraceFileError(PrecisionRouterError, OSError):
    """A trace file to read is missing, or is not a regular file."""


class RouteDecisionError(PrecisionRouterError, TypeError):
    """A router returned something other than a valid :class:`~precision_router.routing.RouteDecision`."""


class PolicySpecError(PrecisionRouterError, ValueError):
    """A policy spec (``random:0.3``, ``learned:router.pt@0.4`` ...) or a router argument is malformed."""


class InvalidArgumentError(PrecisionRouterError, ValueError):
    """A command-line or configuration argument is invalid; the message says which value to give."""


class EmptyTraceSetError(PrecisionRouterError):
    """A trace set holds nothing usable for the requested training step."""


class ModelLoadError(PrecisionRouterError):
    """A model source could not be resolved or loaded."""


class MissingExtraError(PrecisionRouterError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        msg = (
            f"{purpose} needs the '{package}' package, which is not installed. "
            f'Install it with: pip install "precision-router[{extra}]"'
        )
        super().__init__(msg)


def require(module: str, *, extra: str, purpose: str, package: str | None = None) -> object:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package or module, extra, purpose) from exc
