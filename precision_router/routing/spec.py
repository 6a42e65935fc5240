"""Routers from short text specs, as used on the command line (``random:0.3``, ``learned:router.pt``)."""

from __future__ import annotations

from precision_router.routing.base import AlwaysHigh, AlwaysLow, RandomRouter, Router

__all__ = ["router_from_spec"]

_HELP = (
    "use 'high', 'low', 'random:<p_high>', 'learned:<checkpoint.pt>', 'learned:<checkpoint.pt>@<threshold>', "
    "'entropy@<threshold>', 'margin@<threshold>', 'probe:<probe.json>[@<threshold>]', "
    "'oracle-disagree', 'oracle-kl@<threshold>' or 'random-ladder:<rung>=<share>,...'"
)


def router_from_spec(spec: str, *, seed: int = 0) -> Router:
    """Build a router from ``spec``.

    ``high`` / ``low``: fixed; ``random:0.3``: :class:`RandomRouter` (seeded with ``seed``);
    ``learned:router.pt`` (optionally ``@0.4`` for the threshold): a trained :class:`LearnedRouter`;
    ``entropy@1.2`` / ``margin@-0.5``: an :class:`~precision_router.routing.threshold.UncertaintyRouter`;
    ``oracle-disagree`` / ``oracle-kl@0.8``: the diagnostic oracles of :mod:`precision_router.routing.oracle`;
    ``random-ladder:fp32=0.2,gptq-4bit=0.3,gptq-3bit=0.5``: a
    :class:`~precision_router.routing.ladder.RandomLadderRouter` (seeded with ``seed``).
    """
    text = spec.strip()
    if text.lower() == "oracle-disagree":
        from precision_router.routing.oracle import OracleDisagree

        return OracleDisagree()
    if text.lower().startswith("oracle-kl@"):
        from precision_router.routing.oracle import OracleKL

        return OracleKL(float(text.split("@", 1)[1]))
    for measure in ("entropy", "margin"):
        if text.lower().startswith(measure + "@"):
            from precision_router.routing.threshold import UncertaintyRouter

            return UncertaintyRouter(float(text.split("@", 1)[1]), measure)  # type: ignore[arg-type]
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "random-ladder" and arg:
        from precision_router.routing.ladder import RandomLadderRouter

        try:
            shares = {name.strip(): float(share) for name, _, share in (p.partition("=") for p in arg.split(","))}
            return RandomLadderRouter(shares, seed=seed)
        except ValueError as exc:
            msg = f"bad policy {spec!r}: {exc}; {_HELP}"
            raise ValueError(msg) from exc
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
    if kind == "probe" and arg:
        from precision_router.routing.probe import ProbeRouter

        path, _, threshold = arg.rpartition("@") if "@" in arg else (arg, "", "")
        return ProbeRouter.load(path, threshold=float(threshold) if threshold else None)
    if kind == "learned" and arg:
        from precision_router.routing.learned import LearnedRouter

        path, _, threshold = arg.rpartition("@") if "@" in arg else (arg, "", "")
        name = f"learned:{path}" + (f"@{threshold}" if threshold else "")
        return LearnedRouter.from_checkpoint(path, threshold=float(threshold) if threshold else 0.5, name=name)
    msg = f"unknown policy {spec!r}; {_HELP}"
    raise ValueError(msg)
