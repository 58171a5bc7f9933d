"""Markdown report and parity plots from a raw-results folder (no model is run here)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import dcdft, diatomics, elastic, phonons, wbm
from .data import default_data_dir, load_published_metrics
from .runner import load_raw

ID_KEY = {"wbm": "material_id", "dcdft": "element", "elastic": "mp_id", "diatomics": "element"}
SUMMARIZE = {"wbm": wbm.summarize, "dcdft": dcdft.summarize, "elastic": elastic.summarize,
             "diatomics": diatomics.summarize, "phonons": phonons.summarize}
PUBLISHED_CARD = {"hienet-v3": "hienet", "sevennet-0": "sevennet-0", "chgnet": "chgnet-0.3.0"}


def f(x: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, '—' for missing/NaN."""
    if x is None:
        return "—"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "—" if not math.isfinite(x) else f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def ids_of(raw: dict[str, Any], bench: str) -> set[str]:
    key = ID_KEY[bench]
    return {it[key] for it in raw.get("items", []) if key in it and not it.get("failed")}


def common_ids(by_model: dict[str, dict[str, Any]], bench: str) -> set[str] | None:
    sets = [ids_of(r, bench) for r in by_model.values() if not r.get("error")]
    return set.intersection(*sets) if sets else None


def _pyplot():
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parity(panels: list[tuple[str, np.ndarray, np.ndarray]], xlabel: str, ylabel: str, path: Path, unit: str,
           ncols: int | None = None) -> None:
    """One parity panel per (title, dft, model) with the y = x line and the MAE in the title,
    `ncols` panels per row."""
    plt = _pyplot()
    ncols = ncols or len(panels)
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (title, t, p) in zip(axes.ravel(), panels):
        ok = np.isfinite(t) & np.isfinite(p)
        t, p = t[ok], p[ok]
        if t.size:
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            pad = 0.05 * (hi - lo or 1)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
            ax.scatter(t, p, s=8, alpha=0.6)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            title += f"\nMAE {np.mean(np.abs(p - t)):.3g} {unit}, n={t.size}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_diatomics(by_model: dict[str, dict[str, Any]], ref: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """E(r) of up to 6 dimers for every model and PBE, energies relative to the value at 6 A."""
    plt = _pyplot()
    wanted = ["H", "C", "O", "Na", "Si", "Cl", "Cu", "Fe", "Mg", "Sc", "Ti", "Zn", "Li", "N"]
    have = [el for el in wanted if all(any(it["element"] == el and not it.get("failed") for it in r.get("items", []))
                                       for r in by_model.values())]
    if not have:  # take what the first model has
        first = next(iter(by_model.values()))
        have = [it["element"] for it in first.get("items", []) if not it.get("failed")]
    have = have[:6]
    if not have:
        return
    nrow = (len(have) + 2) // 3
    fig, axes = plt.subplots(nrow, 3, figsize=(12, 3.6 * nrow), squeeze=False)
    for ax, el in zip(axes.ravel(), have):
        if el in ref:
            d, e = ref[el]["distances"], ref[el]["energies"]
            ax.plot(d, e - e[-1], "k.", ms=4, label="PBE")
        for name, raw in by_model.items():
            it = next((i for i in raw.get("items", []) if i["element"] == el and not i.get("failed")), None)
            if it is None:
                continue
            g, e = np.array(it["grid"]), np.array(it["energy_grid"])
            ax.plot(g, e - e[-1], lw=1.2, label=f"{name} (jump {it['jump_at_cutoff']:+.3f} eV)")
        ax.axvline(5.0, color="r", lw=0.8, ls="--")
        ax.set_ylim(-8, 8)
        ax.set_title(f"{el}$_2$ (red: 5 Å cutoff)", fontsize=9)
        ax.set_xlabel("distance (Å)")
        ax.set_ylabel("E − E(6 Å) (eV)")
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(have):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def write_report(raw_dir: Path, out: Path, plots: Path) -> Path:
    manifest, raws = load_raw(raw_dir)
    order = list(manifest.get("models", {}))
    raws = {b: dict(sorted(by.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
            for b, by in raws.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    plots.mkdir(parents=True, exist_ok=True)
    main = manifest.get("main_model", "")
    models = list(manifest.get("models", {}))
    # reference data for the published numbers and PBE curves: where the run read it, else the default
    data_dir = Path(manifest.get("data_dir", ""))
    if not manifest.get("data_dir") or not data_dir.is_dir():
        data_dir = default_data_dir()
    try:
        published = load_published_metrics(data_dir)
    except Exception:
        published = {}
    # steps a run left open where pymatgen/phonopy were missing (a bare GPU machine): do them here
    from .runner import raw_path, write_json

    for bench, mod in (("wbm", wbm), ("phonons", phonons)):
        for m, r in raws.get(bench, {}).items():
            if not r.get("error") and mod.complete(r, data_dir):
                write_json(raw_path(raw_dir, m, bench), r)
    prefix = "quick-" if manifest.get("quick") else ""
    L: list[str] = []
    title = "Accuracy against DFT: " + ", ".join(models)
    L += [f"# {title}", ""]
    if manifest.get("quick"):
        L += ["> **Quick run** (`--quick`): a handful of small structures per benchmark, meant to check the pipeline "
              "end to end on a CPU in minutes. The numbers below are *not* accuracy figures; "
              "see the full run for those.", ""]
    cmds = manifest.get("commands") or [manifest.get("command", "")]
    L += [f"Generated by {', then '.join(f'`{c}`' for c in cmds)} ({manifest.get('dtype', '')}; devices per model "
          f"below), started {manifest.get('started', '?')}, finished {manifest.get('finished', '?')}. "
          f"Raw per-structure results: `{_rel(raw_dir, out.parent)}/` (regenerate this file without running "
          f"anything: `hipot evaluate --report-only {_rel(raw_dir, Path.cwd())} --out {_rel(out, Path.cwd())}`). "
          "Data: `../shared/data` (each folder's PROVENANCE.md).", ""]
    rows = []
    for name, m in manifest.get("models", {}).items():
        note = "predicts MP2020-corrected energies: the label's correction is not added again" \
            if m.get("energy_includes_mp2020") else "MP2020 correction of the DFT label added to the model energy"
        src = "hipot (batched on the device)" if m["kind"] == "hipot" else "its own package's ASE calculator, one structure at a time"
        rows.append([name, m.get("version", ""), src, m.get("device", manifest.get("device", "?")),
                     f(m.get("cutoff"), 1), note])
    L += table(["model", "version", "run through", "device", "cutoff (Å)", "formation energies"], rows)
    for name, why in manifest.get("skipped", {}).items():
        L += ["", f"**{name} skipped:** {why}"]
    L += ["", "Timing per benchmark (s): " + "; ".join(
        f"{b}: " + ", ".join(f"{m} {f(r.get('seconds'), 0)}" for m, r in by.items()) for b, by in raws.items() if by), ""]

    def run_line(bench: str) -> str:
        by = raws.get(bench, {})
        def count(r: dict[str, Any]) -> int:
            items = r.get("items", [])
            return items[0].get("n_supercells", 1) if bench == "phonons" and items else len(items)
        ns = ", ".join(f"{m}: {count(r)} structures, {f(r.get('seconds'), 0)} s" for m, r in by.items())
        return (f"**Run:** {', then '.join(f'`{c}`' for c in cmds)} ({ns}); this benchmark alone: "
                f"`hipot evaluate --benchmarks {bench}` with the same options.")

    summaries = {b: {m: (SUMMARIZE[b](r) if not r.get("error") else None) for m, r in by.items()} for b, by in raws.items()}
    commons = {b: common_ids(by, b) for b, by in raws.items() if b in ID_KEY and by}
    common_sum = {b: {m: (SUMMARIZE[b](r, commons[b]) if not r.get("error") else None) for m, r in raws[b].items()}
                  for b in commons}

    # ------------------------------------------------------------------ summary
    L += ["## Summary", "",
          "Each model on the structures it was run on (n in brackets); the sections below also compare all models "
          "on the structures they share.", ""]

    def cell(b: str, m: str, getter, digits: int = 3) -> str:
        s = summaries.get(b, {}).get(m)
        if s is None:
            err = raws.get(b, {}).get(m, {}).get("error")
            return "error" if err else "—"
        try:
            return f"{f(getter(s), digits)} ({s['n']})"
        except (KeyError, TypeError):
            return "—"

    spec = [
        ("WBM formation energy MAE, relaxed (eV/atom)", "wbm", lambda s: s["e_form_relaxed"]["mae"]),
        ("WBM formation energy RMSE, relaxed (eV/atom)", "wbm", lambda s: s["e_form_relaxed"]["rmse"]),
        ("WBM formation energy R², relaxed", "wbm", lambda s: s["e_form_relaxed"]["r2"]),
        ("WBM F1 (stable vs unstable, local hull*)", "wbm", lambda s: s["class_relaxed"]["f1"]),
        ("WBM RMSD relaxed vs DFT structure (normalised)", "wbm", lambda s: s["rmsd_mean"]),
        ("dcdft V0 MAE (%)", "dcdft", lambda s: s["v0_rel_mae_pct"]),
        ("dcdft B0 MAE (GPa)", "dcdft", lambda s: s["b0"]["mae"]),
        ("MP elasticity K_VRH MAE (GPa)", "elastic", lambda s: s["k_vrh"]["mae"]),
        ("MP elasticity G_VRH MAE (GPa)", "elastic", lambda s: s["g_vrh"]["mae"]),
        ("diatomics: mean abs. energy jump at 5 Å (eV)", "diatomics", lambda s: s["jump_mean"]),
        ("diatomics: mean force sign flips (PBE curves: ~1)", "diatomics", lambda s: s["force_flips"]),
        ("Si phonons: force MAE vs PBE (eV/Å)", "phonons", lambda s: s["force_mae"]),
        ("Si phonons: frequency MAE on an 8³ mesh (THz)", "phonons", lambda s: s.get("freq_mesh_mae_thz")),
    ]
    L += table(["metric"] + models, [[label] + [cell(b, m, g) for m in models] for label, b, g in spec])
    L += ["", "\\* against the hull of the elemental references and the other WBM-972 entries only (section 1).", ""]

    # ------------------------------------------------------------------ 1 WBM
    L += ["## 1. WBM-972: relaxation, formation energy, stability, RMSD", "", run_line("wbm"), "",
          "**Data:** `matcalc_benchmarks/wbm-random-pbe52-equilibrium-2025.1.json.gz` — 972 random WBM structures, "
          "**DFT-relaxed** (the unrelaxed WBM inputs are not shipped), with PBE/PBE+U total energies and MP2020-corrected "
          "formation energies. Elemental references: lowest MP-PBE polymorph energy per element "
          "(`matcalc_benchmarks/MP-PBE-Element-Refs.json.gz`); these reproduce the file's formation energies to 1e-8 eV/atom. "
          "(The 2023 Matbench-Discovery entries in `mp_elemental_refs/` differ by up to 0.06 eV/atom for a few elements, "
          "so they would not reproduce the labels; they are not used.)", "",
          "**Protocol:** each structure relaxed from the DFT geometry with FIRE + FrechetCellFilter, fmax 0.05 eV/Å, at most "
          "500 steps (Matbench Discovery settings). Formation energy = (E_model + C_MP2020 − Σ n_i μ_i)/N with the DFT "
          "elemental μ_i and the label's own MP2020 correction C (corrected − uncorrected DFT energy; MP2020 corrections "
          "depend on composition and oxidation states, not on the energy, so the DFT entry's value is the one pymatgen's "
          "MaterialsProject2020Compatibility would give the model's entry for the same structure and POTCAR settings). "
          "CHGNet predicts corrected energies (it was trained on MP2020-corrected MPtrj energies), so C is not added to it "
          "(checked on 8 WBM entries with corrections above 0.3 eV/atom: CHGNet's energies lie within 0.05 eV/atom of "
          "the corrected DFT energies and 0.3–0.4 eV/atom below the uncorrected ones, while SevenNet-0 and HIENet-V3 "
          "follow the uncorrected ones). "
          "'static' = the same at the DFT geometry, no relaxation. "
          "RMSD: pymatgen `StructureMatcher().get_rms_dist` (default tolerances) between the relaxed and the DFT structure, "
          "normalised by (V/N)^(1/3).", "",
          "**Stability:** DFT hull distance of each entry = distance to the convex hull of the elemental references and the "
          "*other* WBM-972 entries of its chemical system (pymatgen PhaseDiagram, negative below that hull). The MP convex "
          "hull used by Matbench Discovery is not shipped, so this hull is far sparser: most entries lie below it "
          "(prevalence of 'stable' ≈ 0.87 here vs ≈ 0.17 in WBM), which makes F1 high and DAF close to 1 for any model "
          "that gets the sign of the formation energy right; the classification numbers below are therefore **not** "
          "comparable to the leaderboard F1/DAF. Predicted hull distance = DFT hull distance + (model − DFT) formation "
          "energy, as Matbench Discovery computes it; stable means ≤ 0.", ""]
    by = raws.get("wbm", {})
    for m, r in by.items():
        if r.get("error"):
            L += [f"**{m}: error** `{r['error']}`", ""]
    if by:
        def wbm_rows(sums: dict[str, Any]) -> list[list[str]]:
            rows = []
            for m, s in sums.items():
                if s is None:
                    continue
                er, es, c = s["e_form_relaxed"], s["e_form_static"], s["class_relaxed"]
                ci = er.get("mae_ci95", (float("nan"),) * 2)
                rows.append([m, s["n"], f"{f(er['mae'])} [{f(ci[0])}, {f(ci[1])}]", f(er["rmse"]), f(er["r2"]), f(es["mae"]), f(c["f1"]),
                             f(c["precision"]), f(c["recall"]), f(c["daf"]), f(s["rmsd_mean"], 4),
                             f"{s['converged']}/{s['n']}", f(s["steps_mean"], 1)])
            return rows
        hdr = ["model", "n", "MAE relaxed (eV/atom) [95 % CI]", "RMSE", "R²", "MAE static", "F1", "precision", "recall", "DAF",
               "RMSD", "converged", "mean steps"]
        c_ids = commons.get("wbm")
        L += [f"On the {len(c_ids or [])} structures all models were run on:", ""]
        L += table(hdr, wbm_rows(common_sum.get("wbm", {})))
        L += ["", "Each model on all its structures:", ""]
        L += table(hdr, wbm_rows(summaries.get("wbm", {})))
        L += [""]
        panels = []
        for m, r in by.items():
            if r.get("error"):
                continue
            t = np.array([it["e_form_dft"] for it in r["items"]], float)
            p = np.array([it["e_form_relaxed"] for it in r["items"]], float)
            panels.append((m, t, p))
        if panels:
            png = plots / f"{prefix}wbm_formation_energy.png"
            parity(panels, "DFT formation energy (eV/atom)", "model (eV/atom)", png, "eV/atom")
            L += [f"![WBM formation energy parity]({_rel(png, out.parent)})", ""]
    pub_rows = []
    for m in models:
        card = published.get(PUBLISHED_CARD.get(m, m))
        if not card:
            continue
        d = card.get("metrics", {}).get("discovery", {}).get("full_test_set", {})
        geo = card.get("metrics", {}).get("geo_opt", {}).get("symprec=1e-2", {})
        pub_rows.append([m, f(d.get("MAE")), f(d.get("RMSE")), f(d.get("R2")), f(d.get("F1")), f(d.get("DAF")),
                         f(geo.get("rmsd"), 4)])
    if pub_rows:
        L += ["Published Matbench Discovery numbers (`mbd_model_metrics/`, full WBM test set of 257k structures, "
              "relaxed from the *unrelaxed* WBM inputs, MP hull), for context only:", ""]
        L += table(["model", "MAE (eV/atom)", "RMSE", "R²", "F1", "DAF", "RMSD"], pub_rows)
        L += [""]
    L += ["**Where the official HIENet numbers are expected to differ, and why:** (1) starting from the DFT-relaxed "
          "geometry makes relaxation short and the RMSD small (the leaderboard RMSD of 0.0795 Å-normalised starts from "
          "the WBM prototypes, before any DFT relaxation); (2) 972 random structures vs 257k: the bootstrap 95 % interval of "
          "the MAE is in the table; (3) classification uses a local hull (see above), so F1/DAF are not comparable; (4) the labels are Matbench Discovery's own WBM DFT energies (matcalc took them from the Matbench-Discovery "
          "release, PBE PAW 52 per its README), so labels are not a source of difference; formation-energy errors do "
          "not depend on the elemental references either, since model and DFT use the same μ_i; "
          "(5) hipot reproduces "
          "the official model to float32 round-off, so single-point energies equal the official code's.", ""]

    # ------------------------------------------------------------------ 2 dcdft
    L += ["## 2. dcdft: equation of state of 71 elemental crystals vs all-electron PBE", "", run_line("dcdft"), "",
          "**Data:** `ase_collections/dcdft.json` (Delta-test primitive cells; WIEN2k PBE V0, B0, B1). "
          "**Protocol:** the Delta test's: the cell scaled isotropically to 11 volumes from 94 % to 106 % of the WIEN2k "
          "V0, fractional coordinates fixed, no spin, third-order Birch–Murnaghan fit (E cubic in V^(−2/3)). "
          "Errors of V0 in % and B0 in GPa; elements whose fitted minimum falls outside the sampled range are counted "
          "(their V0/B0 are extrapolations). The initial magnetic moments of Fe, Co, Ni, Cr, Mn, O are dropped: none of "
          "the models has a spin input. Noble-gas solids (He–Rn) are bound by dispersion, which PBE lacks; their "
          "reference B0 is < 1 GPa and their V0 errors dominate the relative MAE.", ""]
    by = raws.get("dcdft", {})
    if by:
        rows = []
        for label, sums in (("common", common_sum.get("dcdft", {})), ("own", summaries.get("dcdft", {}))):
            for m, s in sums.items():
                if s is None:
                    continue
                rows.append([m, label, s["n"], f(s["v0_rel_mae_pct"], 2), f(s["v0_rel_median_pct"], 2),
                             f(s["v0"]["mae"], 3), f(s["b0"]["mae"], 1), f(s["b0_rel_median_pct"], 1),
                             s["v0_outside_range"]])
        L += table(["model", "structures", "n", "V0 MAE (%)", "V0 median abs. error (%)", "V0 MAE (Å³/atom)",
                    "B0 MAE (GPa)", "B0 median abs. error (%)", "no minimum within ±6 % or failed"], rows)
        L += [""]
        panels_v, panels_b = [], []
        for m, r in by.items():
            if r.get("error"):
                L += [f"**{m}: error** `{r['error']}`", ""]
                continue
            it = r["items"]
            panels_v.append((f"{m}: V0", np.array([i["v0_ref"] for i in it]), np.array([i["v0"] for i in it], float)))
            panels_b.append((f"{m}: B0", np.array([i["b0_ref"] for i in it]), np.array([i["b0"] for i in it], float)))
        if panels_v:
            png = plots / f"{prefix}dcdft_v0.png"
            parity(panels_v, "WIEN2k PBE V0 (Å³/atom)", "model V0 (Å³/atom)", png, "Å³/atom")
            png2 = plots / f"{prefix}dcdft_b0.png"
            parity(panels_b, "WIEN2k PBE B0 (GPa)", "model B0 (GPa)", png2, "GPa")
            L += [f"![dcdft V0 parity]({_rel(png, out.parent)})", f"![dcdft B0 parity]({_rel(png2, out.parent)})", ""]
        worst = []
        for m, r in by.items():
            if r.get("error"):
                continue
            errs = sorted(((abs(i["v0"] / i["v0_ref"] - 1) * 100 if math.isfinite(i["v0"]) else float("inf"), i["element"])
                           for i in r["items"]), reverse=True)[:5]
            worst.append(f"{m}: " + ", ".join(f"{el} {f(e, 1)} %" for e, el in errs))
        L += ["Largest V0 errors: " + "; ".join(worst) + ".", "",
              "**Expected differences:** MPtrj is PBE/PBE+U with MP's PAW settings, the reference is all-electron PBE "
              "without +U; PBE codes agree on V0 to ~0.1–1 %, so model errors beyond ~1 % are the model's. The official "
              "HIENet has no published dcdft number.", ""]

    # ------------------------------------------------------------------ 3 elasticity
    L += ["## 3. MP elasticity: bulk and shear moduli", "", run_line("elastic"), "",
          "**Data:** `matcalc_benchmarks/mp-binary-pbe-elasticity-2025.1.json.gz` (3953 MP binaries, DFT K_VRH and "
          "G_VRH ≤ 500 GPa); a seeded random subset (first N of one permutation, seed 0; the peers' subset is a prefix "
          "of the same order). **Protocol:** relax cell and ions (FIRE + FrechetCellFilter, fmax 0.05 eV/Å), then 6 "
          "Voigt strains × (±0.5 %, ±1 %) (engineering shear), ions relaxed at fixed cell (FIRE, fmax 0.05 eV/Å, ≤ 200 "
          "steps), stress–strain slopes by least squares through the 5 points of each strain (unstrained included), "
          "C symmetrised, Voigt–Reuss–Hill K and G. This is close to MP's DFT workflow (±0.5/1 % strains, ionic "
          "relaxation) and to matcalc's ElasticityCalc; MP's own fit is in pymatgen.", ""]
    by = raws.get("elastic", {})
    if by:
        rows = []
        for label, sums in (("common", common_sum.get("elastic", {})), ("own", summaries.get("elastic", {}))):
            for m, s in sums.items():
                if s is None:
                    continue
                rows.append([m, label, s["n"], f(s["k_vrh"]["mae"], 1), f(s["k_vrh_median_ae"], 1), f(s["k_vrh"]["r2"], 2),
                             f(s["g_vrh"]["mae"], 1), f(s["g_vrh_median_ae"], 1), f(s["g_vrh"]["r2"], 2), s["failed"]])
        L += table(["model", "structures", "n", "K_VRH MAE (GPa)", "K median AE", "K R²", "G_VRH MAE (GPa)",
                    "G median AE", "G R²", "failed"], rows)
        L += [""]
        kp, gp = [], []
        for m, r in by.items():
            if r.get("error"):
                L += [f"**{m}: error** `{r['error']}`", ""]
                continue
            it = r["items"]
            kp.append((f"{m}: K_VRH", np.array([i["k_vrh_ref"] for i in it]), np.array([i["k_vrh"] for i in it], float)))
            gp.append((f"{m}: G_VRH", np.array([i["g_vrh_ref"] for i in it]), np.array([i["g_vrh"] for i in it], float)))
        if kp:
            png = plots / f"{prefix}elastic_moduli.png"
            parity(kp + gp, "MP DFT (GPa)", "model (GPa)", png, "GPa", ncols=len(kp))
            L += [f"![elastic moduli parity]({_rel(png, out.parent)})", ""]
        L += ["**Expected differences:** MPtrj-trained models are known to underestimate moduli (softened PES from "
              "near-equilibrium-poor training data); MP's own DFT values carry fitting noise for soft or unstable "
              "cells. No official HIENet elasticity number is published.", ""]

    # ------------------------------------------------------------------ 4 diatomics
    L += ["## 4. Homonuclear diatomics: smoothness and the 5 Å cutoff", "", run_line("diatomics"), "",
          "**Data:** `mbd_diatomics/diatomics-dft.json.gz` (PBE curves, MP24-style VASP settings, PBE_64 POTCARs — not "
          "MPtrj's settings, so only shapes are compared). **Protocol:** each X2 dimer in a 30 Å periodic box; energies "
          "and forces on a 0.05 Å grid from 0.5 to 6 Å; the jump is E(r_c + 1e-4 Å) − E(r_c − 1e-4 Å) at the model's "
          "cutoff (5 Å for all three); force sign flips (and flips of dE between grid points) count sign changes of the radial force along "
          "the grid from 0.8 × the PBE bond length outwards, ignoring |F| < 0.01 eV/Å (a physical curve has one: "
          "repulsive inside the minimum, attractive outside, zero beyond the cutoff); the force total variation "
          "sums |ΔF| over the same points; energy error vs PBE with both curves referenced to their value at the largest "
          "PBE distance (6 Å); bond length error = distance of the minimum on the PBE distance grid.", ""]
    by = raws.get("diatomics", {})
    if by:
        rows = []
        for label, sums in (("common", common_sum.get("diatomics", {})), ("own", summaries.get("diatomics", {}))):
            for m, s in sums.items():
                if not s or not s.get("n"):
                    continue
                rows.append([m, label, s["n"], f(s["jump_mean"]), f(s["jump_median"]),
                             f"{f(s['jump_max'])} ({s['jump_max_element']})", f"{s['jump_over_10meV']}/{s['n']}",
                             f(s.get("force_jump_mean")), f(s["force_flips"], 2), f(s["energy_diff_flips"], 2), f(s["force_total_variation"], 0),
                             f(s["energy_mae_vs_pbe"]), f(s["bond_length_error"]), f(s["well_depth_error"])])
        L += table(["model", "structures", "n", "mean abs. jump (eV)", "median abs. jump", "max abs. jump", "abs. jump > 10 meV",
                    "mean abs. force jump (eV/Å)", "force flips", "dE flips", "force total variation (eV/Å)", "E MAE vs PBE (eV)", "bond length error (Å)",
                    "well depth error (eV)"], rows)
        L += [""]
        main_sum = summaries.get("diatomics", {}).get(main)
        if main_sum and main_sum.get("n") and main_sum["jump_mean"] <= 1e-3:
            L += [f"{main}: no energy discontinuity at its cutoff (mean |jump| {f(main_sum['jump_mean'], 5)} eV).", ""]
        elif main_sum and main_sum.get("n"):
            L += [f"**{main} has an energy discontinuity at its 5 Å cutoff**: mean |jump| {f(main_sum['jump_mean'])} eV "
                  f"over {main_sum['n']} dimers, up to {f(main_sum['jump_max'])} eV ({main_sum['jump_max_element']}2). "
                  "This is how the HIENet architecture behaves, and the official HIENet-V3 with it (hipot reproduces it on purpose): its invariant attention layer "
                  "sums messages built from the neighbour's features and an edge bias that do not vanish at the "
                  "cutoff (design spec §4, §9.1). The forces on the two sides agree (the radial basis and its derivatives vanish at "
                  "the cutoff, see the force-jump column), so optimizers and MD see a continuous force field, but that "
                  "field is not the gradient of the reported energy across 5 Å: total energy jumps whenever a pair "
                  "crosses the cutoff (steps in E–V curves, apparent NVE energy drift, errors in energy differences "
                  "between structures with neighbours just inside and just outside 5 Å). The published Matbench-Discovery diatomic energy_jump for HIENet is listed below; "
                  "its definition (summed over jumps detected along the curve) differs from the single-point jump here.", ""]
        dft = {}
        try:
            from .data import load_diatomics
            dft = load_diatomics(data_dir)
        except Exception:
            pass
        png = plots / f"{prefix}diatomics.png"
        plot_diatomics({m: r for m, r in by.items() if not r.get("error")}, dft, png)
        if png.exists():
            L += [f"![diatomic curves]({_rel(png, out.parent)})", ""]
        card = published.get("hienet", {}).get("metrics", {}).get("diatomics", {})
        if card:
            L += ["Published Matbench-Discovery diatomic metrics of HIENet (their definitions): " + ", ".join(
                f"{k} {card[k]}" for k in ("energy_jump", "force_flips", "energy_diff_flips", "tortuosity",
                                           "pbe_energy_mae", "pbe_bond_length_error") if k in card) + ".", ""]

    # ------------------------------------------------------------------ 5 phonons
    L += ["## 5. Phonons and thermal conductivity", "", run_line("phonons"), "",
          "**Data:** `phono3py_examples/Si-PBE` — diamond Si, 2×2×2 conventional supercell (64 atoms), 111 displaced "
          "supercells (1 single + 110 pair displacements of 0.03 Å) with VASP PBE forces. **Protocol:** model forces on "
          "the same displaced supercells (at the PBE lattice constant 5.466 Å, not the model's own); force MAE over "
          "all components; harmonic frequencies from the single-displacement supercell with phonopy (the model's forces "
          "on the undisplaced cell subtracted first), compared with phonopy on the PBE forces on an 8×8×8 mesh and at "
          "Γ, X, L.", ""]
    by = raws.get("phonons", {})
    if by:
        rows = []
        for m, s in summaries.get("phonons", {}).items():
            if s is None:
                continue
            pts = lambda name: " / ".join(f(x, 2) for x in sorted(set(np.round(s.get(name, []), 2)))) if s.get(name) else "—"
            rows.append([m, s["n"], f(s["force_mae"], 4), f(s["force_rmse"], 4), f(s["force_r2"], 4),
                         f(s["perfect_max_force"], 4), f(s.get("freq_mesh_mae_thz"), 3),
                         pts("Gamma_model"), pts("X_model"), pts("L_model")])
        first = next((s for s in summaries.get("phonons", {}).values() if s and s.get("Gamma_dft")), None)
        if first:
            pts = lambda name: " / ".join(f(x, 2) for x in sorted(set(np.round(first.get(name, []), 2))))
            rows.append(["PBE (VASP)", "", "", "", "", "", "", pts("Gamma_dft"), pts("X_dft"), pts("L_dft")])
        L += table(["model", "supercells", "force MAE (eV/Å)", "force RMSE", "force R²",
                    "max abs. force, undisplaced cell", "freq. MAE 8³ mesh (THz)", "Γ (THz)", "X (THz)", "L (THz)"], rows)
        L += [""]
        panels = []
        for m, r in by.items():
            it = (r.get("items") or [{}])[0]
            if "freq_model" in it:
                panels.append((m, np.array(it["freq_dft"]["mesh"]), np.array(it["freq_model"]["mesh"])))
        if panels:
            png = plots / f"{prefix}phonons_si.png"
            parity(panels, "PBE frequency (THz)", "model frequency (THz)", png, "THz")
            L += [f"![Si phonon frequencies, 8x8x8 mesh]({_rel(png, out.parent)})", ""]
    kappa_note = ("**Thermal conductivity (κ_SRME) is not evaluated.** `mbd_kappa103/kappa-103-analysis.jsonl` holds the "
                  "DFT κ values of the 103 phononDB compounds but not their structures or force sets, phono3py is not a "
                  "dependency, and the only PBE third-order force set shipped (Si-PBE) is a single compound. The "
                  "published κ_SRME values are listed for context.")
    L += [kappa_note, ""]
    rows = []
    for m in models:
        card = published.get(PUBLISHED_CARD.get(m, m), {})
        k = card.get("metrics", {}).get("phonons", {}).get("kappa_103", {}) if card else {}
        if k:
            rows.append([m, f(k.get("κ_SRME", k.get("kappa_SRME")), 3)])
    if rows:
        L += table(["model", "published κ_SRME (lower is better)"], rows) + [""]

    # ------------------------------------------------------------------ differences
    L += ["## Differences from the official protocols (all benchmarks)", "",
          "- WBM: DFT-relaxed starting structures instead of the unrelaxed WBM inputs; 972 random structures instead of "
          "257k; local hull instead of the MP hull; MP2020 corrections taken from the labels instead of recomputed by "
          "pymatgen; elemental references from matcalc's MP-PBE file (the ones the labels were made with).",
          "- Peers run through their packages' ASE calculators one structure at a time, on documented prefixes of the same "
          "seeded order (tables marked 'common' compare all models on the same structures).",
          "- float32 for every model; hipot's relaxations use its batched driver (`hipot.tasks.relax`), which gives each "
          "structure the trajectory ASE's FIRE would give it alone.",
          "- dcdft and diatomics are not Matbench Discovery tasks in this form (dcdft follows the Delta test; the "
          "diatomic metrics are defined above, not the leaderboard's).",
          "- κ_SRME not computed (no structures/force sets shipped).", ""]
    L += ["## Reproduce", "",
          "```bash",
          'pip install -e ".[tasks,peers]"            # pymatgen, phonopy, spglib; sevenn and chgnet for the peers',
          "hipot evaluate --quick --device cpu        # minutes on a CPU: the pipeline end to end",
          "hipot evaluate --device cuda               # the full run (one GPU); --resume continues an interrupted one",
          "hipot evaluate --report-only RAWDIR        # this report again from raw results",
          "```", "",
          "Options: `--model NAME|PATH` (any hipot model, e.g. one trained with `hipot train`), `--peers` "
          "(`sevennet-0,chgnet` or `none`; a peer whose package is missing is skipped with a message), "
          "`--benchmarks`, `--limit [BENCH=]N` and `--peer-limit [BENCH=]N` (subset sizes; peers take a prefix of "
          "the same seeded order), `--data` (reference data folder, default `../shared/data` or `$HIPOT_DATA`).", ""]
    out.write_text("\n".join(L) + "\n")
    return out
