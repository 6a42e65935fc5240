#!/usr/bin/env bash
# The real-game final table's second half: every policy of the valid_seen table, played on the
# `train` games the fine-tuned model never saw (the fine-tune took the first 400 of the seed-0
# order; these are the next GAMES of that order, default 60, so that valid_seen's 140 + 60 = 200).
#
# Resumable: each eval skips the games its policy already played in the trace file, so run it
# again (in the next session, on a fresh machine after `make install`) until it prints "done".
# One policy at a time, in the order of the list; both cores are used (2 Ray workers).
#
#   GAMES=60 benchmarks/real_heldout.sh            # all policies, in order
#   benchmarks/real_heldout.sh high low            # only these
#
# Episodes: runs/real/heldout.jsonl (commit it gzipped as
# benchmarks/results/real/heldout-episodes.jsonl.gz); table over both sets:
#   python benchmarks/real_router_table.py runs/real/eval.jsonl runs/real/heldout.jsonl --versus ...
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/real_env.sh
GAMES=${GAMES:-60}
TRACES=${TRACES:-$OUT/heldout.jsonl}
# the thresholded routers are calibrated exactly as on valid_seen (on the 140 low-only valid_seen
# episodes' step scores, no outcomes), so they are the same routers
CALIBRATION=${CALIBRATION:-$OUT/calib-low.jsonl}

POLICIES=("$@")
if [[ ${#POLICIES[@]} -eq 0 ]]; then
    # the uplift probe here is trained on all 560 random-policy episodes of valid_seen (none of
    # these games), calibrated like its cross-fitted valid_seen runs
    POLICIES=(
        calibrated:probe:benchmarks/results/real/uplift-all.json:0.15
        random:0.2
        random:0.3
        high
        low
        calibrated:margin@0:0.2
        calibrated:probe:benchmarks/results/real/probe-disagree.json:0.2
        random:0.1
        # the uplift probe's share over the 200 games is 0.240: its equal-share random counterpart
        random:0.24
        oracle-disagree
        oracle-kl@3
        # the hand rule the uplift probe amounts to: the first 8 steps on fp32
        budget:8:high
    )
fi

mkdir -p "$(dirname "$TRACES")"
# what earlier sessions played (committed), so a fresh machine resumes instead of replaying
if [[ ! -s $TRACES && -s benchmarks/results/real/heldout-episodes.jsonl.gz ]]; then
    gunzip -c benchmarks/results/real/heldout-episodes.jsonl.gz >"$TRACES"
fi
for policy in "${POLICIES[@]}"; do
    echo "== $policy on $GAMES held-out train games"
    "$PR" eval --setting real --data "$DATA" --split train --skip 400 --games "$GAMES" \
        --policies "$policy" --calibration-traces "$CALIBRATION" \
        --traces "$TRACES" --out "$OUT/report-heldout.md" --workers 2
done
echo "done"
