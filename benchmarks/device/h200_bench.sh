# Device call 1 (issue 18, run 1): hipot bench as in RESULTS §2 on one H200.
# carry: .devcarry/v3.pth.xz .devcarry/site.tar.xz .devcarry/peers.tar.xz
T0=$(date +%s)
. benchmarks/device/unpack.sh
# the pruned cuEquivariance kernels load and agree with the torch kernels (a quick check first)
timeout 120 python3 -m hipot bench --checkpoint /tmp/v3.pth --kinds Si MgO --sizes 64 --backends torch cueq \
  --batch 0 --repeats 1 2>&1 | grep -v -i warn | grep -E "^\||^#|rror" | tee $OUT/check_log.txt
# if the sm_90-pruned cuEquivariance kernels do not load, measure hipot's own kernels instead
BK=cueq+graphs PEERS="sevennet+cueq mace mace+cueq"
grep -q -i "error" $OUT/check_log.txt && { BK=torch+graphs PEERS="sevennet mace"; echo "cueq failed: $BK"; }
timeout $(( 470 - $(date +%s) + T0 )) python3 -m hipot bench --official /tmp/pp/official --checkpoint /tmp/v3.pth \
  --sizes 64 512 4096 32768 --official-max 4096 --torch-max 4096 --backends $BK \
  --peers $PEERS --mace-pythonpath /tmp/pp/site/_e3nn044 --batch 256 --repeats 5 \
  --json $OUT/speed.json --plot $OUT/speed.png 2>&1 | grep -v -i warn | tee $OUT/speed_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
timeout $(( 585 - $(date +%s) + T0 )) python3 -m hipot bench --checkpoint /tmp/v3.pth --kinds Si --sizes 64 \
  --backends $BK --find-max Si --batch 0 --repeats 1 --json $OUT/findmax.json 2>&1 | grep -v -i warn \
  | tee $OUT/findmax_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
