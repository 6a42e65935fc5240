"""Router decision latency (embedding included) as a share of a low-precision step.

    python benchmarks/router_latency.py

A LearnedRouter (all-MiniLM-L6-v2 + 2-layer RouterNet) decides every step of simulated 30-step
conversations (each decision embeds the one new step; earlier ones come from the cache); a
low-precision step is SmolLM2-135M (GPTQ 3-bit, dequantized) scoring 30 commands with the prefix
cache, as in the ALFWorld agent. The encoder runs with its default ``dtype="auto"`` (bfloat16 on
CPUs with native bf16, else float32); the float32 decision time is printed for reference.
"""

from __future__ import annotations

import statistics

from common import ACTIONS, CANDIDATES, ROOM, machine, percentile, timed

from precision_router import LearnedRouter, RouterConfig, RouterNet, RoutingState, StepEncoder, load_precision_pair
from precision_router.models.scoring import ActionScorer
from precision_router.routing.encoder import resolve_dtype


def decision_times(dtype: str, conversations: int, steps: int) -> list[float]:
    """Seconds per ``LearnedRouter.decide`` over simulated conversations, encoder in ``dtype``."""
    encoder = StepEncoder(dtype=dtype)
    router = LearnedRouter(RouterNet(RouterConfig(embed_dim=encoder.dim, encoder=encoder.name)), encoder)
    router.decide(RoutingState("warm up"))
    decisions: list[float] = []
    for c in range(conversations):
        history: list[tuple[str, str]] = []
        for t in range(steps):
            state = RoutingState(f"put a clean mug in coffeemachine ({c})", tuple(history), f"c{c}")
            decisions += timed(lambda state=state: router.decide(state), 1)
            action, observation = ACTIONS[t % len(ACTIONS)]
            history.append((action, f"{observation} (step {t} of conversation {c})"))
    return decisions


def run(conversations: int = 5, steps: int = 30) -> dict[str, float | str]:
    decisions = decision_times("auto", conversations, steps)
    fp32 = decision_times("float32", conversations, steps)

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
    }


def table(r: dict[str, float | str]) -> str:
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
        ]
    )


if __name__ == "__main__":
    print(machine())
    print(table(run()))
