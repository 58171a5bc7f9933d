"""MP elasticity (binaries): K_VRH and G_VRH against the MP DFT values, by the protocol of hipot's
`elastic` task with its defaults (`hipot.tasks.elastic.elastic_many`, one batched relaxation per
stage): cell and positions relaxed keeping the symmetry (FIRE + FrechetCellFilter, fmax 0.005
eV/A, at most 300 steps), 6 Voigt strains x (+-0.5 %, +-1 %), ions relaxed at each strain (fmax
0.005 eV/A, at most 300 steps), each column of C the slope of a line through the four stresses,
C symmetrised, Voigt-Reuss-Hill moduli."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..tasks.elastic import AMPLITUDES, elastic_many
from .common import Options, log, num, pick
from .data import load_elastic
from .metrics import regression
from .models import ModelHandle


def protocol() -> dict[str, Any]:
    """The elastic task's defaults, as this benchmark uses them."""
    params = inspect.signature(elastic_many).parameters
    keys = ("strain", "relax_internal", "relax_first", "fmax", "steps")
    out: dict[str, Any] = {k: params[k].default for k in keys}
    out.update(amplitudes=list(AMPLITUDES), symmetry_kept_in_first_relaxation=True, optimizer="FIRE",
               cell_filter="FrechetCellFilter")
    return out


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    entries = load_elastic(opts.data_dir)
    idx = pick([e.atoms for e in entries], "elastic", handle, opts)
    chosen = [entries[i] for i in idx]
    log(f"elastic: {handle.name}: {len(chosen)} structures, the elastic task's protocol (batched)")
    results = elastic_many([e.atoms for e in chosen], handle.relax_target(), batch_size=opts.batch_size,
                           progress=True)
    items = []
    for e, r in zip(chosen, results):
        items.append({"mp_id": e.mp_id, "formula": e.formula, "n_atoms": len(e.atoms), "k_vrh_ref": e.k_vrh,
                      "g_vrh_ref": e.g_vrh, "k_vrh": r.k_vrh, "g_vrh": r.g_vrh, "c": np.asarray(r.c).tolist(),
                      "stable": r.stable, "warnings": r.warnings, "error": r.error})
    log(f"elastic: {handle.name}: done")
    return {"settings": {"protocol": "hipot elastic task defaults", **protocol(), "n": len(items)}, "items": items}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if ids is None or it["mp_id"] in ids]
    out: dict[str, Any] = {"n": len(items)}
    for key in ("k_vrh", "g_vrh"):
        p = np.array([num(it[key]) for it in items], float)
        t = np.array([it[f"{key}_ref"] for it in items], float)
        out[key] = regression(p, t)
        err = np.abs(p - t)
        out[f"{key}_median_ae"] = float(np.nanmedian(err)) if np.isfinite(err).any() else float("nan")
    out["failed"] = int(sum(not np.isfinite(num(it["k_vrh"])) for it in items))
    # raw results of the earlier protocol carry no warnings: unknown, not zero
    out["cutoff_warnings"] = (int(sum(bool(it.get("warnings")) for it in items))
                              if all("warnings" in it for it in items) else None)
    return out
