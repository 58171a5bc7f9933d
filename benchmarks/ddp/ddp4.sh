set -x
T0=$(date +%s)
mkdir -p /tmp/site && tar xJf .devcarry_ddp/coresite.tar.xz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader; nvidia-smi topo -m | head -8; git log --oneline | head -1; date -u
args() { echo "--train .devcarry_ddp/train.extxyz --epochs 3 --batch-size 16 --device cuda -q --set run.backend=torch --set run.checkpoint_every=0"; }
timeout 150 python3 -m hipot train $(args) --out /tmp/r1 2>&1 | tail -3
for n in 2 4; do timeout 120 torchrun --nproc-per-node $n -m hipot train $(args) --out /tmp/r$n 2>&1 | tail -3; done
for r in r1 r2 r4; do echo "== $r"; cut -d, -f1-6 /tmp/$r/metrics.csv; cp /tmp/$r/metrics.csv $OUT/metrics_$r.csv; done
echo "elapsed $(( $(date +%s) - T0 )) s"
