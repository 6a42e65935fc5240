"""Which steps decide a game? What one high-precision step is worth, by step position.

    python benchmarks/step_uplift.py                       # the real setting's random policies
    python benchmarks/step_uplift.py runs/eval.jsonl --buckets 0 3 6 10 20 50 --out runs/uplift.md

Reads the episodes of ``random:<p>`` policies (a randomised experiment: every route drawn
independently) and estimates, per bucket of step positions, the success with that step high
minus with it low (:func:`precision_router.evaluation.step_uplift`: within-policy differences
pooled by inverse variance, standard errors bootstrapped over games). Writes a Markdown table
and a bar plot next to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from real_router_table import RESULTS, read_episodes

from precision_router.evaluation import step_uplift
from precision_router.evaluation.plots import _pyplot, save_figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="*", help="trace files (default: the real setting's committed episodes)")
    parser.add_argument("--buckets", nargs="+", type=int, default=[0, 2, 5, 10, 20, 50], help="bucket edges")
    parser.add_argument("--bootstrap", type=int, default=500, help="resamples of the games for the SE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "step-uplift.md"))
    args = parser.parse_args(argv)

    traces = args.traces or [str(RESULTS / "eval-episodes.jsonl.gz")]
    episodes = [e for path in traces for e in read_episodes(Path(path))]
    rows = step_uplift(episodes, args.buckets, bootstrap=args.bootstrap, seed=args.seed)
    policies = sorted({e.policy for e in episodes if e.policy.startswith("random:")})
    n_episodes = sum(e.policy in policies for e in episodes)
    games = len({e.info.get("game") for e in episodes if e.policy in policies})
    command = " ".join(["python benchmarks/step_uplift.py", *args.traces, "--buckets", *map(str, args.buckets)])
    lines = [
        f"# What one high step is worth, by step position: {n_episodes} episodes of {', '.join(policies)} "
        f"on {games} games",
        "",
        f"`{command}`",
        "",
        "| steps | success with the step high minus low (points) | ± SE (bootstrap, games) | steps | high |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        effect = "—" if row.effect is None else f"{100 * row.effect:+.1f}"
        lines.append(f"| {row.start}-{row.stop - 1} | {effect} | {100 * row.se:.1f} | {row.steps} | {row.high} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + f"\n\n![effect by step position]({out.with_suffix('.png').name})\n")

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    shown = [r for r in rows if r.effect is not None]
    ax.bar(
        [f"{r.start}-{r.stop - 1}" for r in shown],
        [100 * r.effect for r in shown if r.effect is not None],
        yerr=[100 * r.se for r in shown],
        capsize=4,
        color="tab:blue",
    )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("step position")
    ax.set_ylabel("points of success per high step (± 1 SE)")
    ax.set_title("What one high-precision step is worth, by position (random routing)")
    save_figure(fig, out.with_suffix(".png"))
    print("\n".join(lines))
    print(f"table: {out}; plot: {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
