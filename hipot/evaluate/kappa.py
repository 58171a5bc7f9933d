"""Lattice thermal conductivity of Matbench Discovery's κ-103 compounds by their own protocol
(`phonondb-v1`, hipot.tasks.kappa) and metric (κ_SRME, hipot.tasks.kappa_srme): the 103
phononDB-PBE structures with their own supercells and q-meshes (`ksrme_phonondb_pbe/`), all
relaxed in one batch, each compound's displaced supercells evaluated in batches, each scored
against the DFT mode-resolved kappa (2 for a failure). Beside it the published HIENet's
per-compound κ and κ_SRME from `mbd_kappa103/` (its file carries κ_SRME per compound), both at
0.01 A displacements. SRE = 2|k - k_DFT| / (k + k_DFT) is shown beside, never compared with an
SRME. `opts.only['kappa']` names a subset (mp ids or formulas); with `opts.scratch` each finished
compound is kept, so an interrupted run continues."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from ..io import write_json
from ..tasks.kappa import QUICK, KappaSettings, conductivity, describe, relax_for_kappa
from ..tasks.kappa_srme import score
from .common import Options, log, num, pick
from .data import load_kappa103_published, load_kappa103_summary
from .metrics import symmetric_relative_deviation, symmetric_relative_error
from .models import ModelHandle
from .phonondb_pbe import load_reference, load_structures, select

# Matbench Discovery's key of each model whose published kappa results are shipped
PUBLISHED_KEY = {"hienet-v3": "hienet", "hienet-v3-smooth": "hienet", "chgnet": "chgnet-0.3.0"}
PUBLISHED_DISPLACEMENT = {"hienet": 0.01}  # A: the published HIENet run (models/hienet/ κ script)


def settings(quick: bool) -> KappaSettings:
    return QUICK if quick else KappaSettings()


def chosen(structures: list, handle: ModelHandle, opts: Options) -> list:
    names = opts.only.get("kappa")
    if names:
        return select(structures, names)
    return [structures[i] for i in pick(structures, "kappa", handle, opts)]


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    structures = chosen(load_structures(opts.data_dir), handle, opts)
    reference = load_reference(opts.data_dir)
    s = settings(opts.quick)
    done: dict[str, dict] = {}
    if opts.scratch is not None and opts.scratch.is_dir():
        for f in opts.scratch.glob("*.json"):
            item = json.loads(f.read_text())
            done[item["mp_id"]] = item
    todo = [a for a in structures if a.info["mp_id"] not in done]
    model = handle.relax_target()
    if done:
        log(f"kappa: {handle.name}: {len(done)} compounds kept from {opts.scratch}")
    log(f"kappa: {handle.name}: relaxing {len(todo)} structures ({describe(s)}: {s.relax_optimizer}, symmetry kept, "
        f"shear masked, fmax {s.relax_fmax:g} eV/A, <= {s.relax_steps} steps)")
    relaxed = relax_for_kappa(todo, model, s, batch_size=opts.batch_size, progress=True) if todo else []
    for k, (a, r) in enumerate(zip(todo, relaxed)):
        ref = reference[a.info["mp_id"]]
        item = {"mp_id": a.info["mp_id"], "formula": a.info["name"], "spacegroup_dft": int(a.info["symm.no"]),
                "kappa_dft": float(ref["kappa_ave"][0])}
        try:
            res = conductivity(r, model, s, batch_size=opts.batch_size)
            score(res, ref)
            item.update(res.to_dict())
            item["kappa_300"] = res.kappa_ave[0] if res.kappa_ave else None
        except Exception as exc:  # noqa: BLE001 (one compound failing must not lose the others; it scores 2)
            item.update(kappa_300=None, kappa_srme=2.0, failure=f"{type(exc).__name__}: {exc}")
        done[item["mp_id"]] = item
        if opts.scratch is not None:
            write_json(opts.scratch / f"{item['mp_id']}.json", item)
        log(f"kappa: {handle.name}: {item['formula']} ({item['mp_id']}, {k + 1}/{len(todo)}): kappa "
            f"{item['kappa_300'] if item['kappa_300'] is None else round(item['kappa_300'], 3)} W/mK "
            f"(DFT {item['kappa_dft']:.3f}), κ_SRME {item['kappa_srme']:.3f}"
            f"{'; ' + item['failure'] if item.get('failure') else ''}")
    items = [done[a.info["mp_id"]] for a in structures]
    return {"settings": {"protocol": describe(s), **dataclasses.asdict(s), "n": len(items)}, "items": items}


def failed(item: dict[str, Any]) -> bool:
    """The benchmark's failures (κ_SRME 2): no kappa, imaginary modes, broken symmetry."""
    return (item.get("kappa_300") is None or bool(item.get("failure")) or bool(item.get("has_imaginary"))
            or bool(item.get("broken_symmetry")))


def per_compound(items: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kappa or NaN for failures, SRE, SRD) of each item."""
    k = np.array([np.nan if failed(it) else num(it["kappa_300"]) for it in items], float)
    t = np.array([it["kappa_dft"] for it in items], float)
    return k, symmetric_relative_error(k, t), symmetric_relative_deviation(k, t)


def published(data_dir, key: str, ids: list[str]) -> dict[str, Any] | None:
    """A published model's per-compound kappa and κ_SRME (as its file gives them) on the compounds
    `ids`, with their means and its SRE (None if not shipped)."""
    pub = load_kappa103_published(data_dir).get(key)
    if pub is None:
        return None
    base = load_kappa103_summary(data_dir)
    where = {m: i for i, m in enumerate(base["material_ids"])}
    sel = [where[m] for m in ids if m in where]
    k = np.array([np.nan if pub["kappa_ml"][i] is None else pub["kappa_ml"][i] for i in sel], float)
    t = np.array([base["kappa_dft"][i] for i in sel], float)
    srme = [float(pub["srme"][i]) for i in sel]
    return {"label": pub["label"], "n": len(sel), "ids": [base["material_ids"][i] for i in sel], "kappa": k.tolist(),
            "srme": srme, "srme_mean": float(np.mean(srme)) if sel else float("nan"),
            "sre_mean": float(np.mean(symmetric_relative_error(k, t))) if sel else float("nan"),
            "failures": int(np.sum(~np.isfinite(k))), "displacement": PUBLISHED_DISPLACEMENT.get(key)}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if ids is None or it["mp_id"] in ids]
    k, sre, srd = per_compound(items)
    srme = np.array([2.0 if it.get("kappa_srme") is None else float(it["kappa_srme"]) for it in items])
    return {"n": len(items), "srme_mean": float(np.mean(srme)) if items else float("nan"),
            "sre_mean": float(np.mean(sre)) if items else float("nan"),
            "srd_mean": float(np.mean(srd)) if items else float("nan"),
            "failures": int(np.sum(~np.isfinite(k))), "imaginary": int(sum(bool(it.get("has_imaginary")) for it in items)),
            "broken_symmetry": int(sum(bool(it.get("broken_symmetry")) for it in items)),
            "max_steps": int(sum(bool(it.get("max_steps")) for it in items)),
            "cutoff_warnings": int(sum(bool(it.get("warnings")) for it in items))}
