# Device call for issue 28 (one H100 or H200, one call of at most 10 minutes): pair_style hipot on
# 1 rank and on 2 ranks sharing the GPU, against `hipot md` and the model alone (Evaluator.step),
# Si and MgO at 4,096 and 32,768 atoms, NVT 300 K, float32, plus the model alone with its edges in
# three orders (benchmarks/lammps/gpu.py says what each part measures). Parts in order of
# importance, each under its own time limit; 7 files under $OUT; the table is printed last.
# carry: .devcarry/v3.pth.xz .devcarry/site.tar.xz .devcarry/lammps.tar.xz
#   (built in the checkout that is sent: for p in v3 site lammps; do bash benchmarks/device/pack.sh $p; done)
# run from the checkout root: bash benchmarks/device/lammps_gpu.sh
T0=$(date +%s)
left() { echo $(( $1 - $(date +%s) + T0 )); }   # seconds until $1 s after the start
. benchmarks/device/unpack.sh
python3 -m hipot.lammps 2>&1 | tail -1   # builds the plugin (once)
echo "setup done: $(( $(date +%s) - T0 )) s"
G=benchmarks/lammps/gpu.py
python3 $G lammps --ranks 1 --timeout $(left 290) --json $OUT/lmp1.json > $OUT/lmp1_log.txt 2>&1
echo "LAMMPS 1 rank rc=$?: $(( $(date +%s) - T0 )) s"
timeout $(left 440) python3 $G python --json $OUT/py.json > $OUT/py_log.txt 2>&1
echo "hipot md, model alone rc=$?: $(( $(date +%s) - T0 )) s"
python3 $G lammps --ranks 2 --steps 30 --steps-large 10 --timeout $(left 575) --json $OUT/lmp2.json > $OUT/lmp2_log.txt 2>&1
echo "LAMMPS 2 ranks rc=$?: $(( $(date +%s) - T0 )) s"
grep -h -E "us/atom/step|^  (forward|backward|exchange|reverse_exchange|to_device|to_host|graph_nodes|exchanged_rows) " \
  $OUT/lmp1_log.txt $OUT/lmp2_log.txt | head -60
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 $G table $OUT/lmp1.json $OUT/py.json $OUT/lmp2.json | tee $OUT/table.md
