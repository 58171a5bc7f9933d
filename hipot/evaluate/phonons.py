"""Phonons of diamond Si against PBE (phono3py's Si-PBE example: 111 displaced 64-atom supercells
with VASP PBE forces). Thermal conductivity is the `kappa` benchmark's (phono3py, the kappa extra)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .common import Options, log
from .data import displaced, load_si_pbe
from .metrics import regression
from .models import ModelHandle, single_points

MESH = (8, 8, 8)
POINTS = {"Gamma": (0.0, 0.0, 0.0), "X": (0.5, 0.0, 0.5), "L": (0.5, 0.5, 0.5)}   # primitive reciprocal coords


def frequencies(fs, forces_single: list[np.ndarray]) -> dict[str, Any]:
    """Harmonic frequencies (THz) from the single-displacement supercells via phonopy."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    uc = fs.unit_cell
    ph = Phonopy(PhonopyAtoms(symbols=uc.get_chemical_symbols(), cell=uc.cell.array,
                              scaled_positions=uc.get_scaled_positions()),
                 supercell_matrix=fs.supercell_matrix, primitive_matrix=fs.primitive_matrix)
    singles = [k for k, d in enumerate(fs.displacements) if len(d) == 1]
    ph.dataset = {"natom": len(fs.supercell),
                  "first_atoms": [{"number": fs.displacements[k][0][0], "displacement": fs.displacements[k][0][1],
                                   "forces": forces_single[k]} for k in singles]}
    ph.produce_force_constants()
    ph.run_mesh(MESH, with_eigenvectors=False, is_mesh_symmetry=False)
    mesh = ph.mesh.frequencies
    pts = {}
    for name, q in POINTS.items():
        res = ph.run_qpoints([q])
        pts[name] = np.asarray((res if res is not None else ph.qpoints).frequencies[0]).tolist()
    return {"mesh": np.round(np.asarray(mesh).ravel(), 4).tolist(), "points": pts}


def add_frequencies(item: dict[str, Any], fs) -> bool:
    """Model and PBE frequencies from the stored single-displacement forces (needs phonopy)."""
    if "freq_model" in item or not item.get("single_forces"):
        return False
    try:
        import phonopy  # noqa: F401
    except ImportError:
        log("phonons: phonopy missing: frequencies left to the report step")
        return False
    forces = [None] * len(fs.forces)
    for k, f in item["single_forces"].items():
        forces[int(k)] = np.array(f)
    item["freq_model"], item["freq_dft"] = frequencies(fs, forces), frequencies(fs, fs.forces)
    item["freq_mesh_mae_thz"] = float(np.mean(np.abs(np.array(item["freq_model"]["mesh"])
                                                     - np.array(item["freq_dft"]["mesh"]))))
    return True


def complete(raw: dict[str, Any], data_dir) -> bool:
    """Frequencies for a raw result made where phonopy was missing."""
    items = raw.get("items", [])
    return bool(items) and add_frequencies(items[0], load_si_pbe(data_dir))


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    fs = load_si_pbe(opts.data_dir)
    n = len(fs.forces)
    if opts.limit("phonons", handle.kind == "peer") is not None:
        n = min(n, max(1, int(opts.limit("phonons", handle.kind == "peer"))))
    frames = [displaced(fs, k) for k in range(n)]
    log(f"phonons: {handle.name}: forces on {n} displaced Si supercells (64 atoms)")
    res = single_points(handle, frames + [fs.supercell.copy()], batch_size=min(opts.batch_size, 32))
    pred = [np.asarray(r["forces"]) for r in res[:n]]
    perfect = np.asarray(res[n]["forces"])
    out: dict[str, Any] = {"n_supercells": n,
                           "force": regression(np.concatenate([p.ravel() for p in pred]),
                                               np.concatenate([fs.forces[k].ravel() for k in range(n)])),
                           "perfect_max_force": float(np.abs(perfect).max())}
    # the model's forces on the single-displacement cells (minus those on the perfect cell: the model
    # is not at its own minimum there) are all phonopy needs; kept so frequencies can be made later
    out["single_forces"] = {str(k): np.round(pred[k] - perfect, 6).tolist()
                            for k, d in enumerate(fs.displacements[:n]) if len(d) == 1}
    add_frequencies(out, fs)
    log(f"phonons: {handle.name}: done")
    return {"settings": {"mesh": list(MESH), "n": n}, "items": [out]}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    it = raw["items"][0]
    out = {"n": it["n_supercells"], "force_mae": it["force"]["mae"], "force_rmse": it["force"]["rmse"],
           "force_r2": it["force"]["r2"], "perfect_max_force": it["perfect_max_force"]}
    if "freq_model" in it:
        out["freq_mesh_mae_thz"] = it["freq_mesh_mae_thz"]
        for name in POINTS:
            out[f"{name}_model"] = it["freq_model"]["points"][name]
            out[f"{name}_dft"] = it["freq_dft"]["points"][name]
    return out
