"""`make bench`: every benchmark, written to benchmarks/results/bench-<date>.md (and latest.md).

    python benchmarks/run_all.py [--skip-eval]

1. candidate scoring speed (naive / packed / packed with prefix cache);
2. router decision latency as a share of a low-precision step;
3. memory of reading a large trace file (peak RSS above baseline while counting a 500 MB file's episodes);
4. per-step time of each GGUF rung on llama.cpp, and of routed policies' episodes over a q8_0/q3_k_m
   pair (when llama-cpp-python is installed);
5. rollout throughput: games per hour in-process and on 1 and 2 Ray workers (when Ray is installed);
6. the evaluation table on a fixed list of ALFWorld games (the policies of the evaluation harness,
   played in one process per CPU core),
   unless --skip-eval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import router_latency  # noqa: E402
import scoring_speed  # noqa: E402
import trace_reading  # noqa: E402
from common import machine  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-eval", action="store_true", help="only the speed benchmarks")
    parser.add_argument("--trace-mb", type=float, default=500, help="size of the trace-reading benchmark's file")
    parser.add_argument("--rollout-games", type=int, default=16, help="games per configuration of the throughput run")
    args = parser.parse_args(argv)
    sections = [f"# Benchmarks, {dt.datetime.now():%Y-%m-%d %H:%M}", "", f"Machine: {machine()}", ""]
    print("scoring speed ...", flush=True)
    sections += ["## Candidate scoring", "", scoring_speed.table(scoring_speed.run()), ""]
    print("router latency ...", flush=True)
    sections += ["## Router overhead", "", router_latency.table(router_latency.run()), ""]
    print("trace reading memory ...", flush=True)
    sections += ["## Reading a large trace file", "", trace_reading.table(trace_reading.run(args.trace_mb)), ""]
    if importlib.util.find_spec("llama_cpp") is not None:
        import llamacpp_speed

        print("llama.cpp rungs ...", flush=True)
        sections += ["## GGUF rungs on llama.cpp", "", llamacpp_speed.table(llamacpp_speed.run()), ""]
        sections += [llamacpp_speed.routed_table(llamacpp_speed.routed()), ""]
    if importlib.util.find_spec("ray") is not None:
        import rollout_throughput

        print("rollout throughput (in-process, 1 and 2 Ray workers) ...", flush=True)
        rows = rollout_throughput.run(args.rollout_games)
        sections += ["## Rollout throughput (benchmark setting)", "", rollout_throughput.table(rows), ""]
    if not args.skip_eval:
        import eval_fixed

        print("evaluation on the fixed game list ...", flush=True)
        sections += ["## Evaluation on the fixed game list", "", eval_fixed.run(), ""]
    text = "\n".join(sections)
    print(text)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"bench-{dt.datetime.now():%Y%m%d-%H%M}.md"
    out.write_text(text + "\n")
    (out_dir / "latest.md").write_text(text + "\n")
    print(f"written to {out}")
    return out


if __name__ == "__main__":
    main()
