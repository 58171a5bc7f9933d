# Device call 2 (issue 18, runs 2 and 3): kernel fusion of the 64-atom step, then LAMMPS on one H200.
# carry: .devcarry/v3.pth.xz .devcarry/site.tar.xz .devcarry/lammps.tar.xz
T0=$(date +%s)
. benchmarks/device/unpack.sh
timeout 200 python3 benchmarks/fusion.py /tmp/v3.pth --backends cueq edges --kinds Si 2>&1 | grep -v -i warn \
  | tee $OUT/fusion_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
python3 -m hipot.lammps 2>&1 | tail -3   # builds the plugin (once)
timeout $(( 585 - $(date +%s) + T0 )) python3 benchmarks/lammps/gpu.py --kinds Si MgO --atoms 4096 32768 --steps 100 \
  --ase-steps 20 --json $OUT/lammps_gpu.json 2>&1 | grep -v -i warn | tee $OUT/lammps_gpu_log.txt
echo "elapsed $(( $(date +%s) - T0 )) s"
