#!/usr/bin/env bash
# Screening of router variants on the real games (issue 12): each variant trained on some `train`
# games, calibrated to a 20 % high share, and played on 48 other `train` games that neither the
# routers nor the final table use. The final table (valid_seen + benchmarks/real_heldout.sh) then
# takes the two best.
#
# Games, all from the seed-0 order of the 600 `train` games (the fine-tune learned from the first
# 400's walkthroughs, so every policy here plays games whose expert solution the model has seen;
# the comparison between policies is what screening needs):
#   [0, 48)    collect-kl traces (fp32 acting, both precisions scored): KL-ST and the probe
#   [48, 96)   GRPO rollouts (the aggregate router, and the sequence router from KL-ST)
#   [96, 144)  the screening evaluation
#
# Cost on 2 cores (2 Ray workers): about 45 s a game, so 20-40 min per policy on 48 games, and
# about 15-20 min per GRPO iteration (4 tasks x a group of 4, plus the references' rollouts).
# Hence the order: the stateless variants are played first (Random@20, the incumbent, the
# acceptance list), the GRPO routers are trained and played next, then fp32 and 3-bit alone, the
# extra routers last.
#
# Resumable across sessions and machines: the trained routers, the GRPO resume states and every
# episode are kept under $KEEP (committed: benchmarks/results/real/screening/), copied back into
# $OUT when missing, and saved after every step or policy. Run it again until it prints "done".
#
#   benchmarks/real_screening.sh                # everything, in order
#   STEPS="klst eval-fixed" benchmarks/real_screening.sh
#   EXTRA="--tiny --max-steps 2" OUT=runs/smoke KEEP=runs/smoke/keep WORKERS=1 ITERATIONS=1 GRPO_GAMES=4 \
#       SCREEN_GAMES=2 benchmarks/real_screening.sh                              # a smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/real_env.sh
ITERATIONS=${ITERATIONS:-4}
GRPO_GAMES=${GRPO_GAMES:-48}
SCREEN_GAMES=${SCREEN_GAMES:-48}
WORKERS=${WORKERS:-2}
KEEP=${KEEP:-benchmarks/results/real/screening}
STEPS=${STEPS:-"klst variants eval-fixed grpo-aggregate eval-aggregate grpo-sequence eval-sequence eval-references eval-extra"}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
mkdir -p "$KEEP"

# inputs committed as episodes: the collect-kl traces and the counterfactual pilot's labelled
# episodes (train games 0-19)
[[ -s $OUT/kl-train.jsonl ]] || gunzip -c benchmarks/results/real/kl-train-episodes.jsonl.gz >"$OUT/kl-train.jsonl"
[[ -s $OUT/cf-train.jsonl ]] || gunzip -c benchmarks/results/real/cf-train-episodes.jsonl.gz >"$OUT/cf-train.jsonl"

# what earlier sessions trained and played, so a fresh machine resumes instead of retraining (a
# retrained router would get another calibrated threshold, hence another policy name)
KEPT_FILES=(klst.pt text-disagree.pt both-disagree.pt probe-disagree.json text-counterfactual.pt
    both-counterfactual.pt probe-counterfactual.json grpo-aggregate.pt grpo-aggregate.pt.state.pt
    grpo-sequence.pt grpo-sequence.pt.state.pt grpo-aggregate.jsonl grpo-sequence.jsonl screening.jsonl)
kept() {  # where $OUT/$1 is kept (episodes gzipped, as every committed episode file)
    if [[ $1 == *.jsonl ]]; then echo "$KEEP/${1%.jsonl}-episodes.jsonl.gz"; else echo "$KEEP/$1"; fi
}
for f in "${KEPT_FILES[@]}"; do
    if [[ ! -s $OUT/$f && -s $(kept "$f") ]]; then
        if [[ $f == *.jsonl ]]; then gunzip -c "$(kept "$f")" >"$OUT/$f"; else cp "$(kept "$f")" "$OUT/$f"; fi
    fi
done
keep() {  # copy these files of $OUT into $KEEP
    local f
    for f in "$@"; do
        if [[ ! -s $OUT/$f ]]; then continue; fi
        if [[ $f == *.jsonl ]]; then gzip -c "$OUT/$f" >"$(kept "$f")"; else cp "$OUT/$f" "$(kept "$f")"; fi
    done
}

game_args=(--setting real --data "$DATA" --split train --seed 0 "${EXTRA_ARGS[@]}")
grpo_args=(--skip 48 --games "$GRPO_GAMES" --group-size 4 --tasks-per-iteration 4 --iterations "$ITERATIONS")
grpo_args+=(--references low random:0.2 --workers "$WORKERS")

screen() {  # play each "policy|calibration traces" on the screening games, saving after each
    local entry policy
    for entry in "$@"; do
        policy=${entry%|*}
        echo "== screening: $policy"
        "$PR" eval "${game_args[@]}" --skip 96 --games "$SCREEN_GAMES" --policies "$policy" \
            --calibration-traces "${entry##*|}" --traces "$OUT/screening.jsonl" \
            --out "$OUT/report-screening.md" --workers "$WORKERS"
        keep screening.jsonl
    done
}

for step in $STEPS; do
    case $step in
    klst)
        echo "== KL-ST on the collect-kl traces"
        [[ -s $OUT/klst.pt ]] || "$PR" train-klst "$OUT/kl-train.jsonl" --out "$OUT/klst.pt"
        keep klst.pt
        ;;
    variants)
        # the same supervised trainer on other labels and inputs: text only (the paper's router),
        # text + the low model's signals; the probe (signals only) is trained by train-probe
        echo "== supervised variants: labels disagree / counterfactual, text only / text + signals"
        # (all episodes, won or lost, as train-probe uses them: the three see the same labelled steps)
        for labels in disagree counterfactual; do
            traces=$OUT/kl-train.jsonl
            [[ $labels == counterfactual ]] && traces=$OUT/cf-train.jsonl
            klst=("$PR" train-klst "$traces" --labels "$labels" --all-episodes)
            [[ -s $OUT/text-$labels.pt ]] || "${klst[@]}" --out "$OUT/text-$labels.pt"
            [[ -s $OUT/both-$labels.pt ]] || "${klst[@]}" --signals --out "$OUT/both-$labels.pt"
            [[ -s $OUT/probe-$labels.json ]] ||
                "$PR" train-probe "$traces" --labels "$labels" --out "$OUT/probe-$labels.json"
            keep "text-$labels.pt" "both-$labels.pt" "probe-$labels.json"
        done
        ;;
    offline)
        # every stateless variant scored offline against the disagreement oracle's steps (the 140
        # valid_seen games played by oracle-disagree: fp32's trajectory, both precisions scored)
        echo "== offline screen (ROC AUC against disagreement on fp32's trajectories)"
        routers=(--router "kl-st text=learned:$OUT/klst.pt")
        for labels in disagree counterfactual; do
            routers+=(--router "$labels text=learned:$OUT/text-$labels.pt")
            routers+=(--router "$labels text+signals=learned:$OUT/both-$labels.pt")
            routers+=(--probe "$labels signals=$OUT/probe-$labels.json")
        done
        "$PY" benchmarks/routing_signals.py "$OUT/eval.jsonl" "${routers[@]}" --out "$OUT/signals-screening.md"
        ;;
    eval-fixed)
        # Random@20, the incumbent (the uplift probe, trained on valid_seen's random episodes,
        # at the target that gave a ~0.24 share there: calibrated on low-only steps it routes more
        # than its target), then the acceptance list's stateless routers
        screen "random:0.2|$OUT/calib-low.jsonl" \
            "calibrated:probe:benchmarks/results/real/uplift-all.json:0.15|$OUT/calib-low.jsonl" \
            "calibrated:learned:$OUT/klst.pt:0.2|$OUT/calib-low.jsonl" \
            "calibrated:learned:$OUT/text-counterfactual.pt:0.2|$OUT/calib-low.jsonl" \
            "calibrated:probe:$OUT/probe-counterfactual.json:0.2|$OUT/calib-low.jsonl" \
            "calibrated:learned:$OUT/both-counterfactual.pt:0.2|$OUT/calib-low.jsonl"
        ;;
    eval-references)
        # fp32 and 3-bit alone, the references of GHC (after the routers: their ranking is what
        # screening is for)
        screen "low|$OUT/calib-low.jsonl" "high|$OUT/calib-low.jsonl"
        ;;
    grpo-aggregate | grpo-sequence)
        kind=${step#grpo-}
        if [[ $kind == aggregate ]]; then
            echo "== GRPO, TRIM-Agg-style aggregate router (fresh, reference-guided advantages)"
            init=(--lr 1e-2)
        else
            echo "== GRPO, the paper's sequence router from KL-ST (reference-guided advantages)"
            init=(--init "$OUT/klst.pt" --lr 1e-4)
        fi
        "$PR" train-grpo "${game_args[@]}" "${grpo_args[@]}" --router "$kind" "${init[@]}" \
            --out "$OUT/grpo-$kind.pt" --traces "$OUT/grpo-$kind.jsonl"
        keep "grpo-$kind.pt" "grpo-$kind.pt.state.pt" "grpo-$kind.jsonl"
        ;;
    eval-aggregate)
        # it reads its past routes, so it is calibrated on its own GRPO rollouts (played at about
        # the share it will run at)
        screen "calibrated:aggregate:$OUT/grpo-aggregate.pt:0.2|$OUT/grpo-aggregate.jsonl"
        ;;
    eval-sequence)
        screen "calibrated:learned:$OUT/grpo-sequence.pt:0.2|$OUT/calib-low.jsonl"
        ;;
    eval-extra)
        # routers already in the valid_seen table, for the screening's ranking (budget:8:high is
        # the hand rule the uplift probe amounts to: the first 8 steps on fp32)
        screen "budget:8:high|$OUT/calib-low.jsonl" \
            "calibrated:margin@0:0.2|$OUT/calib-low.jsonl" \
            "calibrated:learned:$OUT/both-disagree.pt:0.2|$OUT/calib-low.jsonl" \
            "calibrated:probe:benchmarks/results/real/probe-disagree.json:0.2|$OUT/calib-low.jsonl"
        ;;
    keep)
        # save whatever is there (e.g. a GRPO run's state before the session ends)
        keep "${KEPT_FILES[@]}"
        ;;
    *)
        echo "unknown step $step (klst, variants, offline, eval-fixed, grpo-aggregate, eval-aggregate," \
            "grpo-sequence, eval-sequence, eval-references, eval-extra, keep)" >&2
        exit 2
        ;;
    esac
done
echo "done"
