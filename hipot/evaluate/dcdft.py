"""dcdft (Delta test): equation of state of 71 elemental crystals against all-electron PBE (WIEN2k).

Protocol of the Delta test: the stored cell is scaled isotropically to 11 volumes within +-6 % of
the reference volume, with fractional coordinates fixed (no relaxation), and a third-order
Birch-Murnaghan curve is fitted to the energies. The model's stress at the same points gives its
bulk modulus and the energy steps along each curve that the pressure does not account for (a
neighbour shell crossing a cutoff where the energy jumps), as the eos task checks them."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..tasks.checks import energy_steps
from ..tasks.eos import STEP_TOLERANCE_MEV, bulk_modulus_from_pressure
from .common import Options, log, num, pick
from .data import load_dcdft
from .metrics import EV_A3_TO_GPA, birch_murnaghan_fit, regression
from .models import ModelHandle, single_points

STRAINS = np.linspace(0.94, 1.06, 11)   # volume factors around the WIEN2k V0


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    entries = load_dcdft(opts.data_dir)
    idx = sorted(pick([e.atoms for e in entries], "dcdft", handle, opts))
    chosen = [entries[i] for i in idx]
    frames, owner = [], []
    for k, e in enumerate(chosen):
        a0 = e.atoms
        v_atom = a0.get_volume() / len(a0)
        for f in STRAINS:
            a = a0.copy()
            a.set_cell(a0.cell.array * (f * e.v0 / v_atom) ** (1 / 3), scale_atoms=True)
            a.set_initial_magnetic_moments(None)
            frames.append(a)
            owner.append(k)
    log(f"dcdft: {handle.name}: {len(frames)} single points ({len(chosen)} elements x {len(STRAINS)} volumes)")
    res = single_points(handle, frames, stress=True, batch_size=opts.batch_size)
    items = []
    for k, e in enumerate(chosen):
        sel = [j for j, o in enumerate(owner) if o == k]
        n = len(e.atoms)
        vols = np.array([frames[j].get_volume() / n for j in sel])
        ens = np.array([float(res[j]["energy"]) / n for j in sel])
        pres = np.array([-float(np.mean(np.asarray(res[j]["stress"])[:3])) for j in sel])  # eV/A^3
        # a structure the model could not evaluate (unknown element) has NaN energies: no fit
        ok = np.all(np.isfinite(ens)) and np.all(np.isfinite(pres))
        v0, b0, b1, _ = birch_murnaghan_fit(vols, ens) if ok else (float("nan"),) * 4
        items.append({"element": e.element, "n_atoms": n, "v0_ref": e.v0, "b0_ref": e.b0, "b1_ref": e.b1,
                      "v0": v0, "b0": b0 * EV_A3_TO_GPA, "b1": b1, "volumes": vols.tolist(), "energies": ens.tolist(),
                      "pressures": (pres * EV_A3_TO_GPA).tolist(),
                      "b0_stress": bulk_modulus_from_pressure(vols, pres, v0 if np.isfinite(v0) else e.v0) * EV_A3_TO_GPA
                      if ok else float("nan"),
                      "energy_steps_mev": (energy_steps(vols, ens, pres) * 1000).tolist() if ok else []})
    log(f"dcdft: {handle.name}: done")
    return {"settings": {"volume_factors": STRAINS.tolist(), "fit": "Birch-Murnaghan 3rd order in V^(-2/3)",
                         "step_tolerance_mev": STEP_TOLERANCE_MEV, "n": len(items)}, "items": items}


def steps_of(item: dict[str, Any], tol: float = STEP_TOLERANCE_MEV) -> np.ndarray | None:
    """|steps| (meV/atom) above `tol` along an element's curve; None where the run stored no
    pressures (raw results of an earlier version)."""
    steps = item.get("energy_steps_mev")
    if steps is None:
        return None
    s = np.abs(np.array([num(x) for x in steps], float))
    return s[s > tol]


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if ids is None or it["element"] in ids]
    v, vr = np.array([num(it["v0"]) for it in items]), np.array([it["v0_ref"] for it in items])
    b, br = np.array([num(it["b0"]) for it in items]), np.array([it["b0_ref"] for it in items])
    rel_v = 100 * (v - vr) / vr
    rel_b = 100 * (b - br) / br
    # a minimum outside the sampled +-6 % range is an extrapolation: count it, it is not reliable
    outside = int(np.sum(~np.isfinite(v) | (v < 0.94 * vr) | (v > 1.06 * vr)))
    out = {"n": len(items), "v0": regression(v, vr), "b0": regression(b, br),
           "v0_rel_mae_pct": float(np.nanmean(np.abs(rel_v))) if items else float("nan"),
           "v0_rel_median_pct": float(np.nanmedian(np.abs(rel_v))) if items else float("nan"),
           "b0_rel_mae_pct": float(np.nanmean(np.abs(rel_b))) if items else float("nan"),
           "b0_rel_median_pct": float(np.nanmedian(np.abs(rel_b))) if items else float("nan"),
           "v0_outside_range": outside, "failed_fits": int(np.sum(~np.isfinite(v)))}
    steps = [(it["element"], steps_of(it)) for it in items]
    if items and all(s is not None for _, s in steps):
        sizes = [(float(s.max()), el) for el, s in steps if s.size]
        bs = np.array([num(it.get("b0_stress")) for it in items])
        out.update({"steps": int(sum(s.size for _, s in steps)), "curves_with_steps": len(sizes),
                    "step_max_mev": max(sizes)[0] if sizes else 0.0, "step_max_element": max(sizes)[1] if sizes else "",
                    "b0_vs_stress_mae": float(np.nanmean(np.abs(b - bs)))})
    return out
