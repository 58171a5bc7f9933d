set -x
T0=$(date +%s)
mkdir -p /tmp/site /tmp/pp && tar xJf .devcarry_b/minsite.tar.xz -C /tmp/site && tar xJf .devcarry_b/peersite2.tar.xz -C /tmp/pp
xz -T4 -dc .devcarry_b/v3_slim.pth.xz > /tmp/v3.pth
export PYTHONPATH=/tmp/site:/tmp/pp/site:$PWD PYTHONUNBUFFERED=1 HIPOT_CACHE=/tmp/hcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; git log --oneline | head -1; date -u
timeout ${BENCH_S:-450} python3 -m hipot bench --official /tmp/pp/official --checkpoint /tmp/v3.pth \
  --sizes 64 512 4096 32768 --official-max 4096 --torch-max 4096 --backends cueq+graphs \
  --peers sevennet+cueq mace mace+cueq --mace-pythonpath /tmp/pp/site/_e3nn044 --batch 256 --repeats 5 \
  --json $OUT/speed.json --plot $OUT/speed.png 2>&1 | grep -v -i warn | tee $OUT/speed_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
timeout $(( 570 - $(date +%s) + T0 )) python3 -m hipot bench --checkpoint /tmp/v3.pth --kinds Si --sizes 64 --backends cueq+graphs \
  --find-max Si --batch 0 --repeats 1 --json $OUT/findmax.json 2>&1 | grep -v -i warn | tee $OUT/findmax_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
