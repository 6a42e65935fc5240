"""Memory of reading a large trace file: peak RSS above the process baseline while counting its episodes.

    python benchmarks/trace_reading.py [--mb 500] [--keep PATH]

Writes a trace file of about ``--mb`` megabytes (30-step episodes of ~50 KB, one JSON line each),
then, in a fresh process, counts its episodes with ``JsonlTraceStore.iter_episodes`` and reports
the peak resident memory above that process's baseline (after imports, before reading). Reading
streams the file line by line, so the figure stays near one episode's size whatever the file's
size; the target is under 100 MB for a 500 MB file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COUNTER = r"""
import json, resource, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None

from precision_router.traces.store import JsonlTraceStore
store = JsonlTraceStore(sys.argv[1])
baseline = status("VmRSS")
try:  # reset the peak (VmHWM) to the current RSS, so it measures the reading only
    Path("/proc/self/clear_refs").write_text("5")
except OSError:
    pass
start = time.perf_counter()
episodes = sum(1 for _ in store.iter_episodes(missing_ok=False))
seconds = time.perf_counter() - start
peak = status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"episodes": episodes, "baseline": baseline, "peak": peak, "seconds": seconds}))
"""


def write_trace(path: Path, megabytes: float, steps: int = 30) -> int:
    """Write about ``megabytes`` MB of episodes to ``path``; returns how many."""
    from precision_router.traces.schema import Episode, Step

    text = "You are in the middle of a room. Looking quickly around you, you see a cabinet 1. " * 20
    template = Episode(
        conversation_id="bench",
        task="put a clean mug in coffeemachine",
        steps=[
            Step(index=i, observation=text, action="go to cabinet 1", route="low", p_high=0.1, candidates=["look"] * 20)
            for i in range(steps)
        ],
        success=True,
    )
    line = template.model_dump_json()
    head, _, tail = line.partition('"episode_id":"')
    tail = tail.split('"', 1)[1]
    target = int(megabytes * 1_000_000)
    written = count = 0
    with path.open("w", encoding="utf-8") as f:
        while written < target:
            record = f'{head}"episode_id":"bench-{count:09d}"{tail}\n'
            f.write(record)
            written += len(record)
            count += 1
    return count


def run(mb: float = 500, keep: Path | None = None) -> dict[str, float]:
    """Write the file, count it in a fresh process; sizes in MB."""
    with tempfile.TemporaryDirectory() as folder:
        path = keep or Path(folder) / "big.jsonl"
        start = time.perf_counter()
        written = write_trace(path, mb)
        write_seconds = time.perf_counter() - start
        out = subprocess.run([sys.executable, "-c", COUNTER, str(path)], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        size = path.stat().st_size
    if result["episodes"] != written:
        msg = f"counted {result['episodes']} episodes, wrote {written}"
        raise RuntimeError(msg)
    return {
        "file_mb": size / 1e6,
        "episodes": written,
        "baseline_mb": result["baseline"] / 1e6,
        "peak_above_baseline_mb": (result["peak"] - result["baseline"]) / 1e6,
        "read_seconds": result["seconds"],
        "write_seconds": write_seconds,
    }


def table(result: dict[str, float]) -> str:
    """A Markdown table of :func:`run`'s result."""
    return "\n".join(
        [
            "| trace file | episodes | baseline RSS | peak RSS above baseline (target < 100 MB) | read time |",
            "| --- | --- | --- | --- | --- |",
            f"| {result['file_mb']:.0f} MB | {int(result['episodes'])} | {result['baseline_mb']:.0f} MB | "
            f"{result['peak_above_baseline_mb']:.1f} MB | {result['read_seconds']:.1f} s |",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=500, help="size of the trace file to write (MB)")
    parser.add_argument("--keep", type=Path, help="write the file here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    print(table(run(args.mb, args.keep)))


if __name__ == "__main__":
    main()
