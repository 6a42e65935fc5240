"""Routers from short text specs, as used on the command line (``random:0.3``, ``learned:router.pt``).

:func:`parse_policy_spec` checks a spec without loading anything (the CLI calls it on every
policy before any model loads); :func:`router_from_spec` builds the router it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from precision_router.errors import PolicySpecError
from precision_router.routing.base import AlwaysHigh, AlwaysLow, RandomRouter, Router

__all__ = ["SCORING_KINDS", "PolicySpec", "parse_policy_spec", "router_from_spec"]

_HELP = (
    "use 'high', 'low', 'random:<p_high>', 'learned:<checkpoint.pt>', 'learned:<checkpoint.pt>@<threshold>', "
    "'entropy@<threshold>', 'margin@<threshold>', 'probe:<probe.json>[@<threshold>]', "
    "'aggregate:<router.pt>[@<threshold>]', "
    "'oracle-disagree', 'oracle-kl@<threshold>', 'random-ladder:<rung>=<share>,...' or "
    "'budget:<max_high>[tok]:<policy>'"
)

SCORING_KINDS = ("learned", "probe", "aggregate", "entropy", "margin", "oracle-kl")
"""Policies with a per-step score, hence a threshold that can be calibrated to a share."""


@dataclass(frozen=True)
class PolicySpec:
    """A parsed policy spec.

    Attributes:
        kind: ``high``, ``low``, ``random``, ``learned``, ``probe``, ``aggregate``, ``entropy``, ``margin``,
            ``oracle-disagree``, ``oracle-kl``, ``random-ladder`` or ``budget``.
        value: ``p_high`` of ``random``, the threshold (``None`` when not given), or the
            budget of ``budget`` (high steps, or high tokens when ``tokens``).
        path: the checkpoint / probe file of ``learned``, ``probe`` and ``aggregate``.
        shares: ``(rung, share)`` pairs of ``random-ladder``.
        inner: the policy a ``budget`` caps (itself parsed).
        tokens: a ``budget`` counts high tokens (``budget:4000tok:<policy>``), not high steps.
    """

    kind: str
    value: float | None = None
    path: str | None = None
    shares: tuple[tuple[str, float], ...] | None = None
    inner: PolicySpec | None = None
    tokens: bool = False


def _number(text: str, spec: str, what: str, *, unit: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"bad policy {spec!r}: {what} {text!r} is not a number; {_HELP}"
        raise PolicySpecError(msg) from None
    if not math.isfinite(value) or (unit and not 0.0 <= value <= 1.0):
        bounds = "a number in [0, 1]" if unit else "a finite number"
        msg = f"bad policy {spec!r}: {what} must be {bounds}, got {text!r}"
        raise PolicySpecError(msg)
    return value


def _path_and_threshold(arg: str, spec: str) -> tuple[str, float | None]:
    """Split ``PATH[@T]``; a path that itself contains ``@`` is taken whole when it exists."""
    if "@" not in arg or Path(arg).is_file():
        return arg, None
    path, _, threshold = arg.rpartition("@")
    if not path:
        msg = f"bad policy {spec!r}: no file before '@'; {_HELP}"
        raise PolicySpecError(msg)
    return path, _number(threshold, spec, "threshold", unit=True)


def _shares(arg: str, spec: str) -> tuple[tuple[str, float], ...]:
    """``rung=share,...`` of a ``random-ladder`` spec: shares in [0, 1] that sum to 1."""
    pairs = []
    for part in arg.split(","):
        name, sep, share = part.partition("=")
        if not sep or not name.strip():
            msg = f"bad policy {spec!r}: {part!r} is not <rung>=<share>; {_HELP}"
            raise PolicySpecError(msg)
        pairs.append((name.strip(), _number(share, spec, f"share of {name.strip()!r}", unit=True)))
    if not math.isclose(sum(p for _, p in pairs), 1.0, abs_tol=1e-9):
        msg = f"bad policy {spec!r}: the shares must sum to 1; {_HELP}"
        raise PolicySpecError(msg)
    return tuple(pairs)


def _budget(arg: str, spec: str) -> PolicySpec:
    """``<max_high>[tok]:<policy>`` of a ``budget`` spec."""
    count, sep, inner = arg.partition(":")
    if not sep or not inner.strip():
        msg = (
            f"bad policy {spec!r}: a budget is 'budget:<max_high>:<policy>' (steps) "
            f"or 'budget:<max_tokens>tok:<policy>' (tokens); {_HELP}"
        )
        raise PolicySpecError(msg)
    count = count.strip().lower()
    tokens = count.endswith("tok")
    number = count.removesuffix("tok")
    if not number.isdigit():
        msg = f"bad policy {spec!r}: the budget {count!r} is not a non-negative integer (steps, or tokens with 'tok')"
        raise PolicySpecError(msg)
    return PolicySpec("budget", float(int(number)), inner=parse_policy_spec(inner), tokens=tokens)


def _inner_text(spec: str) -> str:
    """The capped policy's text of a ``budget:<max_high>:<policy>`` spec."""
    return spec.strip().split(":", 2)[2]


def parse_policy_spec(spec: str) -> PolicySpec:
    """Parse ``spec`` without loading anything.

    Raises:
        PolicySpecError: an unknown policy, or a number that does not parse or is out of range.
    """
    if not isinstance(spec, str):
        msg = f"a policy spec is a string, got {type(spec).__name__}; {_HELP}"
        raise PolicySpecError(msg)
    text = spec.strip()
    lower = text.lower()
    if lower in ("high", "low", "oracle-disagree"):
        return PolicySpec(lower)
    for kind in ("oracle-kl", "entropy", "margin"):
        if lower.startswith(kind + "@"):
            return PolicySpec(kind, _number(text.split("@", 1)[1], spec, "threshold"))
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "budget":
        return _budget(arg, spec)
    if kind == "random" and arg:
        return PolicySpec("random", _number(arg, spec, "p_high", unit=True))
    if kind == "random-ladder" and arg:
        return PolicySpec("random-ladder", shares=_shares(arg, spec))
    if kind in ("learned", "probe", "aggregate") and arg:
        path, threshold = _path_and_threshold(arg, spec)
        return PolicySpec(kind, threshold, path)
    msg = f"unknown policy {spec!r}; {_HELP}"
    raise PolicySpecError(msg)


def router_from_spec(spec: str, *, seed: int = 0) -> Router:
    """Build a router from ``spec``.

    ``high`` / ``low``: fixed; ``random:0.3``: :class:`RandomRouter` (seeded with ``seed``);
    ``learned:router.pt`` (optionally ``@0.4`` for the threshold; a path containing ``@`` is
    taken whole when the file exists): a trained :class:`LearnedRouter`; ``probe:probe.json[@T]``:
    a :class:`~precision_router.routing.probe.ProbeRouter`; ``aggregate:router.pt[@T]``: an
    :class:`~precision_router.routing.aggregate.AggregateRouter` (TRIM-Agg style); ``entropy@1.2`` / ``margin@-0.5``: an
    :class:`~precision_router.routing.threshold.UncertaintyRouter`; ``oracle-disagree`` /
    ``oracle-kl@0.8``: the diagnostic oracles of :mod:`precision_router.routing.oracle`;
    ``random-ladder:fp32=0.2,gptq-4bit=0.3,gptq-3bit=0.5``: a
    :class:`~precision_router.routing.ladder.RandomLadderRouter` (seeded with ``seed``);
    ``budget:8:<policy>``: ``<policy>`` capped at 8 high steps per conversation
    (:class:`~precision_router.routing.budget.BudgetRouter`; ``budget:8:high`` plays the first 8
    steps high, then low); ``budget:4000tok:<policy>``: capped at 4000 high tokens per
    conversation (input + output; the step that crosses it is played, none after).

    Raises:
        PolicySpecError: the spec does not parse (see :func:`parse_policy_spec`).
    """
    parsed = parse_policy_spec(spec)
    kind, value = parsed.kind, parsed.value
    if kind == "high":
        return AlwaysHigh()
    if kind == "low":
        return AlwaysLow()
    if kind == "random":
        return RandomRouter(value, seed=seed)  # type: ignore[arg-type]
    if kind == "budget":
        from precision_router.routing.budget import BudgetRouter

        inner = router_from_spec(_inner_text(spec), seed=seed)
        if parsed.tokens:
            return BudgetRouter(inner, max_high_tokens=int(value))  # type: ignore[arg-type]
        return BudgetRouter(inner, int(value))  # type: ignore[arg-type]
    if kind == "oracle-disagree":
        from precision_router.routing.oracle import OracleDisagree

        return OracleDisagree()
    if kind == "oracle-kl":
        from precision_router.routing.oracle import OracleKL

        return OracleKL(value)  # type: ignore[arg-type]
    if kind in ("entropy", "margin"):
        from precision_router.routing.threshold import UncertaintyRouter

        return UncertaintyRouter(value, kind)  # type: ignore[arg-type]
    if kind == "random-ladder":
        from precision_router.routing.ladder import RandomLadderRouter

        return RandomLadderRouter(dict(parsed.shares or ()), seed=seed)
    if kind == "probe":
        from precision_router.routing.probe import ProbeRouter

        return ProbeRouter.load(parsed.path, threshold=value)  # type: ignore[arg-type]
    if kind == "aggregate":
        from precision_router.routing.aggregate import AggregateRouter

        name = f"aggregate:{Path(parsed.path).name}" + (f"@{value:g}" if value is not None else "")  # type: ignore[arg-type]
        return AggregateRouter.from_checkpoint(parsed.path, threshold=0.5 if value is None else value, name=name)  # type: ignore[arg-type]
    from precision_router.routing.learned import LearnedRouter

    name = f"learned:{parsed.path}" + (f"@{value:g}" if value is not None else "")
    return LearnedRouter.from_checkpoint(parsed.path, threshold=0.5 if value is None else value, name=name)  # type: ignore[arg-type]
