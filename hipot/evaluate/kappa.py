"""Lattice thermal conductivity of the Matbench Discovery kappa-103 compounds (rocksalt,
zincblende, wurtzite binaries) against phononDB-PBE DFT, by `hipot.tasks.kappa` (the Matbench
Discovery protocol). Structures: `data.load_kappa103` (MP structures of the same ids where
shipped, else prototypes), relaxed with the model first, all in one batched relaxation; each
compound's displaced supercells are evaluated in batches. Per compound the symmetric relative
error SRE = 2|k - k_DFT| / (k + k_DFT) (2 for a failure: imaginary modes, broken symmetry, a
relaxation that used all its steps). The mode-resolved SRME needs the DFT's mode-resolved kappa,
which is not shipped: the published HIENet SRME and SRE on the same compounds come from the
published per-compound numbers. With `opts.scratch` each finished compound is kept, so an
interrupted run continues."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from ..io import write_json
from ..tasks.kappa import QUICK, KappaSettings, conductivity, relax_for_kappa
from .common import Options, log, num, pick
from .data import load_kappa103, load_kappa103_published
from .metrics import symmetric_relative_deviation, symmetric_relative_error
from .models import ModelHandle

# Matbench Discovery's key of each model whose published kappa results are shipped
PUBLISHED_KEY = {"hienet-v3": "hienet", "hienet-v3-smooth": "hienet", "chgnet": "chgnet-0.3.0"}


QUICK_RELAX_STEPS = 50  # --quick: relaxations stop here (a smoke run, not the protocol's 300)


def settings(quick: bool) -> KappaSettings:
    return QUICK if quick else KappaSettings()


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    entries = load_kappa103(opts.data_dir)
    chosen = [entries[i] for i in pick([e.atoms for e in entries], "kappa", handle, opts)]
    s = settings(opts.quick)
    done: dict[str, dict] = {}
    if opts.scratch is not None and opts.scratch.is_dir():
        for f in opts.scratch.glob("*.json"):
            item = json.loads(f.read_text())
            done[item["mp_id"]] = item
    todo = [e for e in chosen if e.mp_id not in done]
    model = handle.relax_target()
    if done:
        log(f"kappa: {handle.name}: {len(done)} compounds kept from {opts.scratch}")
    steps = QUICK_RELAX_STEPS if opts.quick else 300
    log(f"kappa: {handle.name}: relaxing {len(todo)} structures (symmetry kept, fmax 1e-4 eV/A, <= {steps} steps)")
    relaxed = relax_for_kappa([e.atoms for e in todo], model, steps=steps, prerelax_steps=steps, symprec=s.symprec,
                              batch_size=opts.batch_size, progress=True) if todo else []
    for k, (e, r) in enumerate(zip(todo, relaxed)):
        item = {"mp_id": e.mp_id, "formula": e.formula, "spacegroup_dft": e.spacegroup, "source": e.source,
                "kappa_dft": e.kappa_dft}
        try:
            res = conductivity(r, model, s, batch_size=opts.batch_size)
            item.update(res.to_dict())
            item["kappa_300"] = res.kappa_ave[0] if res.kappa_ave else None
        except Exception as exc:  # noqa: BLE001 (one compound failing must not lose the others)
            item.update(kappa_300=None, failure=f"{type(exc).__name__}: {exc}")
        done[e.mp_id] = item
        if opts.scratch is not None:
            write_json(opts.scratch / f"{e.mp_id}.json", item)
        log(f"kappa: {handle.name}: {e.formula} ({e.mp_id}, {k + 1}/{len(todo)}): kappa "
            f"{item['kappa_300'] if item['kappa_300'] is None else round(item['kappa_300'], 3)} W/mK "
            f"(DFT {e.kappa_dft}){'; ' + item['failure'] if item.get('failure') else ''}")
    items = [done[e.mp_id] for e in chosen]
    return {"settings": {"protocol": "Matbench Discovery kappa (Pota et al. 2024) via hipot.tasks.kappa",
                         **dataclasses.asdict(s), "relax_fmax": 1e-4, "relax_steps": steps, "prerelax_fmax": 0.005,
                         "n": len(items)}, "items": items}


def failed(item: dict[str, Any]) -> bool:
    """The protocol's failures: no kappa, imaginary modes, broken symmetry, relaxation out of steps."""
    return (item.get("kappa_300") is None or bool(item.get("failure")) or bool(item.get("has_imaginary"))
            or bool(item.get("broken_symmetry")) or bool(item.get("max_steps")))


def per_compound(items: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kappa or NaN for failures, SRE, SRD) of each item."""
    k = np.array([np.nan if failed(it) else num(it["kappa_300"]) for it in items], float)
    t = np.array([it["kappa_dft"] for it in items], float)
    return k, symmetric_relative_error(k, t), symmetric_relative_deviation(k, t)


def published(data_dir, key: str, ids: list[str]) -> dict[str, Any] | None:
    """A published model's kappa, SRE and SRME on the compounds `ids` (None if not shipped)."""
    from .data import load_kappa103_summary

    pub = load_kappa103_published(data_dir).get(key)
    if pub is None:
        return None
    base = load_kappa103_summary(data_dir)
    where = {m: i for i, m in enumerate(base["material_ids"])}
    sel = [where[m] for m in ids if m in where]
    k = np.array([np.nan if pub["kappa_ml"][i] is None else pub["kappa_ml"][i] for i in sel], float)
    t = np.array([base["kappa_dft"][i] for i in sel], float)
    return {"label": pub["label"], "n": len(sel), "kappa": k.tolist(),
            "sre_mean": float(np.mean(symmetric_relative_error(k, t))) if sel else float("nan"),
            "srme_mean": float(np.mean([pub["srme"][i] for i in sel])) if sel else float("nan"),
            "failures": int(np.sum(~np.isfinite(k)))}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    items = [it for it in raw["items"] if ids is None or it["mp_id"] in ids]
    k, sre, srd = per_compound(items)
    return {"n": len(items), "sre_mean": float(np.mean(sre)) if items else float("nan"),
            "srd_mean": float(np.mean(srd)) if items else float("nan"),
            "failures": int(np.sum(~np.isfinite(k))), "imaginary": int(sum(bool(it.get("has_imaginary")) for it in items)),
            "broken_symmetry": int(sum(bool(it.get("broken_symmetry")) for it in items)),
            "max_steps": int(sum(bool(it.get("max_steps")) for it in items)),
            "cutoff_warnings": int(sum(bool(it.get("warnings")) for it in items))}
