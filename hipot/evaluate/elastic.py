"""MP elasticity (binaries): K_VRH and G_VRH from stress-strain fits against the MP DFT values.

Per structure: relax cell and positions (FIRE + FrechetCellFilter, fmax 0.05), apply 6 strain
components x 4 magnitudes (+-0.5 %, +-1 %, engineering shear), relax the ions at fixed cell, and fit
stress against strain (the unstrained relaxed cell is the fifth point). All relaxations go through
`relax_structures` in one call, so a hipot model batches them across materials."""
from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from .common import Options, log, pick
from .data import load_elastic
from .metrics import EV_A3_TO_GPA, regression, vrh_moduli
from .models import ModelHandle, relax_structures, single_points

MAGNITUDES = (-0.01, -0.005, 0.005, 0.01)
FMAX_CELL, FMAX_IONS, STEPS = 0.05, 0.05, 200


def strained(atoms: Atoms, component: int, delta: float) -> Atoms:
    """Copy with Voigt strain `delta` on one component (shear as engineering strain: eps_ij = delta/2)."""
    eps = np.zeros((3, 3))
    if component < 3:
        eps[component, component] = delta
    else:
        i, j = [(1, 2), (0, 2), (0, 1)][component - 3]
        eps[i, j] = eps[j, i] = delta / 2
    a = atoms.copy()
    a.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return a


def stiffness(stresses: np.ndarray, base: np.ndarray) -> np.ndarray:
    """6x6 C (eV/A^3) from stresses (6 components, len(MAGNITUDES), 6) and the unstrained stress,
    each column a least-squares slope through the 5 points; ASE stress is positive in tension,
    so C = d(stress)/d(strain) directly."""
    d = np.array((0.0,) + MAGNITUDES)
    c = np.zeros((6, 6))
    for j in range(6):
        s = np.vstack([base[None], stresses[j]])
        c[:, j] = np.polyfit(d, s, 1)[0]
    return 0.5 * (c + c.T)


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    entries = load_elastic(opts.data_dir)
    idx = pick([e.atoms for e in entries], "elastic", handle, opts)
    chosen = [entries[i] for i in idx]
    log(f"elastic: {handle.name}: relaxing {len(chosen)} structures")
    base = relax_structures(handle, [e.atoms for e in chosen], fmax=FMAX_CELL, steps=500, relax_cell=True,
                            batch_size=opts.batch_size, progress=True)
    frames = []
    for r in base:
        for comp in range(6):
            for dlt in MAGNITUDES:
                frames.append(strained(r.atoms, comp, dlt))
    log(f"elastic: {handle.name}: relaxing the ions of {len(frames)} strained cells")
    relaxed = relax_structures(handle, frames, fmax=FMAX_IONS, steps=STEPS, relax_cell=False,
                               batch_size=opts.batch_size, progress=True)
    # stresses recomputed in one pass: relaxation results need not carry stress
    log(f"elastic: {handle.name}: stresses")
    sp = single_points(handle, [r.atoms for r in base] + [r.atoms for r in relaxed], stress=True,
                       batch_size=opts.batch_size)
    nb = len(base)
    items = []
    per = 6 * len(MAGNITUDES)
    for k, e in enumerate(chosen):
        s0 = np.asarray(sp[k]["stress"])
        ss = np.array([sp[nb + k * per + m]["stress"] for m in range(per)]).reshape(6, len(MAGNITUDES), 6)
        ok = all(np.isfinite(r.energy) for r in relaxed[k * per:(k + 1) * per]) and np.isfinite(base[k].energy)
        c = stiffness(ss, s0) * EV_A3_TO_GPA
        k_vrh, g_vrh = vrh_moduli(c) if ok else (float("nan"), float("nan"))
        items.append({"mp_id": e.mp_id, "formula": e.formula, "n_atoms": len(e.atoms), "k_vrh_ref": e.k_vrh,
                      "g_vrh_ref": e.g_vrh, "k_vrh": k_vrh, "g_vrh": g_vrh, "c": c.tolist(),
                      "converged": bool(base[k].converged),
                      "ion_steps": int(sum(r.steps for r in relaxed[k * per:(k + 1) * per]))})
    log(f"elastic: {handle.name}: done")
    return {"settings": {"strains": list(MAGNITUDES), "fmax_cell": FMAX_CELL, "fmax_ions": FMAX_IONS,
                         "n": len(items)}, "items": items}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if ids is None or it["mp_id"] in ids]
    out: dict[str, Any] = {"n": len(items)}
    for key in ("k_vrh", "g_vrh"):
        p = np.array([it[key] for it in items], float)
        t = np.array([it[f"{key}_ref"] for it in items], float)
        out[key] = regression(p, t)
        out[f"{key}_median_ae"] = float(np.nanmedian(np.abs(p - t))) if items else float("nan")
    out["failed"] = int(sum(not np.isfinite(it["k_vrh"]) for it in items))
    return out
