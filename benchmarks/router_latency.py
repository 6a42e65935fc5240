"""Router decision latency (embedding included) as a share of a low-precision step.

    python benchmarks/router_latency.py

A LearnedRouter (all-MiniLM-L6-v2 + 2-layer RouterNet) decides every step of simulated 30-step
conversations (each decision embeds the one new step; earlier ones come from the cache); so do
the routers that read the low model's own scores of the candidates (``margin@``: an
UncertaintyRouter; ``probe:``: a ProbeRouter over the low model's signals and loop features;
``aggregate:``: the TRIM-Agg-style AggregateRouter, which also summarises the conversation's past
steps) and a LearnedRouter under a per-conversation budget (BudgetRouter). A
low-precision step is SmolLM2-135M (GPTQ 3-bit, dequantized) scoring 30 commands with the prefix
cache, as in the ALFWorld agent. The encoder runs with its default ``dtype="auto"`` (bfloat16 on
CPUs with native bf16, else float32); the float32 decision time is printed for reference.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from common import ACTIONS, CANDIDATES, ROOM, machine, percentile, timed

from precision_router import LearnedRouter, RouterConfig, RouterNet, RoutingState, StepEncoder, load_precision_pair
from precision_router.models.scoring import ActionScorer
from precision_router.routing.aggregate import AggregateNet, AggregateRouter
from precision_router.routing.budget import BudgetRouter
from precision_router.routing.encoder import resolve_dtype
from precision_router.routing.probe import FEATURES, ProbeRouter
from precision_router.routing.threshold import UncertaintyRouter


def low_log_probs(t: int, n: int = len(CANDIDATES)) -> list[float]:
    """A made-up log-distribution of the low model over ``n`` candidates at step ``t``."""
    scores = [-((i * 7 + t) % n) / 3.0 for i in range(n)]
    top = max(scores)
    norm = top + math.log(sum(math.exp(v - top) for v in scores))
    return [v - norm for v in scores]


def decision_times(router: Callable[[RoutingState], object], conversations: int, steps: int) -> list[float]:
    """Seconds per decision over simulated conversations (the low model's scores in ``extras``)."""
    router(RoutingState("warm up"))
    decisions: list[float] = []
    for c in range(conversations):
        history: list[tuple[str, str]] = []
        for t in range(steps):
            extras = {"low_logprobs": low_log_probs(t)}
            state = RoutingState(f"put a clean mug in coffeemachine ({c})", tuple(history), f"c{c}", extras=extras)
            decisions += timed(lambda state=state: router(state), 1)
            action, observation = ACTIONS[t % len(ACTIONS)]
            history.append((action, f"{observation} (step {t} of conversation {c})"))
    return decisions


def learned_router(dtype: str) -> LearnedRouter:
    encoder = StepEncoder(dtype=dtype)
    return LearnedRouter(RouterNet(RouterConfig(embed_dim=encoder.dim, encoder=encoder.name)), encoder)


def other_routers() -> dict[str, Callable[[RoutingState], object]]:
    """The routers that read the low model's signals, and a budget over a learned router."""
    n = len(FEATURES)
    probe = ProbeRouter([0.5] * n, -1.0, [0.0] * n, [1.0] * n)
    return {
        "margin@-1 (UncertaintyRouter)": UncertaintyRouter(-1.0, "margin").decide,
        "probe (ProbeRouter)": probe.decide,
        "aggregate (AggregateRouter, TRIM-Agg style)": AggregateRouter(AggregateNet()).decide,
        "learned, budget 10 (BudgetRouter)": BudgetRouter(learned_router("auto"), 10).decide,
    }


def run(conversations: int = 5, steps: int = 30) -> dict[str, Any]:
    decisions = decision_times(learned_router("auto").decide, conversations, steps)
    fp32 = decision_times(learned_router("float32").decide, conversations, steps)
    others = {
        name: 1000 * statistics.median(decision_times(r, conversations, steps)) for name, r in other_routers().items()
    }

    from scoring_speed import prompts

    _, low = load_precision_pair("smollm2-135m-instruct", low="gptq-3bit")
    texts = prompts(low, 12)
    scorer = ActionScorer(low.hf_model, low.tokenizer)
    scorer.score(texts[0], CANDIDATES)
    low_steps = [timed(lambda text=text: scorer.score(text, CANDIDATES), 1)[0] for text in texts[1:]]
    low_ms = 1000 * statistics.median(low_steps)
    p50 = 1000 * statistics.median(decisions)
    return {
        "decisions": len(decisions),
        "p50_ms": p50,
        "p99_ms": 1000 * percentile(decisions, 99),
        "low_step_ms": low_ms,
        "share_p50": p50 / low_ms,
        "encoder_dtype": str(resolve_dtype("auto")).removeprefix("torch."),
        "fp32_p50_ms": 1000 * statistics.median(fp32),
        "prompt_room": len(ROOM),
        "others": others,
    }


def table(r: dict[str, Any]) -> str:
    low_ms = float(r["low_step_ms"])
    rows = [
        f"| {name}: decision p50 | {ms:.3f} ms ({100 * ms / low_ms:.2f} % of a low step) |"
        for name, ms in r["others"].items()
    ]
    return "\n".join(
        [
            f"Router decision latency over {int(r['decisions'])} decisions (embedding of the new step included)",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| encoder dtype (`StepEncoder(dtype='auto')`) | {r['encoder_dtype']} |",
            f"| decision p50 | {r['p50_ms']:.2f} ms |",
            f"| decision p99 | {r['p99_ms']:.2f} ms |",
            f"| low-precision step (SmolLM2 3-bit, 30 commands, cached prefix) p50 | {r['low_step_ms']:.0f} ms |",
            f"| decision p50 / low step | {100 * r['share_p50']:.2f} % |",
            f"| for reference: decision p50 with a float32 encoder | {r['fp32_p50_ms']:.2f} ms |",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(machine())
    print(table(run()))
