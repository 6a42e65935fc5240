#!/usr/bin/env bash
# The real-game final table (issue 12): each named policy on all 200 games, the 140 valid_seen
# games (episodes in $OUT/eval.jsonl) and the 60 held-out `train` games (benchmarks/real_heldout.sh,
# $OUT/heldout.jsonl). Thresholded routers are calibrated as everywhere in that table, on the 140
# low-only valid_seen episodes' step scores (no outcomes).
#
# Resumable: each eval skips the games its policy already played, so run it again until it prints
# "done". One policy at a time; both cores are used (2 Ray workers); about 40 s a game.
#
#   benchmarks/real_final.sh calibrated:probe:benchmarks/results/real/screening/probe-counterfactual.json:0.2
#
# Commit the episodes as they come (gzip -c runs/real/eval.jsonl >
# benchmarks/results/real/eval-episodes.jsonl.gz, the same for heldout), then recompute the table
# with the routers-200 command of benchmarks/results/real/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/real_env.sh
if [[ $# -eq 0 ]]; then
    echo "usage: $0 POLICY..." >&2
    exit 2
fi
for policy in "$@"; do
    echo "== $policy on the 140 valid_seen games"
    "$PR" eval --setting real --data "$DATA" --policies "$policy" --calibration-traces "$OUT/calib-low.jsonl" \
        --traces "$OUT/eval.jsonl" --out "$OUT/report-final.md" --workers 2
    gzip -c "$OUT/eval.jsonl" >benchmarks/results/real/eval-episodes.jsonl.gz
    benchmarks/real_heldout.sh "$policy"
    gzip -c "$OUT/heldout.jsonl" >benchmarks/results/real/heldout-episodes.jsonl.gz
done
echo "done"
