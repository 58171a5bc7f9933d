# Device call for what issue 18 left (one H200): the 64/512-atom end-to-end bench after the host-side
# graph path, and LAMMPS on the GPU after the exchange rewrite (Si and MgO, 4,096 and 32,768 atoms,
# against hipot md and the model alone).
# carry: .devcarry/v3.pth.xz .devcarry/site.tar.xz .devcarry/peers.tar.xz .devcarry/lammps.tar.xz (59.8 MB)
T0=$(date +%s)
. benchmarks/device/unpack.sh
timeout 150 python3 -m hipot bench --official /tmp/pp/official --checkpoint /tmp/v3.pth --sizes 64 512 \
  --backends cueq+graphs --batch 256 --repeats 5 --json $OUT/speed_small.json 2>&1 | grep -v -i warn \
  | tee $OUT/speed_small_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
python3 -m hipot.lammps 2>&1 | tail -3   # builds the plugin (once)
timeout $(( 585 - $(date +%s) + T0 )) python3 benchmarks/lammps/gpu.py --kinds Si MgO --atoms 4096 32768 --steps 100 \
  --ase-steps 20 --json $OUT/lammps_gpu.json 2>&1 | grep -v -i warn | tee $OUT/lammps_gpu_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
