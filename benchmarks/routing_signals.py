"""How well does each router input find the steps where the two precisions disagree? (offline)

    python benchmarks/routing_signals.py                 # the oracle-disagree episodes of the real setting
    python benchmarks/routing_signals.py runs/kl.jsonl --policy ''   # any traces with both precisions' scores
    python benchmarks/routing_signals.py --probe kl=runs/probe-kl.json   # also a probe trained elsewhere
    python benchmarks/routing_signals.py --router klst=learned:runs/real/klst.pt   # any scored router
    python benchmarks/routing_signals.py runs/cf.jsonl --policy low --labels counterfactual   # outcome labels

Reads episodes that recorded both precisions' scores at every step (``oracle-disagree`` in
``precision-router eval``, or ``collect-kl``) and asks, step by step, whether a router's score
ranks the steps where the precisions would act differently above the others:

- labels: ``raw`` (the two precisions' most likely candidates differ) and, for oracle-disagree
  episodes, ``oracle`` (its own decision: the choices differ after the agent's penalties);
- or, with ``--labels counterfactual``, ``helps``: going high at the step (a branch of
  ``collect-counterfactual``) wins a game the base policy lost;
- scores: the low model's top-2 margin and entropy (``UncertaintyRouter``), the probe
  (``ProbeRouter``, trained on the disagreement labels of the other half of the games: 2-fold
  by game, so no step scores itself), probes trained on other games (``--probe NAME=PATH``, e.g.
  ``train-probe`` on ``collect-kl`` traces of the train split) and a coin (the random router's
  view: no information);
- figures: ROC AUC, and the share of disagreement steps caught when the top 20 % of steps by
  score go high (the random router catches 20 %).

Writes a Markdown table and a ROC plot next to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from real_router_table import RESULTS, read_episodes

from precision_router.evaluation.calibration import recorded_state
from precision_router.evaluation.plots import _pyplot, save_figure
from precision_router.routing.base import RoutingState, ScoredRouter
from precision_router.routing.probe import ProbeRouter, ProbeTrainingError, train_probe
from precision_router.routing.spec import router_from_spec
from precision_router.routing.threshold import UncertaintyRouter
from precision_router.traces.schema import Episode
from precision_router.training.counterfactual import label_of
from precision_router.training.data import episode_states

logger = logging.getLogger(__name__)


def argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def labelled_steps(
    episodes: Sequence[Episode], by: str = "disagree"
) -> list[tuple[str, RoutingState, int, int | None]]:
    """``(game, state, raw label, oracle label)`` of every step with both precisions' scores.

    ``by="counterfactual"``: instead, every step with a counterfactual label
    (``collect-counterfactual``), the raw label being "going high here wins a lost game".
    """
    rows = []
    for episode in episodes:
        game = str(episode.info.get("game", episode.task))
        for record, step in zip(episode_states(episode), episode.steps, strict=True):
            if by == "counterfactual":
                helped = label_of(step.info)
                if helped is not None:
                    rows.append((game, recorded_state(step, record.state), helped, None))
                continue
            if not step.logprobs or "high" not in step.logprobs or "low" not in step.logprobs:
                continue
            raw = int(argmax(step.logprobs["high"]) != argmax(step.logprobs["low"]))
            oracle = int(step.route == "high") if episode.policy == "oracle-disagree" else None
            rows.append((game, recorded_state(step, record.state), raw, oracle))
    return rows


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC by ranks (ties count half)."""
    pairs = sorted(zip(scores, labels, strict=True))
    ranks = [0.0] * len(pairs)
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        for k in range(i, j):
            ranks[k] = (i + j + 1) / 2
        i = j
    positives = sum(label for _, label in pairs)
    negatives = len(pairs) - positives
    if not positives or not negatives:
        return float("nan")
    rank_sum = sum(r for r, (_, label) in zip(ranks, pairs, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def caught_at(scores: Sequence[float], labels: Sequence[int], share: float) -> float:
    """Share of the positive steps among the top ``share`` of steps by score."""
    k = max(1, round(share * len(scores)))
    top = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
    positives = sum(labels)
    return sum(labels[i] for i in top) / positives if positives else float("nan")


def two_fold_probe(rows: list[tuple[str, RoutingState, int, int | None]], label: int) -> list[float] | None:
    """Each step's probe score from a probe trained on the other half of the games.

    ``None`` when a half holds one class only (too few positive steps to train on).
    """
    games = sorted({g for g, *_ in rows})
    fold = {g: i % 2 for i, g in enumerate(random.Random(0).sample(games, len(games)))}
    scores = [0.0] * len(rows)
    for held_out in (0, 1):
        train = [(r[1], r[2 + label]) for r in rows if fold[r[0]] != held_out]
        try:
            probe = train_probe([s for s, _ in train], [int(y or 0) for _, y in train])
        except ProbeTrainingError as error:
            logger.warning("no 2-fold probe: %s", error)
            return None
        for i, r in enumerate(rows):
            if fold[r[0]] == held_out:
                scores[i] = probe.score(r[1])
    return scores


def roc(scores: Sequence[float], labels: Sequence[int]) -> tuple[list[float], list[float]]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    positives, negatives = sum(labels), len(labels) - sum(labels)
    tp = fp = 0
    xs, ys = [0.0], [0.0]
    for i in order:
        tp += labels[i]
        fp += 1 - labels[i]
        xs.append(fp / negatives)
        ys.append(tp / positives)
    return xs, ys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path, default=[RESULTS / "eval-episodes.jsonl.gz"])
    parser.add_argument("--policy", default="oracle-disagree", help="only this policy's episodes ('' for all)")
    parser.add_argument(
        "--labels",
        choices=["disagree", "counterfactual"],
        default="disagree",
        help="what a positive step is: the precisions disagree, or going high there wins a lost game",
    )
    parser.add_argument("--share", type=float, default=0.2, help="share of steps sent high for the 'caught' column")
    parser.add_argument("--out", type=Path, default=RESULTS / "signals.md")
    parser.add_argument(
        "--probe", action="append", default=[], metavar="NAME=PATH", help="also score with this trained probe"
    )
    parser.add_argument(
        "--router",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="also score with this scored router (a policy spec, e.g. learned:runs/klst.pt)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    episodes = [e for p in args.traces for e in read_episodes(p) if not args.policy or e.policy == args.policy]
    rows = labelled_steps(episodes, args.labels)
    if not rows:
        wanted = "a counterfactual label" if args.labels == "counterfactual" else "both precisions' scores"
        parser.error(f"no step with {wanted} in {len(episodes)} episodes of {args.policy!r}")
    margin, entropy = UncertaintyRouter(0.0, "margin"), UncertaintyRouter(0.0, "entropy")
    coin = random.Random(1)
    scorers: dict[str, Callable[[int], list[float] | None]] = {
        "low model's margin (UncertaintyRouter)": lambda _: [margin.score(r[1]) or 0.0 for r in rows],
        "low model's entropy (UncertaintyRouter)": lambda _: [entropy.score(r[1]) or 0.0 for r in rows],
        "probe, 2-fold by game (ProbeRouter)": lambda label: two_fold_probe(rows, label),
    }
    for spec in args.probe:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--probe takes NAME=PATH, got {spec!r}")
        probe = ProbeRouter.load(path)
        scorers[f"probe {name} ({Path(path).name})"] = lambda _, probe=probe: [probe.score(r[1]) for r in rows]
    for spec in args.router:
        name, sep, policy = spec.partition("=")
        if not sep or not name or not policy:
            parser.error(f"--router takes NAME=SPEC, got {spec!r}")
        router = router_from_spec(policy)
        if not isinstance(router, ScoredRouter) or hasattr(router, "episode_scores"):
            parser.error(f"--router {policy!r}: give a router that scores each step alone (learned:, probe:, margin@)")
        scorers[f"{name} ({policy})"] = lambda _, router=router: [float(router.score(r[1]) or 0.0) for r in rows]
    scorers["coin (RandomRouter)"] = lambda _: [coin.random() for _ in rows]
    if args.labels == "counterfactual":
        label_names = ["helps"]
    else:
        label_names = ["raw", "oracle"] if all(r[3] is not None for r in rows) else ["raw"]
    games = len({r[0] for r in rows})
    against = "going high winning a lost game" if args.labels == "counterfactual" else "disagreement"
    lines = [
        f"# Routing signals against {against}: {len(rows)} steps of {len(episodes)} episodes ({games} games)",
        "",
        "Recomputed by `python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) + "`.",
        "",
        *(f"- label `{n}`: {sum(r[2 + i] or 0 for r in rows)} positive steps" for i, n in enumerate(label_names)),
        "",
        f"| score | label | ROC AUC | positive steps caught by the top {args.share:.0%} of steps |",
        "| --- | --- | --- | --- |",
    ]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(label_names), figsize=(5.2 * len(label_names), 4.4), squeeze=False)
    for i, label_name in enumerate(label_names):
        labels = [int(r[2 + i] or 0) for r in rows]
        ax = axes[0][i]
        for name, scorer in scorers.items():
            scores = scorer(i)
            if scores is None:
                lines.append(f"| {name} | {label_name} | n/a | n/a |")
                continue
            lines.append(
                f"| {name} | {label_name} | {auc(scores, labels):.3f} | {caught_at(scores, labels, args.share):.1%} |"
            )
            ax.plot(*roc(scores, labels), label=name.split(" (")[0])
        ax.plot([0, 1], [0, 1], ":", color="#999999")
        ax.set_title(f"label: {label_name}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    plot = save_figure(fig, args.out.with_suffix(".png"))
    lines += ["", f"![ROC curves]({plot.name})"]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
