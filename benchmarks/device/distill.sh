# One device call of the hienet-v3-smooth distillation (benchmarks/smooth/README.md, recipe
# benchmarks/smooth/distill_recipe.yaml). Every call does what is left, in order, within LIMIT
# seconds (default 570 of the 600 a call may run; a call given a shorter timeout needs LIMIT at
# least 30 s below it, or the pack written at the end is cut off and nothing comes back):
#   - the runtime (ase, vesin; benchmarks/device/pack.sh site -> .devcarry/site_core.tar.xz) and the
#     teacher (the converted HIENet-V3 folder .devcarry/hienet-v3) are set up under .devkeep/ (an
#     ignored folder, kept between calls while the machine stays warm);
#   - the run folder .devkeep/distill is continued: from where the last call on this machine left
#     it, else from the travel pack carried in .devcarry/pack (a machine lost between calls);
#   - teacher data (first call), then training until the call's time is nearly spent;
#   - the travel pack (data + EMA weights + progress, <= 15 MiB a file; while the data are
#     unfinished, what their stages kept so far) is written to $OUT/pack: copy it to .devcarry/pack
#     here, and carry it (with .devcarry/hienet-v3 until pack.json has a training "state": the
#     student starts from the teacher) if the next call may land on a fresh machine.
# Carry: .devcarry/site_core.tar.xz, .devcarry/seeds (the recipe's seed and test files, laid out as
# ../shared/data/...), .devcarry/hienet-v3 (until the pack has a training state), .devcarry/pack (when any).
# Build the first three with `bash benchmarks/device/pack.sh distill` (PY312 = a Python 3.12 with pip).
# Command: bash benchmarks/device/distill.sh
T0=$(date +%s)
LIMIT=${LIMIT:-570}
PACK_S=${PACK_S:-45}          # seconds kept for writing the travel pack at the end
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
set -o pipefail
source benchmarks/device/distill_env.sh || exit 1
python3 -c "import matplotlib" 2>/dev/null || echo "no matplotlib here: the learning-curve plot will fail (the pack is still written below)"
git log --oneline 2>/dev/null | head -1; date -u
# RECIPE and EXTRA (options changing the recipe, e.g. a CPU dry run: --limit 4 --md-seeds 2 --device cpu)
R="python3 -m hipot distill --config ${RECIPE:-benchmarks/smooth/distill_recipe.yaml} --out .devkeep/distill ${EXTRA:-}"
FROM=""
[ -f .devcarry/pack/pack.json ] && FROM="--from-pack .devcarry/pack"
# data first (a no-op once made); WORKERS teacher processes share the stages. Measured on an H100,
# 2026-12-07: 8 relaxed the 5,593 substitutions in 4 min 46 s, then one of them ran out of its
# eighth of the memory in MD (a batch that does not fit is now halved); 2 ran the last 4 of the 15
# MD groups (512 runs) in 68 s and labelled at ~1,000 structures/s. A data stage cut short by the
# timeout is continued by the next call (on this warm machine, else from the pack); its teacher
# workers end with it (hipot/distill/workers.py), so they hold no GPU memory while training runs
timeout $(( $(left) - PACK_S - 20 )) $R $FROM --data-only --workers "${WORKERS:-4}" 2>&1 | tr '\r' '\n' \
  | grep -v -E "^\s*$" | awk '/%\||hipot|rror|Trace/' | tee "$OUT/data_log.txt" | tail -20
DONE=$(python3 -c "import json; print(json.load(open('.devkeep/distill/data/manifest.json')).get('parts') is not None)" 2>/dev/null)
if [ "$DONE" != "True" ]; then
  # what the data stages kept so far travels too: a machine lost now costs only the part in hand
  python3 -c "from hipot.distill.travel import pack; pack('.devkeep/distill', '$OUT/pack')" \
    && echo "the data are not finished: the next call continues them (here while warm, else from .devcarry/pack)"
else
  # the finished data come back first, whatever happens to the training (xz on every core: seconds)
  $R -q --data-only --pack-to "$OUT/pack" 2>&1 | tail -3
  echo "data packed: $(( $(date +%s) - T0 )) s"
fi
TRAINED=""
if [ "$DONE" = "True" ] && [ "$(left)" -gt 180 ]; then
  TRAINED=1
  MIN=$(python3 -c "print(($(left) - $PACK_S - 90) / 60)")   # 90 s: reading the data back, exporting
  echo "training for at most $MIN min"
  $R -q --time-limit "$MIN" --pack-to "$OUT/pack" 2>&1 | tee "$OUT/train_log.txt" | tail -25
fi
# whatever stopped the training, its last checkpoint travels (the data's tar is cached: seconds)
[ -n "$TRAINED" ] && [ -f .devkeep/distill/train/checkpoints/last.pt ] && \
  $R -q --data-only --pack-to "$OUT/pack" 2>&1 | tail -3
ls -la "$OUT/pack" 2>/dev/null
for f in test_metrics.json metrics.csv; do
  [ -f .devkeep/distill/train/$f ] && cp .devkeep/distill/train/$f "$OUT/"
done
echo "call took $(( $(date +%s) - T0 )) s"
