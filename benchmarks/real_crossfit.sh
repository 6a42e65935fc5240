#!/usr/bin/env bash
# A learned router from outcomes alone, cross-fitted on the real games' own random routes (issue 12).
#
# The random policies of the valid_seen table (Random@10/20/22/30, 560 episodes) are a randomised
# experiment: `train-probe --labels uplift` regresses each step's inverse-propensity-weighted
# outcome on what the router sees at the step (the history and the step index: the random
# policies did not score the low model on their high steps), learning where a high step pays.
# So that no game is played by a router that saw its outcome, the 140 games (seed-0 order) are
# split in two halves: the probe trained on the random episodes of games [70, 140) plays games
# [0, 70), and the one trained on [0, 70) plays [70, 140). Both are calibrated to a 20 % share on
# the low-only episodes' steps (no outcomes), like every thresholded router of the table. The
# rows merge into one policy over all 140 games:
#
#   python benchmarks/real_router_table.py --merge uplift=probe:uplift- --versus high low random:0.2 random:0.3
#
# SHARE=0.15 benchmarks/real_crossfit.sh calibrates to another target (the realised share is higher
# than the target: the router's high steps come first, and the games it wins end sooner than the
# low-only games it is calibrated on). Resumable (each eval skips what its trace file holds). One
# heavy job at a time, 2 Ray workers.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/real_env.sh
SHARE=${SHARE:-0.2}

# the two halves' random-policy episodes
"$PY" - "$DATA" "$OUT" <<'EOF'
import json, sys
from pathlib import Path

from precision_router_alfworld.data import find_games

data, out = sys.argv[1], Path(sys.argv[2])
order = [g.name for g in find_games(data, "valid_seen", seed=0)]
half = {name: ("first" if i < 70 else "second") for i, name in enumerate(order)}
files = {h: open(out / f"random-{h}.jsonl", "w") for h in ("first", "second")}
for line in open(out / "eval.jsonl"):
    episode = json.loads(line)
    if episode["policy"].startswith("random:"):
        files[half[episode["info"]["game"]]].write(line)
for f in files.values():
    f.close()
EOF

# trained on one half, named after the half it plays
"$PR" train-probe "$OUT/random-second.jsonl" --labels uplift --out "$OUT/uplift-first.json"
"$PR" train-probe "$OUT/random-first.jsonl" --labels uplift --out "$OUT/uplift-second.json"

common=(--setting real --data "$DATA" --calibration-traces "$OUT/calib-low.jsonl" --traces "$OUT/eval.jsonl" --workers 2)
"$PR" eval "${common[@]}" --games 70 --policies "calibrated:probe:$OUT/uplift-first.json:$SHARE" \
    --out "$OUT/report-uplift-first.md"
"$PR" eval "${common[@]}" --skip 70 --games 70 --policies "calibrated:probe:$OUT/uplift-second.json:$SHARE" \
    --out "$OUT/report-uplift-second.md"
echo "done"
