"""The one check of what a router returned, applied before any model is called."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Real
from typing import Any

from precision_router.errors import RouteDecisionError
from precision_router.routing.base import ROUTES, RouteDecision

__all__ = ["checked_decision"]


def checked_decision(decision: Any, router: Any, routes: Collection[str] = ROUTES) -> RouteDecision:
    """``decision`` if it is a valid :class:`RouteDecision`, with ``p_high`` as a ``float``.

    Valid: a ``RouteDecision`` whose ``route`` is one of ``routes`` (``"high"`` or ``"low"``, and
    the rung names of a precision ladder) and whose ``p_high`` is ``None`` or a real number that
    is not NaN (a bool is not a probability).

    Raises:
        RouteDecisionError: anything else; the message names the router and what it returned.
    """
    name = getattr(router, "name", type(router).__name__)
    if not isinstance(decision, RouteDecision):
        msg = (
            f"router {name!r} returned {decision!r} ({type(decision).__name__}); decide() must return "
            "RouteDecision(route, p_high) with route 'high' or 'low'"
        )
        raise RouteDecisionError(msg)
    if not isinstance(decision.route, str) or decision.route not in routes:
        allowed = ", ".join(repr(r) for r in dict.fromkeys((*ROUTES, *routes)))
        msg = f"router {name!r} returned route {decision.route!r}; a route is one of {allowed}"
        raise RouteDecisionError(msg)
    p_high = decision.p_high
    if p_high is None:
        return decision
    if isinstance(p_high, bool) or not isinstance(p_high, Real) or math.isnan(float(p_high)):
        msg = (
            f"router {name!r} returned p_high={p_high!r} ({type(p_high).__name__}); "
            "p_high is a number (not NaN) or None"
        )
        raise RouteDecisionError(msg)
    if type(p_high) is float:
        return decision
    return RouteDecision(decision.route, float(p_high))
