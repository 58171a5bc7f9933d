"""Model files: hipot's own format (config.json + model.safetensors) and the official HIENet .pth.

The official checkpoint is a torch pickle. It is read with torch's restricted unpickler and an
explicit allow-list of the few numpy types its config uses, so no arbitrary code can run, and its
weights are mapped onto hipot's layout once (`convert_official`).
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ModelConfig
from .model import HIENet
from .nn.equivariant import gate_input_irreps
from .nn.irreps import Irreps

FORMAT = "hipot-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class ModelFileError(RuntimeError):
    """A model file that is missing, corrupt or of an unsupported kind."""


# ----------------------------------------------------------------------------- hipot format

def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_section(doc: dict[str, Any]) -> str:
    """Checksum of what defines the model in config.json (architecture and dtype; metadata is free text)."""
    text = json.dumps({"model": doc.get("model"), "dtype": doc.get("dtype")}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def save_model(model: HIENet, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `directory/config.json` and `directory/model.safetensors` atomically (all or nothing).
    config.json records SHA-256 checksums of its model section and of the weights file, so that
    an edited or damaged folder is refused on load instead of silently giving other numbers."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.config.to_dict(),
               "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
               "metadata": metadata or {}}
        doc["sha256"] = {"model": _sha256_section(doc), WEIGHTS_FILE: sha256_of(tmp / WEIGHTS_FILE)}
        (tmp / CONFIG_FILE).write_text(json.dumps(doc, indent=2))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model folder is ordinary data
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_model_doc(directory: str | Path, verify_weights: bool = True) -> dict[str, Any]:
    """The checked contents of `directory/config.json`: format, version and, where recorded at
    saving (`save_model`), the checksums of the model section and (verify_weights) of the weights."""
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelFileError(f"{directory}: not a hipot model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        doc = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{cfg_path}: corrupt config ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{cfg_path}: not a hipot model config")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{cfg_path}: written by a newer hipot (format {doc['format_version']})")
    sums = doc.get("sha256")
    if isinstance(sums, dict):
        if sums.get("model") != _sha256_section(doc):
            raise ModelFileError(f"{cfg_path}: the model section was changed or is corrupt (its SHA-256 differs "
                                 "from the one recorded when the model was written)")
        if verify_weights and sums.get(WEIGHTS_FILE) != sha256_of(w_path):
            raise ModelFileError(f"{w_path}: corrupt or changed weights file (its SHA-256 differs from the one "
                                 "recorded when the model was written)")
    return doc


def has_checksums(directory: str | Path) -> bool:
    """Whether the folder's config.json records checksums (folders written before hipot recorded them do not)."""
    try:
        return isinstance(json.loads((Path(directory) / CONFIG_FILE).read_text()).get("sha256"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def _config_of(doc: dict[str, Any], directory: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{directory / CONFIG_FILE}: invalid model section ({e})") from None


def read_model_config(directory: str | Path) -> ModelConfig:
    """The architecture of a saved model (species, cutoff, sizes) without reading its weights."""
    return _config_of(read_model_doc(directory, verify_weights=False), Path(directory))


def load_model_dir(directory: str | Path) -> tuple[HIENet, dict[str, Any]]:
    """Load a model saved by `save_model`; returns the model (float32, CPU) and its metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    doc = read_model_doc(directory)
    w_path = directory / WEIGHTS_FILE
    config = _config_of(doc, directory)
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{w_path}: corrupt weights file ({e})") from None
    model = HIENet(config)
    _load_state(model, state, str(w_path))
    return model, doc.get("metadata", {})


def _load_state(model: HIENet, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelFileError(f"{source}: weights do not match the config (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelFileError(f"{source}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelFileError(f"{source}: {k} holds NaN or infinite values")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


# ----------------------------------------------------------------------------- official format

def _official_allowed_globals() -> list:
    """The only globals an official HIENet checkpoint needs besides torch's own tensor types."""
    np_core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    return [
        (np_core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (np_core.multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        codecs.encode,
        type(np.dtype(np.float64)),
        type(np.dtype(np.float32)),
        type(np.dtype(np.int64)),
    ]


def read_official(path: str | Path) -> dict[str, Any]:
    """Read an official HIENet checkpoint (.pth) without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(_official_allowed_globals()):
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or zip errors
        lines = [ln for ln in str(e).splitlines() if "Unsupported global" in ln] or str(e).splitlines()[:1]
        raise ModelFileError(f"{path}: not a readable HIENet checkpoint ({type(e).__name__}: "
                             f"{lines[0].strip()[:300]})") from None
    if not isinstance(ck, dict) or "model_state_dict" not in ck or "config" not in ck:
        raise ModelFileError(f"{path}: not a HIENet checkpoint (no model_state_dict/config)")
    return ck


def config_from_official(cfg: dict[str, Any]) -> ModelConfig:
    """hipot's ModelConfig of an official checkpoint's config dict (unsupported options refused)."""
    def need(key: str, value: Any) -> None:
        if cfg.get(key, value) != value:
            raise ModelFileError(f"official config {key}={cfg.get(key)!r} is not supported (expected {value!r})")

    need("is_parity", False)
    need("self_connection_type", "linear")
    need("use_bias_in_linear", False)
    need("readout_as_fcn", False)
    need("use_edge_conv", False)
    need("use_comf_embedding", False)
    need("use_cgcnn_embedding", False)
    need("use_denoising", False)
    need("act_radial", "silu")
    if cfg.get("act_scalar", {}).get("e") != "silu" or cfg.get("act_gate", {}).get("e") != "silu":
        raise ModelFileError("official config: only SiLU scalar and gate activations are supported")
    if cfg["radial_basis"].get("radial_basis_name") != "bessel":
        raise ModelFileError("official config: only the Bessel radial basis is supported")
    if cfg["cutoff_function"].get("cutoff_function_name") != "poly_cut":
        raise ModelFileError("official config: only the polynomial cutoff is supported")
    type_map = cfg["_type_map"]
    species = [int(z) for z, _ in sorted(type_map.items(), key=lambda kv: kv[1])]
    irreps = cfg["irreps_manual"]
    inv = cfg["inv_features"]
    if Irreps.parse(irreps[0]).terms != ((0, inv[-1]),):
        raise ModelFileError(f"official config: first irreps {irreps[0]} must equal {inv[-1]}x0e")
    return ModelConfig(
        species=species,
        cutoff=float(cfg["cutoff"]),
        num_radial=int(cfg["radial_basis"]["bessel_basis_num"]),
        trainable_radial=True,
        envelope_p=int(cfg["cutoff_function"]["poly_cut_p_value"]),
        invariant_channels=int(inv[-1]),
        num_invariant_layers=int(cfg.get("num_invariant_conv", 1)),
        hidden_irreps=[str(Irreps.parse(s)) for s in irreps[1:]],
        sh_lmax=int(cfg["lmax"]),
        radial_hidden=[int(h) for h in cfg["weight_nn_hidden_neurons"]],
        # The official code uses only the first denominator for every block.
        avg_num_neighbors=float(cfg["conv_denominator"][0]),
        readout_hidden=256,
        dropout=float(cfg.get("dropout", 0.0)),
        dropout_attn=float(cfg.get("dropout_attn", 0.0)),
    )


def _unflatten_linear(flat: torch.Tensor, segs_in: list[tuple[int, int]], segs_out: list[tuple[int, int]],
                      ls: list[int]) -> list[torch.Tensor]:
    """e3nn Linear flat weights -> one (mul_in_l, mul_out_l) matrix per l.

    e3nn stores one row-major (mul_in, mul_out) block per (input segment, output segment) pair of
    equal l, looping over input segments first. Segments are (mul, l) in e3nn order.
    """
    def offsets(segs: list[tuple[int, int]]) -> list[int]:
        seen: dict[int, int] = {}
        out = []
        for mul, l in segs:
            out.append(seen.get(l, 0))
            seen[l] = seen.get(l, 0) + mul
        return out

    off_in, off_out = offsets(segs_in), offsets(segs_out)
    tot_in = {l: sum(m for m, ll in segs_in if ll == l) for l in ls}
    tot_out = {l: sum(m for m, ll in segs_out if ll == l) for l in ls}
    mats = {l: torch.zeros(tot_in[l], tot_out[l], dtype=flat.dtype) for l in ls}
    pos = 0
    for a, (mi, li) in enumerate(segs_in):
        for b, (mo, lo) in enumerate(segs_out):
            if li != lo:
                continue
            block = flat[pos : pos + mi * mo].reshape(mi, mo)
            mats[li][off_in[a] : off_in[a] + mi, off_out[b] : off_out[b] + mo] = block
            pos += mi * mo
    if pos != flat.numel():
        raise ModelFileError(f"e3nn linear weight has {flat.numel()} values, layout needs {pos}")
    return [mats[l] for l in ls]


def convert_official(ck: dict[str, Any]) -> HIENet:
    """Build a hipot HIENet holding the weights of an official checkpoint dict."""
    config = config_from_official(ck["config"])
    sd = {k: v for k, v in ck["model_state_dict"].items()}
    model = HIENet(config)
    new: dict[str, torch.Tensor] = {}
    n_species, c = len(config.species), config.invariant_channels
    new["radial_basis.freqs"] = sd["edge_embedding.basis_module.coeffs"]
    new["embedding"] = sd["onehot_to_feature_x.linear.0.weight"].reshape(n_species, c)
    names = {"linear_key": "key", "linear_query": "query", "linear_value": "value", "linear_edge": "edge",
             "linear_concate": "out", "msg_update": "msg_mlp", "key_update": "key_mlp", "bn": "out_norm",
             "bn_att": "att_norm", "linear_reset": "reset_gate", "linear_update": "update_gate"}
    for t in range(config.num_invariant_layers):
        prefix = f"{t}_invariant_convolution."
        for k, v in sd.items():
            if k.startswith(prefix) and not k.endswith("denominator"):
                head, rest = k[len(prefix):].split(".", 1)
                new[f"invariant_layers.{t}.{names[head]}.{rest}"] = v
    irreps = [Irreps.from_muls({0: c})] + [Irreps.parse(s) for s in config.hidden_irreps]
    for t, (irr_in, irr_out) in enumerate(zip(irreps[:-1], irreps[1:])):
        block = model.blocks[t]
        # The official code hands e3nn simplified irreps (one segment per l) for the node features,
        # the tensor-product output and the gate input (scalars and gates merged into one 0e).
        node_segs = [(m, l) for l, m in irr_in.terms]
        gate_segs = [(m, l) for l, m in gate_input_irreps(irr_out).terms]
        mid_segs = [(m, l) for l, m in block.tp.irreps_mid.terms]
        for mine, theirs, segs_in, segs_out, lin in (
            ("self_connection", "self_connection_intro", node_segs, gate_segs, block.self_connection),
            ("linear_1", "self_interaction_1", node_segs, node_segs, block.linear_1),
            ("linear_2", "self_interaction_2", mid_segs, gate_segs, block.linear_2),
        ):
            mats = _unflatten_linear(sd[f"{t}_{theirs}.linear.weight"], segs_in, segs_out, lin.ls)
            for k, m in enumerate(mats):
                new[f"blocks.{t}.{mine}.weights.{k}"] = m
        for k in range(len(block.radial.weights)):
            new[f"blocks.{t}.radial.weights.{k}"] = sd[f"{t}_convolution.weight_nn.layer{k}.weight"]
        den = float(sd[f"{t}_convolution.denominator"])
        if abs(den - config.avg_num_neighbors) > 1e-4 * config.avg_num_neighbors:
            raise ModelFileError(f"block {t} denominator {den} differs from {config.avg_num_neighbors}")
    new["readout_hidden"] = sd["reduce_input_to_hidden.linear.0.weight"].reshape(irreps[-1].mul(0), -1)
    new["readout_out"] = sd["reduce_hidden_to_energy.linear.weight"].reshape(-1, 1)
    new["shift"] = sd["rescale_atomic_energy.shift"].reshape(-1)
    new["scale"] = sd["rescale_atomic_energy.scale"].reshape(-1)
    _load_state(model, new, "official checkpoint")
    return model
