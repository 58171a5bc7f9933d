T0=$(date +%s)
mkdir -p /tmp/site /tmp/pp && tar xJf .devcarry_b/minsite.tar.xz -C /tmp/site && tar xJf .devcarry_b/peersite2.tar.xz -C /tmp/pp
xz -T4 -dc .devcarry_b/v3_slim.pth.xz > /tmp/v3.pth
export PYTHONPATH=/tmp/site:/tmp/pp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; date -u
timeout 500 python3 -m hipot bench --official /tmp/pp/official --checkpoint /tmp/v3.pth --sizes 4096 --kinds Si MgO \
  --official-max 4096 --backends cueq+graphs --batch 0 --repeats 5 --json $OUT/speed_h200_4096.json 2>&1 | grep -v -i warn | grep -E "^\||^#" | tee $OUT/speed_h200_4096_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
