"""Alexandria phonons (binaries): the harmonic heat capacity at 300 K against Alexandria's PBE
phonopy values, by the protocol of hipot's `phonons` task with its defaults: the structure relaxed
keeping its symmetry (all structures in one batched relaxation, the task's fmax and steps), a
supercell at least 10 A wide, displacements of 0.01 A, phonopy's mesh of length 30. Compared per
atom (the reference is per mole of the given cell, the model's per mole of the primitive cell)."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..tasks.phonons import phonons
from ..tasks.relax import relax
from .common import Options, log, num, pick
from .data import load_alexandria_cv
from .metrics import regression
from .models import ModelHandle

TEMPERATURE = 300.0
QUICK_RELAX_STEPS = 50  # --quick: the relaxation stops here (a smoke run)


def protocol() -> dict[str, Any]:
    """The phonons task's defaults, as this benchmark uses them."""
    params = inspect.signature(phonons).parameters
    return {k: params[k].default for k in ("supercell_length", "displacement", "fmax", "steps", "mesh",
                                           "imaginary_threshold")}


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    p = protocol()
    if opts.quick:
        p["steps"] = min(p["steps"], QUICK_RELAX_STEPS)
    entries = load_alexandria_cv(opts.data_dir)
    chosen = [entries[i] for i in pick([e.atoms for e in entries], "heat_capacity", handle, opts)]
    model = handle.relax_target()
    log(f"heat_capacity: {handle.name}: relaxing {len(chosen)} structures (symmetry kept, fmax {p['fmax']})")
    relaxed = relax([e.atoms for e in chosen], model, fmax=p["fmax"], smax=None, steps=p["steps"], relax_cell=True,
                    symmetry=True, batch_size=opts.batch_size, progress=True)  # the protocol's criterion: forces only
    items = []
    for k, (e, r) in enumerate(zip(chosen, relaxed)):
        item: dict[str, Any] = {"mp_id": e.mp_id, "formula": e.formula, "n_atoms": len(e.atoms),
                                "cv_ref_per_atom": e.cv / len(e.atoms), "relax_converged": bool(r.converged)}
        try:
            if r.error is not None:
                raise ValueError(r.error)
            ph = phonons(r.atoms, model, relax_first=False, bands=False, t_min=TEMPERATURE, t_max=TEMPERATURE,
                         batch_size=min(opts.batch_size, 32))
            item.update(cv_per_atom=ph.thermal["heat_capacity"][0] / ph.n_primitive_atoms,
                        has_imaginary=ph.has_imaginary, min_frequency=ph.min_frequency,
                        supercell=ph.supercell_matrix, warnings=ph.warnings)
        except Exception as exc:  # noqa: BLE001 (one structure failing must not lose the others)
            item.update(cv_per_atom=None, error=f"{type(exc).__name__}: {exc}")
        items.append(item)
        if (k + 1) % 50 == 0:
            log(f"heat_capacity: {handle.name}: {k + 1}/{len(chosen)}")
    log(f"heat_capacity: {handle.name}: done")
    return {"settings": {"protocol": "hipot phonons task defaults", **p, "temperature": TEMPERATURE,
                         "n": len(items)}, "items": items}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if ids is None or it["mp_id"] in ids]
    p = np.array([num(it.get("cv_per_atom")) for it in items], float)
    t = np.array([it["cv_ref_per_atom"] for it in items], float)
    reg = regression(p, t)
    ok = np.isfinite(p)
    return {"n": len(items), "cv": reg,
            "cv_rel_mae_pct": float(np.mean(np.abs(p[ok] - t[ok]) / t[ok]) * 100) if ok.any() else float("nan"),
            "imaginary": int(sum(bool(it.get("has_imaginary")) for it in items)),
            "failed": int(np.sum(~ok)), "cutoff_warnings": int(sum(bool(it.get("warnings")) for it in items))}
