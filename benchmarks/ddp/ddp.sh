set -x
mkdir -p /tmp/site && tar xJf .devcarry_ddp/coresite.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
args() { echo "--train .devcarry_ddp/train.extxyz --epochs 3 --batch-size 16 --device cuda -q --set run.backend=$1 --set run.checkpoint_every=0"; }
B=${TB:-cueq}
if ! timeout 200 python3 -m hipot train $(args $B) --out /tmp/r1 > /tmp/r1.log 2>&1; then
  tail -15 /tmp/r1.log; B=torch; rm -rf /tmp/r1
  timeout 200 python3 -m hipot train $(args $B) --max-steps 200 --out /tmp/r1 2>&1 | tail -5
fi
tail -4 /tmp/r1.log
timeout 150 torchrun --nproc-per-node 2 -m hipot train $(args $B) --out /tmp/r2 2>&1 | tail -6
for r in r1 r2; do echo "== $r"; cut -d, -f1-5 /tmp/$r/metrics.csv; cp /tmp/$r/metrics.csv $OUT/metrics_$r.csv; done
