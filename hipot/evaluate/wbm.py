"""WBM-972: relax, formation energy, stability classification and RMSD against DFT."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .common import Options, log, pick
from .data import WBMEntry, element_refs, load_wbm
from .metrics import bootstrap_mae_ci, classification, regression
from .models import ModelHandle, relax_structures, single_points

FMAX, STEPS = 0.05, 500   # Matbench Discovery: FIRE + FrechetCellFilter, fmax 0.05 eV/A, at most 500 steps


def formation_energy(energy: float, entry: WBMEntry, mu: dict[str, float], add_correction: bool) -> float:
    """Formation energy per atom from a total energy: + the label's MP2020 correction (the
    corrections depend on composition/oxidation states only, so the DFT entry's value is reused),
    - the DFT elemental chemical potentials."""
    counts = Counter(entry.atoms.get_chemical_symbols())
    n = len(entry.atoms)
    e = energy + (entry.correction if add_correction else 0.0)
    return (e - sum(mu[el] * c for el, c in counts.items())) / n


def dft_hull_distances(entries: list[WBMEntry], mu: dict[str, float]) -> list[float]:
    """Each entry's DFT distance (eV/atom) to the convex hull of the elemental references and the
    OTHER WBM-972 entries of its chemical system (negative: below that hull). This is the only hull
    the shipped data allow; Matbench Discovery uses the full MP hull (not shipped)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    comps = [Composition(dict(Counter(e.atoms.get_chemical_symbols()))) for e in entries]
    # PDEntry energies: corrected total energy relative to the elemental refs (= n * e_form)
    pd_entries = [PDEntry(c, e.e_form * c.num_atoms, name=e.material_id) for c, e in zip(comps, entries)]
    out = []
    for k, (c, entry) in enumerate(zip(comps, pd_entries)):
        els = set(c.elements)
        others = [p for j, p in enumerate(pd_entries) if j != k and set(p.composition.elements) <= els]
        refs = [PDEntry(Composition(el.symbol), 0.0) for el in els]
        pd = PhaseDiagram(refs + others)
        out.append(float(pd.get_decomp_and_e_above_hull(entry, allow_negative=True)[1]))
    return out


_HULL: dict[str, list[float]] = {}


def _hull_cached(data_dir) -> list[float]:
    """The DFT hull distances depend on the data only: computed once per process."""
    key = str(data_dir)
    if key not in _HULL:
        _HULL[key] = dft_hull_distances(load_wbm(data_dir), element_refs(data_dir))
    return _HULL[key]


def rmsd(relaxed, reference) -> float:
    """pymatgen StructureMatcher RMS displacement, normalised by (V/n)^(1/3); NaN if no match."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    a = AseAtomsAdaptor.get_structure(relaxed)
    b = AseAtomsAdaptor.get_structure(reference)
    res = StructureMatcher().get_rms_dist(a, b)
    return float(res[0]) if res is not None else float("nan")


def _rmsd_job(pair) -> float:
    try:
        return rmsd(*pair)
    except Exception:  # a failed match is a missing value, not a failed benchmark
        return float("nan")


def rmsd_many(pairs: list, workers: int | None = None) -> list[float]:
    """RMSDs in parallel processes (StructureMatcher takes ~0.1 s a structure). Forked workers
    only run pymatgen, never torch/CUDA."""
    import multiprocessing
    import os

    import pymatgen.analysis.structure_matcher  # noqa: F401  (ImportError here, not in the workers)

    workers = workers or min(16, os.cpu_count() or 1)
    if workers <= 1 or len(pairs) < 16:
        return [_rmsd_job(p) for p in pairs]
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            # a generous timeout: a wedged worker must cost minutes, not the whole run
            return pool.map_async(_rmsd_job, pairs, chunksize=4).get(timeout=60 + 2.0 * len(pairs))
    except Exception as e:  # noqa: BLE001 (timeout or a pool failure: fall back to one process)
        from .common import log

        log(f"wbm: parallel RMSD failed ({e!r}); computing serially")
        return [_rmsd_job(p) for p in pairs]


def run(handle: ModelHandle, opts: Options) -> dict[str, Any]:
    entries = load_wbm(opts.data_dir)
    mu = element_refs(opts.data_dir)
    idx = pick([e.atoms for e in entries], "wbm", handle, opts)
    log(f"wbm: {handle.name}: hull distances of the DFT labels ({len(entries)} entries)")
    try:
        hull = _hull_cached(opts.data_dir)
    except ImportError:
        hull = [None] * len(entries)   # filled in when the report is written where pymatgen is installed
        log("wbm: pymatgen missing: hull distances left to the report step")
    chosen = [entries[i] for i in idx]
    log(f"wbm: {handle.name}: single points at the DFT geometries ({len(chosen)} structures)")
    static = single_points(handle, [e.atoms for e in chosen], batch_size=opts.batch_size)
    log(f"wbm: {handle.name}: relaxing {len(chosen)} structures (FIRE + FrechetCellFilter, fmax {FMAX}, <= {STEPS} steps)")
    relaxed = relax_structures(handle, [e.atoms for e in chosen], fmax=FMAX, steps=STEPS, relax_cell=True,
                               batch_size=opts.batch_size, progress=True)
    log(f"wbm: {handle.name}: RMSD of {len(chosen)} relaxed structures against DFT (StructureMatcher)")
    try:
        rmsds = rmsd_many([(r.atoms, e.atoms) for r, e in zip(relaxed, chosen)])
    except ImportError:
        rmsds = [None] * len(chosen)   # computed by the report step from the stored relaxed structures
        log("wbm: pymatgen missing: RMSD left to the report step")
    items = []
    add_corr = not handle.energy_includes_mp2020
    for k, (i, e, s, r, d) in enumerate(zip(idx, chosen, static, relaxed, rmsds)):
        items.append({
            "material_id": e.material_id, "formula": e.formula, "n_atoms": len(e.atoms),
            "e_form_dft": e.e_form, "correction_per_atom": e.correction / len(e.atoms), "e_hull_dft": hull[i],
            "e_form_static": formation_energy(float(s["energy"]), e, mu, add_corr),
            "e_form_relaxed": formation_energy(r.energy, e, mu, add_corr),
            "energy_relaxed": r.energy, "steps": r.steps, "converged": r.converged, "fmax": r.fmax,
            "rmsd": d, "volume_change": float(r.atoms.get_volume() / e.atoms.get_volume() - 1.0),
            # the relaxed structure (same atom order as the DFT one): RMSD can be recomputed from the raw file
            "relaxed_cell": np.round(r.atoms.cell.array, 6).tolist(),
            "relaxed_positions": np.round(r.atoms.positions, 6).tolist(),
        })
    log(f"wbm: {handle.name}: done")
    return {"settings": {"fmax": FMAX, "steps": STEPS, "optimizer": "FIRE", "cell_filter": "FrechetCellFilter",
                         "n": len(items), "energy_includes_mp2020": handle.energy_includes_mp2020},
            "items": items}


def summarize(raw: dict[str, Any], ids: set[str] | None = None) -> dict[str, Any]:
    """Scores over all items (or only those whose material_id is in `ids`)."""
    items = [it for it in raw["items"] if ids is None or it["material_id"] in ids]
    e_dft = np.array([it["e_form_dft"] for it in items])
    out: dict[str, Any] = {"n": len(items)}
    for key in ("relaxed", "static"):
        pred = np.array([it[f"e_form_{key}"] for it in items])
        out[f"e_form_{key}"] = regression(pred, e_dft)
        out[f"e_form_{key}"]["mae_ci95"] = bootstrap_mae_ci(pred, e_dft)
        hull = np.array([np.nan if it["e_hull_dft"] is None else it["e_hull_dft"] for it in items], float)
        # Matbench Discovery: predicted hull distance = DFT hull distance + (model - DFT) formation energy
        out[f"class_{key}"] = classification(hull + pred - e_dft, hull)
    rm = np.array([np.nan if it["rmsd"] is None else it["rmsd"] for it in items], float)
    out["rmsd_mean"] = float(np.nanmean(rm)) if np.isfinite(rm).any() else float("nan")
    out["rmsd_unmatched"] = int(np.sum(~np.isfinite(rm)))
    out["converged"] = int(sum(bool(it["converged"]) for it in items))
    out["steps_mean"] = float(np.mean([it["steps"] for it in items])) if items else float("nan")
    out["volume_change_mae"] = float(np.mean(np.abs([it["volume_change"] for it in items]))) if items else float("nan")
    return out


def complete(raw: dict[str, Any], data_dir) -> bool:
    """Fill in what a run without pymatgen left open (hull distances, RMSDs: stored as null),
    from the data and the stored relaxed structures. Returns whether anything changed."""
    items = raw.get("items", [])
    need_hull = [it for it in items if it.get("e_hull_dft", 0) is None]
    need_rmsd = [it for it in items if it.get("rmsd", 0) is None and "relaxed_positions" in it]
    if not (need_hull or need_rmsd):
        return False
    try:
        import pymatgen.core  # noqa: F401
    except ImportError:
        return False
    entries = load_wbm(data_dir)
    by_id = {e.material_id: e for e in entries}
    if need_hull:
        hull = dict(zip((e.material_id for e in entries), _hull_cached(data_dir)))
        for it in need_hull:
            it["e_hull_dft"] = hull[it["material_id"]]
    if need_rmsd:
        pairs = []
        for it in need_rmsd:
            ref = by_id[it["material_id"]].atoms
            relaxed = ref.copy()
            relaxed.set_cell(np.array(it["relaxed_cell"]))
            relaxed.positions = np.array(it["relaxed_positions"])
            pairs.append((relaxed, ref))
        for it, d in zip(need_rmsd, rmsd_many(pairs)):
            it["rmsd"] = d
    return True
