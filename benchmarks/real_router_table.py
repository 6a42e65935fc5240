"""The router table of the real-game setting, recomputed from the committed episodes.

    python benchmarks/real_router_table.py                       # benchmarks/results/real/eval-episodes.jsonl.gz
    python benchmarks/real_router_table.py runs/real/eval.jsonl --out runs/real/routers.md

Reads the evaluation episodes (JSONL, gzip allowed) that ``precision-router eval --setting real``
wrote, groups them by policy, and writes the evaluation table (S ± SE, c, GHC, PGR, CPT), the
paired comparisons (each routing policy against low-only, the random policy nearest in share and
high-only), the success-vs-share plot and, with ``--positions 0 5 10 20``, where each policy spends
its high steps (its high share by step index). Policies whose runs were split over game shards with a
different router per shard (cross-fitted probes: ``--merge NAME=PREFIX[,PREFIX...]``) are merged into one row,
so every row covers the same games. Policies that have not played every game yet are left out
(``--partial``: kept, and every policy compared on the games all of them played).
"""

from __future__ import annotations

import argparse
import gzip
import logging
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

from precision_router.evaluation.metrics import summarize
from precision_router.evaluation.report import (
    PolicyResult,
    paired_difference,
    paired_table,
    plot_frontier,
    report_table,
)
from precision_router.traces.schema import Episode

logger = logging.getLogger(__name__)
PAIRED = "Paired comparisons on the same games (S difference, its paired standard error):"
RESULTS = Path(__file__).resolve().parent / "results" / "real"


def read_episodes(path: Path) -> Iterator[Episode]:
    """Episodes of a JSONL trace file, gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield Episode.model_validate_json(line)


def policy_name(episode: Episode, merge: dict[str, str], runs: dict[str, str] | None = None) -> str:
    run = str(episode.info.get("run", ""))
    for prefix, name in (runs or {}).items():
        if run.startswith(prefix):
            return name
    for name, prefixes in merge.items():
        if episode.policy and episode.policy.startswith(tuple(prefixes.split(","))):
            return name
    return episode.policy or "?"


def collect(
    paths: list[Path],
    merge: dict[str, str],
    *,
    partial: bool = False,
    only: list[str] | None = None,
    runs: dict[str, str] | None = None,
) -> dict[str, dict[str, Episode]]:
    """Each row's episodes by game, on the games every row played (rows in table order)."""
    by_policy: dict[str, dict[str, Episode]] = defaultdict(dict)
    for path in paths:
        for episode in read_episodes(path):
            name = policy_name(episode, merge, runs)
            if only and not any(name.startswith(prefix) for prefix in only):
                continue
            by_policy[name][str(episode.info.get("game", episode.task))] = episode
    most = max((len(g) for g in by_policy.values()), default=0)
    for name in [n for n, g in by_policy.items() if len(g) < most and not partial]:
        logger.warning("%s has played %d of %d games so far: left out", name, len(by_policy[name]), most)
        del by_policy[name]
    common = set.intersection(*(set(g) for g in by_policy.values())) if by_policy else set()
    order = sorted(by_policy, key=lambda n: (n != "high", n != "low", not n.startswith("random"), n))
    return {name: {g: by_policy[name][g] for g in sorted(common)} for name in order}


def results_of(rows: dict[str, dict[str, Episode]]) -> list[PolicyResult]:
    """One table row (summary and per-game outcomes) per policy."""
    return [
        PolicyResult(name, summarize(list(games.values())), {g: bool(e.success) for g, e in games.items()})
        for name, games in rows.items()
    ]


def positions(rows: dict[str, dict[str, Episode]], edges: list[int]) -> str:
    """Where each policy spends its high steps: the high share of the steps at each step-index range.

    ``edges`` [0, 5, 10] gives the ranges 0-4, 5-9 and 10 on; each cell is the share of the steps
    played at those indices that went high, and how many steps that is (the games that end early
    leave fewer late steps).
    """
    if not edges or edges != sorted(set(edges)) or edges[0] < 0:
        raise ValueError(f"step-index edges must be increasing and non-negative, got {edges}")
    bounds: list[tuple[int, int | None]] = [*pairwise(edges), (edges[-1], None)]
    labels = [f"steps {lo}-{hi - 1}" if hi is not None else f"steps {lo}+" for lo, hi in bounds]
    lines = ["| policy | " + " | ".join(labels) + " |", "| --- |" + " --- |" * len(labels)]
    for name, games in rows.items():
        cells = []
        for lo, hi in bounds:
            routes = [
                s.route == "high"
                for e in games.values()
                for s in e.steps
                if s.index >= lo and (hi is None or s.index < hi)
            ]
            cells.append(f"{sum(routes) / len(routes):.2f} ({len(routes)})" if routes else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus(results: list[PolicyResult], reference: str) -> str:
    """Every other policy against ``reference`` on the same games (paired)."""
    by_name = {r.name: r for r in results}
    if reference not in by_name:
        return ""
    lines = [
        f"| policy | ΔS vs {reference} ± paired SE | won only by the policy / only by {reference} |",
        "| --- | --- | --- |",
    ]
    for r in results:
        if r.name == reference:
            continue
        diff, se, _, a, b = paired_difference(r.outcomes or {}, by_name[reference].outcomes or {})
        lines.append(f"| {r.name} | {diff:+.3f} ± {se:.3f} | {a} / {b} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path, default=[RESULTS / "eval-episodes.jsonl.gz"])
    parser.add_argument("--out", type=Path, default=RESULTS / "routers.md")
    parser.add_argument(
        "--merge",
        nargs="*",
        default=[],
        help="NAME=PREFIX[,PREFIX...]: policies whose name starts with one of the prefixes form one row NAME",
    )
    parser.add_argument(
        "--run-name",
        nargs="*",
        default=[],
        help="RUN_PREFIX=NAME: episodes whose info.run starts with RUN_PREFIX form row NAME (e.g. one policy "
        "played with two low models)",
    )
    parser.add_argument("--title", default="Routers on the real games", help="the table's title")
    parser.add_argument(
        "--partial", action="store_true", help="keep policies that played fewer games: compare on the games all played"
    )
    parser.add_argument("--only", nargs="*", help="only the policies whose names start with these")
    parser.add_argument(
        "--games-label",
        default="valid_seen games",
        help="what the games are, for the title (e.g. 'held-out train games (train[96:144], seed-0 order)')",
    )
    parser.add_argument(
        "--versus",
        nargs="*",
        default=["high", "low"],
        help="every policy is also compared with each of these (paired, on the same games)",
    )
    parser.add_argument(
        "--positions",
        nargs="+",
        type=int,
        metavar="EDGE",
        help="also tabulate each policy's high share by step index, in ranges starting at these edges (e.g. 0 5 10 20)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    merge = dict(item.split("=", 1) for item in args.merge)
    runs = dict(item.split("=", 1) for item in args.run_name)
    rows = collect(args.traces, merge, partial=args.partial, only=args.only, runs=runs)
    results = results_of(rows)
    games = len(results[0].outcomes or {}) if results else 0
    plot = plot_frontier(results, args.out.with_suffix(".png"))
    paired = paired_table(results)
    sections = [
        f"# {args.title}: {games} {args.games_label} played by every policy (seed 0)",
        report_table(results),
        *([PAIRED, paired] if paired else []),
        "Against " + ", ".join(args.versus) + ":",
        *[table for table in (versus(results, name) for name in args.versus) if table],
        *(
            [
                "Where the high steps go: each policy's high share (and step count) by step index:",
                positions(rows, args.positions),
            ]
            if args.positions
            else []
        ),
        f"![success vs share]({plot.name})",
    ]
    text = "\n\n".join(sections)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
