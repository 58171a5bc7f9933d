# Which student and training to make hienet-v3-smooth with (issue 27, benchmarks/smooth/README.md):
# short distillations from the same finished data, one per variant, each scored against the teacher
# by benchmarks/smooth/fit_report.py (WBM-972 energies and forces, a training sample by kind).
# Version 4's training (whole-range fade, lr 4e-4) moved its student only from 18.3 to 17.2
# meV/atom off V3 on WBM in 2,016 steps and made the substitutions worse; these variants ask why.
# Each variant: one epoch (about 594 steps of 64, about 2 min of an H100), its own run folder under
# .devkeep/sweep (kept while the machine stays warm: a variant already scored is skipped, so the
# same command continues in the next call), results in $OUT/sweep-NAME.json and the log.
# Carry: .devcarry/site_core.tar.xz, .devcarry/seeds, .devcarry/hienet-v3 and .devcarry/pack (the
# finished data, no training state: hipot.distill.travel.data_only). Command:
#   bash benchmarks/device/distill_sweep.sh          (LIMIT=<timeout - 30> for a shorter call)
T0=$(date +%s)
LIMIT=${LIMIT:-570}
RECIPE=${RECIPE:-benchmarks/smooth/distill_recipe.yaml}
PACK=${PACK:-.devcarry/pack}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
source benchmarks/device/distill_env.sh || exit 1
git log --oneline 2>/dev/null | head -1; date -u
# NAME SMOOTH_FROM TRAINING-OVERRIDES (comma-separated --set values over the recipe's; "-" for none)
VARIANTS=${VARIANTS:-"
whole-v4     0.0 optim.lr=4e-4
whole-lr1e-4 0.0 optim.lr=1e-4
whole-ew10   0.0 optim.lr=1e-4,loss.energy_weight=10
fade4-lr1e-4 4.0 optim.lr=1e-4
fade3-ew10   3.0 optim.lr=1e-4,loss.energy_weight=10
"}
echo "$VARIANTS" | while read -r name from sets; do
  [ -z "$name" ] && continue
  out=.devkeep/sweep/$name
  if [ -f "$out/scored.json" ]; then cp "$out/scored.json" "$OUT/sweep-$name.json"; continue; fi
  if [ "$(left)" -lt 150 ]; then echo "$name: not started, $(left) s left"; continue; fi
  args=()
  [ "$sets" != "-" ] && for s in ${sets//,/ }; do args+=(--set "$s"); done
  echo "== $name: smooth_from $from ${args[*]}"
  timeout $(( $(left) - 40 )) python3 -m hipot distill --config "$RECIPE" --out "$out" \
    --from-pack "$PACK" --smooth-from "$from" --epochs 1 -q ${DEVICE:+--device $DEVICE} "${args[@]}" 2>&1 | grep -E "hipot|rror" | tail -6
  # test_metrics.json: written when the epoch is done (a run stopped early continues in the next call)
  [ -f "$out/train/test_metrics.json" ] || { echo "$name: unfinished (continues in the next call while warm)"; continue; }
  python3 benchmarks/smooth/fit_report.py "$out/train/model" --data "$out/data" --json "$out/scored.json" ${DEVICE:+--device $DEVICE} \
    2>&1 | grep -v "predict" | tail -2
  cp "$out/scored.json" "$OUT/sweep-$name.json"
done
echo "call took $(( $(date +%s) - T0 )) s"
