"""Homonuclear diatomics: smoothness and the energy jump at the cutoff, shape against PBE.

Each X2 dimer sits in a 30 A periodic box (no image within any model's cutoff; a box is needed by
peers that require a lattice). Energies and forces on a uniform grid give the smoothness scores;
two points 1e-4 A on either side of the cutoff give the jump; the PBE curve's own distances give
the comparison with DFT (energies relative to each curve's value at its largest distance, 6 A)."""
from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from ..tasks.checks import steps_along
from .common import Options, log, num, pick
from .data import load_diatomics
from .metrics import sign_flips
from .models import ModelHandle, single_points

GRID = np.round(np.arange(0.5, 6.0 + 1e-9, 0.05), 4)
EPS = 1e-4
BOX = 30.0
FORCE_TOL = 0.01   # eV/A: forces smaller than this do not count as a sign
INNER = 0.8        # smoothness scores use grid points r >= INNER * (PBE bond length): the steep wall
                   # below would dominate total variations and is not where the curve's shape matters
STEP_TOL = 0.01    # eV: an energy change between grid points that the forces miss by more is a step


def energy_steps(grid, e_grid, f_grid, r_min: float) -> int:
    """Steps along the curve from the PBE bond length outwards: intervals of the 0.05 A grid whose
    energy change the forces (trapezoid rule) miss by more than STEP_TOL. A curve continuous on
    the grid's scale has none; HIENet-V3 has its cutoff jump (one per dimer); a curve that makes
    up a jump within a few hundredths of an A counts too."""
    g = np.asarray(grid)
    m = g >= r_min
    res = steps_along(g[m], np.asarray(e_grid)[m], np.asarray(f_grid)[m])
    return int(np.sum(np.abs(res) > STEP_TOL))


def smoothness(grid, e_grid, f_grid, r_min: float) -> dict[str, float]:
    """Sign flips of the force and of dE along the grid, and the force's total variation, for
    r >= INNER * r_min."""
    g = np.asarray(grid)
    m = g >= INNER * r_min
    e, f = np.asarray(e_grid)[m], np.asarray(f_grid)[m]
    return {"force_flips": sign_flips(f, FORCE_TOL), "energy_diff_flips": sign_flips(np.diff(e), 1e-3),
            "force_total_variation": float(np.sum(np.abs(np.diff(f))))}


def dimer(el: str, r: float) -> Atoms:
    c = BOX / 2
    return Atoms([el, el], positions=[[c - r / 2, c, c], [c + r / 2, c, c]], cell=[BOX] * 3, pbc=True)


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    ref = load_diatomics(opts.data_dir)
    names = sorted(ref, key=lambda el: atomic_numbers[el])
    # the same seeded order for every model (see common.pick); a hipot model skips unknown elements
    idx = sorted(pick([dimer(el, 2.0) for el in names], "diatomics", handle, opts))
    names = [names[i] for i in idx]
    rc = handle.cutoff or 5.0
    items = []
    log(f"diatomics: {handle.name}: {len(names)} dimers x {len(GRID) + 2 + 50} distances")
    frames, spans = [], []
    for el in names:
        dists = np.concatenate([GRID, [rc - EPS, rc + EPS], ref[el]["distances"]])
        spans.append((len(frames), dists))
        frames.extend(dimer(el, float(r)) for r in dists)
    try:
        res = single_points(handle, frames, batch_size=max(opts.batch_size, 256))
    except Exception as e:  # a peer rejecting one element would lose all: retry element by element
        log(f"diatomics: {handle.name}: batch failed ({e}); element by element")
        res = []
        for (start, dists), el in zip(spans, names):
            try:
                res.extend(single_points(handle, frames[start:start + len(dists)]))
            except Exception:
                res.extend({"energy": float("nan"), "forces": np.full((2, 3), np.nan)} for _ in dists)
    for (start, dists), el in zip(spans, names):
        e = np.array([float(res[start + j]["energy"]) for j in range(len(dists))])
        # radial force on atom 2 (+x points away from atom 1): positive = repulsive
        f = np.array([float(np.asarray(res[start + j]["forces"])[1, 0]) for j in range(len(dists))])
        ng = len(GRID)
        e_grid, f_grid = e[:ng], f[:ng]
        e_ref_d, e_dft = e[ng + 2:], ref[el]["energies"]
        d_dft = ref[el]["distances"]
        if not np.all(np.isfinite(e)):
            items.append({"element": el, "failed": True})
            continue
        rel_model = e_ref_d - e_ref_d[-1]
        rel_dft = e_dft - e_dft[-1]
        items.append({
            "element": el, "failed": False,
            "jump_at_cutoff": float(e[ng + 1] - e[ng]),
            "force_jump_at_cutoff": float(f[ng + 1] - f[ng]),
            "pbe_r_min": float(d_dft[np.argmin(rel_dft)]),
            "energy_mae_vs_pbe": float(np.mean(np.abs(rel_model - rel_dft))),
            "bond_length_error": float(abs(d_dft[np.argmin(rel_model)] - d_dft[np.argmin(rel_dft)])),
            "well_depth_error": float(abs(rel_model.min() - rel_dft.min())),
            "grid": GRID.tolist(), "energy_grid": e_grid.tolist(), "force_grid": f_grid.tolist(),
        })
    log(f"diatomics: {handle.name}: done")
    return {"settings": {"grid": [float(GRID[0]), float(GRID[-1]), 0.05], "cutoff": rc, "eps": EPS, "box": BOX,
                         "force_tol": FORCE_TOL, "step_tol": STEP_TOL, "n": len(items)}, "items": items}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if not it.get("failed") and (ids is None or it["element"] in ids)]
    out: dict[str, Any] = {"n": len(items), "failed": sum(1 for it in raw["items"] if it.get("failed"))}
    if not items:
        return out
    jumps = np.abs([num(it["jump_at_cutoff"]) for it in items])
    out.update({"jump_mean": float(jumps.mean()), "jump_median": float(np.median(jumps)), "jump_max": float(jumps.max()),
                "jump_max_element": items[int(np.argmax(jumps))]["element"],
                "jump_over_10meV": int(np.sum(jumps > 0.01)),
                "force_jump_mean": float(np.mean(np.abs([num(it.get("force_jump_at_cutoff")) for it in items])))})
    steps = np.array([energy_steps(it["grid"], it["energy_grid"], it["force_grid"], it.get("pbe_r_min", 1.25))
                      for it in items])
    out.update({"energy_steps_mean": float(steps.mean()), "energy_steps_max": int(steps.max()),
                "curves_with_steps": int(np.sum(steps > 0))})
    smooth = [smoothness(it["grid"], it["energy_grid"], it["force_grid"], it.get("pbe_r_min", 1.25)) for it in items]
    for key in ("force_flips", "energy_diff_flips", "force_total_variation"):
        out[key] = float(np.mean([sm[key] for sm in smooth]))
    for key in ("energy_mae_vs_pbe", "bond_length_error", "well_depth_error"):
        out[key] = float(np.nanmean([num(it[key]) for it in items]))
    return out
