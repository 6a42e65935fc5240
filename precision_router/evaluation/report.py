"""The evaluation report: a table of every policy (S, c, GHC, PGR, CPT) and the success-vs-share plot."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from precision_router.evaluation.metrics import RunMetrics, ghc, ghc_se

__all__ = ["PolicyResult", "cpt", "paired_difference", "paired_table", "pgr", "plot_frontier", "report_table"]

CPT_LEVELS = (0.5, 0.8, 0.95)


@dataclass(frozen=True)
class PolicyResult:
    """One policy's metrics in an evaluation."""

    name: str
    metrics: RunMetrics
    outcomes: Mapping[str, bool] | None = None
    """Success per game (or task) id, for paired comparisons between policies on the same games."""


def pgr(success: float, success_low: float, success_high: float) -> float:
    """Performance gap recovered: ``(S - S_low) / (S_high - S_low)`` (``nan`` without a gap)."""
    gap = success_high - success_low
    return (success - success_low) / gap if gap > 0 else float("nan")


def cpt(level: float, share: float, success: float, success_low: float, success_high: float) -> float:
    """Cost (high-precision share) to reach ``level`` of the high-low gap along this policy's curve.

    The curve of a single policy runs straight from low-only ``(0, S_low)`` through the policy
    ``(c, S)`` to high-only ``(1, S_high)``; the result is the smallest share on it whose success
    is ``S_low + level * (S_high - S_low)`` (``nan`` without a gap).
    """
    gap = success_high - success_low
    if gap <= 0:
        return float("nan")
    target = success_low + level * gap
    points = sorted([(0.0, success_low), (share, success), (1.0, success_high)])
    for (c0, s0), (c1, s1) in itertools.pairwise(points):
        if s1 >= target:
            if s0 >= target:
                return c0
            return c0 + (c1 - c0) * (target - s0) / (s1 - s0)
    return 1.0


def report_table(results: Sequence[PolicyResult], low: str = "low", high: str = "high") -> str:
    """Markdown table of every policy, with GHC / PGR / CPT relative to the ``low`` and ``high`` rows."""
    by_name = {r.name: r.metrics for r in results}
    s_low = by_name[low].success if low in by_name else float("nan")
    s_high = by_name[high].success if high in by_name else float("nan")
    se_low = by_name[low].success_se if low in by_name else float("nan")
    head = "| policy | S | ± SE | c (steps) | c (tokens) | GHC | ± SE | PGR | " + " | ".join(
        f"CPT({int(x * 100)}%)" for x in CPT_LEVELS
    )
    t_high = by_name[high].seconds_per_episode if high in by_name else float("nan")
    lines = [head + " | steps/game | s/game | time vs high |", "|" + " --- |" * (11 + len(CPT_LEVELS))]
    for result in results:
        m = result.metrics
        cells = [
            result.name,
            f"{m.success:.3f}",
            f"{m.success_se:.3f}",
            f"{m.high_share:.3f}",
            f"{m.token_high_share:.3f}",
            _fmt(ghc(m.success, s_low, m.high_share) if result.name != low else float("nan")),
            _fmt(ghc_se(m.success_se, se_low, m.high_share) if result.name != low else float("nan")),
            _fmt(pgr(m.success, s_low, s_high)),
            *(_fmt(cpt(x, m.high_share, m.success, s_low, s_high)) for x in CPT_LEVELS),
            f"{m.mean_steps:.1f}",
            _fmt(m.seconds_per_episode, ".1f"),
            _fmt(m.seconds_per_episode / t_high if t_high > 0 else float("nan"), ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_difference(a: Mapping[str, bool], b: Mapping[str, bool]) -> tuple[float, float, int, int, int]:
    """``S_a - S_b`` on the games both played, its paired standard error, and the discordant counts.

    Returns ``(difference, se, games, won only by a, won only by b)``. Pairing removes the games'
    own difficulty from the noise, so this SE is usually well below the two binomial SEs combined.
    """
    games = sorted(set(a) & set(b))
    n = len(games)
    if n < 2:
        msg = f"a paired comparison needs at least 2 common games, got {n}"
        raise ValueError(msg)
    diffs = [int(a[g]) - int(b[g]) for g in games]
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return mean, math.sqrt(var / n), n, diffs.count(1), diffs.count(-1)


def paired_table(results: Sequence[PolicyResult], low: str = "low") -> str:
    """Markdown table: each routing policy against low-only and the random policy nearest in share.

    Policies without ``outcomes`` are left out; returns ``""`` when there is nothing to compare.
    """
    by_name = {r.name: r for r in results if r.outcomes is not None}
    randoms = [r for name, r in by_name.items() if name.startswith("random")]
    lines = [
        "| policy | vs | ΔS ± paired SE | games won only by the policy / only by the other |",
        "| --- | --- | --- | --- |",
    ]
    for name, result in by_name.items():
        if name.startswith("random") or name in (low, "high"):
            continue
        others = [by_name[low]] if low in by_name else []
        if randoms:
            others.append(min(randoms, key=lambda r: abs(r.metrics.high_share - result.metrics.high_share)))
        for other in others:
            diff, se, _, only_a, only_b = paired_difference(result.outcomes or {}, other.outcomes or {})
            lines.append(f"| {name} | {other.name} | {diff:+.3f} ± {se:.3f} | {only_a} / {only_b} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _fmt(value: float, spec: str = ".3f") -> str:
    return "—" if value is None or math.isnan(value) else format(value, spec)


def plot_frontier(
    results: Sequence[PolicyResult], path: str | os.PathLike[str], *, low: str = "low", high: str = "high"
) -> Path:
    """Success vs high-precision share: the random frontier as a line, every other policy as a point.

    Dotted lines from low-only to each point show GHC as a slope.
    """
    from precision_router.evaluation.plots import _pyplot, save_figure

    plt = _pyplot()
    by_name = {r.name: r.metrics for r in results}
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    frontier = sorted(
        (m.high_share, m.success) for name, m in by_name.items() if name.startswith("random") or name in (low, high)
    )
    if frontier:
        ax.plot([c for c, _ in frontier], [s for _, s in frontier], "-o", color="#888888", label="random frontier")
    origin = (by_name[low].high_share, by_name[low].success) if low in by_name else None
    for name, m in by_name.items():
        if name.startswith("random") or name in (low, high):
            continue
        ax.errorbar(m.high_share, m.success, yerr=m.success_se, fmt="o", capsize=3, label=name)
        if origin is not None:
            ax.plot([origin[0], m.high_share], [origin[1], m.success], ":", color="#BBBBBB")
    ax.set_xlabel("high-precision share c (steps)")
    ax.set_ylabel("success rate S")
    ax.set_xlim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Success vs high-precision share")
    return save_figure(fig, path)
