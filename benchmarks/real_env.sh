# Shared set-up of the real-game scripts (sourced from the repository root by real_screening.sh,
# real_heldout.sh and real_crossfit.sh): paths, one torch thread per Ray worker, no hub access,
# and the inputs they read from the committed episodes.
DATA=${DATA:-../shared/alfworld}
OUT=${OUT:-runs/real}
PR=${PR:-.venv/bin/precision-router}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
mkdir -p "$OUT"

# every policy's valid_seen episodes, and the low-only ones: the thresholds of the margin, probe
# and learned routers are set on their step scores (no outcomes)
[[ -s $OUT/eval.jsonl ]] || gunzip -c benchmarks/results/real/eval-episodes.jsonl.gz >"$OUT/eval.jsonl"
if [[ ! -s $OUT/calib-low.jsonl ]]; then
    python3 -c 'import json,sys; [sys.stdout.write(l) for l in sys.stdin if json.loads(l)["policy"] == "low"]' \
        <"$OUT/eval.jsonl" >"$OUT/calib-low.jsonl"
fi
