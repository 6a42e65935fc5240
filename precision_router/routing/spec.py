"""Routers from short text specs, as used on the command line (``random:0.3``, ``learned:router.pt``)."""

from __future__ import annotations

from precision_router.routing.base import AlwaysHigh, AlwaysLow, RandomRouter, Router

__all__ = ["router_from_spec"]

_HELP = "use 'high', 'low', 'random:<p_high>', 'learned:<checkpoint.pt>' or 'learned:<checkpoint.pt>@<threshold>'"


def router_from_spec(spec: str, *, seed: int = 0) -> Router:
    """Build a router from ``spec``.

    ``high`` / ``low``: fixed; ``random:0.3``: :class:`RandomRouter` (seeded with ``seed``);
    ``learned:router.pt`` (optionally ``@0.4`` for the threshold): a trained :class:`LearnedRouter`.
    """
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "high" and not arg:
        return AlwaysHigh()
    if kind == "low" and not arg:
        return AlwaysLow()
    if kind == "random":
        try:
            return RandomRouter(float(arg), seed=seed)
        except ValueError as exc:
            msg = f"bad policy {spec!r}: {exc}; {_HELP}"
            raise ValueError(msg) from exc
    if kind == "learned" and arg:
        from precision_router.routing.learned import LearnedRouter

        path, _, threshold = arg.rpartition("@") if "@" in arg else (arg, "", "")
        router = LearnedRouter.from_checkpoint(path, threshold=float(threshold) if threshold else 0.5)
        router.name = f"learned:{path}" + (f"@{threshold}" if threshold else "")
        return router
    msg = f"unknown policy {spec!r}; {_HELP}"
    raise ValueError(msg)
