"""The report's sections on vibrations: Si phonons against PBE forces, the Alexandria heat
capacity, the kappa-103 thermal conductivity."""
from __future__ import annotations

import numpy as np

from . import plots
from .common import num
from .kappa import per_compound
from .render import Page, f, table


def phonons(p: Page) -> list[str]:
    s = p.s
    L = ["## 5. Phonons of Si against PBE forces", "", p.run_line("phonons"), "",
         "**Data:** `phono3py_examples/Si-PBE` — diamond Si, 2×2×2 conventional supercell (64 atoms), 111 displaced "
         "supercells (1 single + 110 pair displacements of 0.03 Å) with VASP PBE forces. **Protocol:** model forces on "
         "the same displaced supercells (at the PBE lattice constant 5.466 Å, not the model's own); force MAE over "
         "all components; harmonic frequencies from the single-displacement supercell with phonopy (the model's forces "
         "on the undisplaced cell subtracted first), compared with phonopy on the PBE forces on an 8×8×8 mesh and at "
         "Γ, X, L.", ""]
    by = s.raws.get("phonons", {})
    if not by:
        return L

    def pts(sm: dict, name: str) -> str:
        return " / ".join(f(x, 2) for x in sorted(set(np.round(sm.get(name, []), 2)))) if sm.get(name) else "—"

    rows = [[m, sm["n"], f(sm["force_mae"], 4), f(sm["force_rmse"], 4), f(sm["force_r2"], 4),
             f(sm["perfect_max_force"], 4), f(sm.get("freq_mesh_mae_thz"), 3), pts(sm, "Gamma_model"),
             pts(sm, "X_model"), pts(sm, "L_model")] for m, sm in s.own.get("phonons", {}).items() if sm]
    first = next((sm for sm in s.own.get("phonons", {}).values() if sm and sm.get("Gamma_dft")), None)
    if first:
        rows.append(["PBE (VASP)", "", "", "", "", "", "", pts(first, "Gamma_dft"), pts(first, "X_dft"),
                     pts(first, "L_dft")])
    L += table(["model", "supercells", "force MAE (eV/Å)", "force RMSE", "force R²", "max abs. force, undisplaced cell",
                "freq. MAE 8³ mesh (THz)", "Γ (THz)", "X (THz)", "L (THz)"], rows)
    L += [""] + p.errors("phonons")
    panels = []
    for m, r in by.items():
        it = (r.get("items") or [{}])[0]
        if "freq_model" in it:
            panels.append((m, np.array(it["freq_dft"]["mesh"], float), np.array(it["freq_model"]["mesh"], float)))
    if panels:
        L += p.image("Si phonon frequencies, 8x8x8 mesh", plots.parity(panels, "PBE frequency (THz)",
                                                                         "model frequency (THz)",
                                                                         p.figure("phonons_si.png"), "THz"))
    return L


def heat_capacity(p: Page) -> list[str]:
    s = p.s
    by = s.raws.get("heat_capacity", {})
    st = next((r.get("settings", {}) for r in by.values() if not r.get("error")), {})
    L = ["## 6. Heat capacity of the Alexandria phonon set", ""]
    if not by:
        return L + ["Not run (`--benchmarks heat_capacity`).", ""]
    L += [p.run_line("heat_capacity"), "",
          "**Data:** `matcalc_benchmarks/alexandria-binary-pbe-phonon-2025.1.json.gz` (1,170 binaries, Alexandria PBE "
          "phonopy heat capacity at 300 K per mole of the given cell). **Protocol:** hipot's `phonons` task with its "
          f"defaults: the structure relaxed keeping its symmetry (fmax {st.get('fmax')} eV/Å, ≤ {st.get('steps')} steps; "
          f"all structures in one batched relaxation), a supercell at least {st.get('supercell_length')} Å wide, "
          f"displacements of {st.get('displacement')} Å, phonopy's mesh of length {st.get('mesh')}; C_V at 300 K per "
          "atom against the reference per atom (J/K/mol-atom; the Dulong–Petit limit is 24.94).", ""]
    rows = p.rows("heat_capacity", lambda m, label, sm: [
        m, label, sm["n"], f(sm["cv"]["mae"], 3), f(sm["cv_rel_mae_pct"], 2), f(sm["cv"]["r2"], 3), sm["imaginary"],
        sm["failed"], sm["cutoff_warnings"]])
    L += table(["model", "structures", "n", "C_V MAE (J/K/mol-atom)", "relative MAE (%)", "R²",
                "imaginary modes", "failed", "shell within the displacement of a discontinuous cutoff"], rows)
    L += [""] + p.errors("heat_capacity")
    panels = [(m, np.array([it["cv_ref_per_atom"] for it in r["items"]]),
               np.array([num(it.get("cv_per_atom")) for it in r["items"]])) for m, r in by.items() if not r.get("error")]
    if panels:
        L += p.image("heat capacity parity", plots.parity(panels, "Alexandria PBE C_V (J/K/mol-atom)",
                                                          "model C_V (J/K/mol-atom)", p.figure("heat_capacity.png"),
                                                          "J/K/mol"))
    return L


def kappa(p: Page) -> list[str]:
    s = p.s
    by = s.raws.get("kappa", {})
    L = ["## 7. Thermal conductivity: the Matbench Discovery κ-103 compounds", ""]
    if not by:
        L += ["Not run (`--benchmarks kappa`, needs `pip install \"hipot[kappa]\"`).", ""]
    else:
        st = next((r.get("settings", {}) for r in by.values() if not r.get("error")), {})
        fc3 = st.get("fc3_supercell") or f"≥ {st.get('fc3_length')} Å wide"
        fc2 = st.get("fc2_supercell") or f"≥ {st.get('fc2_length')} Å wide"
        L += [p.run_line("kappa"), "",
              "**Data:** `mbd_kappa103/kappa-103-analysis.jsonl`: the DFT κ (PBE, phononDB, phono3py RTA, 300 K) of "
              "the 103 rocksalt, zincblende and wurtzite binaries and the published per-compound results of 40 models. "
              "The phononDB-PBE structures are not shipped: each compound starts from the Materials Project structure "
              "of the same id (`matcalc_benchmarks/`: the elasticity file, else the Alexandria phonon file; 93 of "
              "103), else from its prototype with the sum of covalent radii as bond length (10); every structure is "
              "then relaxed with the model (the column 'structure' says which start). "
              "**Protocol** (Póta et al., arXiv:2408.00755; `hipot.tasks.kappa`): symmetrised, relaxed keeping the "
              "symmetry (FIRE + FrechetCellFilter; a first relaxation to fmax 0.005 eV/Å brings structures not made "
              "with the model near its minimum, then the protocol's fmax 1e-4 eV/Å within 300 steps); phono3py force "
              f"constants from {st.get('displacement')} Å displacements of the conventional cell's supercells (fc3 "
              f"{fc3}, fc2 {fc2}), every displaced supercell of a compound evaluated in batches; phonons on a "
              f"{st.get('mesh')} q-mesh; imaginary modes (below 0 at Γ beyond the acoustic ones, below "
              f"{st.get('imaginary_threshold')} THz elsewhere) end the calculation; RTA at "
              f"{st.get('temperatures')} K with isotope scattering{' and the Wigner coherence term' if st.get('wigner') else ''}; "
              "κ = mean of the diagonal. Per compound SRE = 2|κ − κ_DFT|/(κ + κ_DFT), 2 for a failure (imaginary modes, "
              "broken symmetry, relaxation out of steps), and its mean κ_SRE, as Matbench Discovery computes it. "
              "**κ_SRME** (the leaderboard's metric) averages mode-resolved errors and needs the DFT's mode-resolved κ, "
              "which is not shipped: for hipot's runs only κ_SRE can be computed (κ_SRME ≥ κ_SRE compound by "
              "compound); the published HIENet κ_SRME and κ_SRE on exactly the same compounds come from the published "
              "per-compound numbers.", ""]
        if s.quick:
            L += ["Quick settings (`--quick`): fc3 on the conventional cell itself, fc2 on twice it, a 6³ q-mesh: the "
                  "pipeline end to end, not converged κ.", ""]
        rows = []
        for m, sm in s.own.get("kappa", {}).items():
            if not sm:
                continue
            rows.append([m, "hipot run", sm["n"], f(sm["sre_mean"], 3), "—", f(sm["srd_mean"], 3),
                         f"{sm['failures']} ({sm['imaginary']} imaginary, {sm['broken_symmetry']} broken symmetry, "
                         f"{sm['max_steps']} out of steps)", sm["cutoff_warnings"]])
            for key, pub in s.kappa_published.get(m, {}).items():
                if pub:
                    rows.append([f"{pub['label']} (published)", f"on {m}'s compounds", pub["n"], f(pub["sre_mean"], 3),
                                 f(pub["srme_mean"], 3), "—", pub["failures"], "—"])
        L += table(["model", "", "n", "κ_SRE", "κ_SRME", "κ_SRD", "failures", "shell within 2 displacements of a "
                    "discontinuous cutoff"], rows)
        L += [""] + p.errors("kappa")
        L += _per_compound(p) + _kappa_figure(p)
    card_rows = []
    for m in s.models:
        from .summary import PUBLISHED_CARD

        card = s.published.get(PUBLISHED_CARD.get(m, m), {})
        k = card.get("metrics", {}).get("phonons", {}).get("kappa_103", {}) if card else {}
        if k:
            card_rows.append([m, f(k.get("κ_SRME", k.get("kappa_SRME")), 3), f(k.get("κ_SRE"), 3),
                              f(k.get("κ_failure_rate"), 3)])
    if card_rows:
        L += ["Published on all 103 compounds (model cards, `mbd_model_metrics/`):", ""]
        L += table(["model", "κ_SRME", "κ_SRE", "failure rate"], card_rows) + [""]
    return L


def _per_compound(p: Page) -> list[str]:
    by = {m: r for m, r in p.s.raws.get("kappa", {}).items() if not r.get("error")}
    if not by:
        return []
    models = list(by)
    order = [it["mp_id"] for it in by[models[0]]["items"]]
    pub = p.s.kappa_published.get(models[0], {}).get("hienet")
    pub_k = dict(zip(order, pub["kappa"])) if pub else {}
    rows = []
    for mp_id in order:
        first = next(it for it in by[models[0]]["items"] if it["mp_id"] == mp_id)
        row = [first["formula"], mp_id, first.get("spacegroup_dft", "—"), first.get("source", "—"), f(first["kappa_dft"], 2)]
        for m in models:
            it = next((i for i in by[m]["items"] if i["mp_id"] == mp_id), None)
            if it is None:
                row += ["", ""]
                continue
            k, sre, _ = per_compound([it])
            row += [f(k[0], 2) if np.isfinite(k[0]) else (it.get("failure") or "failed"), f(sre[0], 3)]
        row.append(f(pub_k.get(mp_id), 2))
        rows.append(row)
    header = ["compound", "id", "space group", "structure", "κ_DFT"]
    for m in models:
        header += [f"κ {m}", f"SRE {m}"]
    header.append("κ HIENet (published)")
    return ["Per compound (W/m/K at 300 K):", ""] + table(header, rows) + [""]


def _kappa_figure(p: Page) -> list[str]:
    series = []
    by = {m: r for m, r in p.s.raws.get("kappa", {}).items() if not r.get("error")}
    for m, r in by.items():
        k, _, _ = per_compound(r["items"])
        series.append((m, np.array([it["kappa_dft"] for it in r["items"]]), k))
    if by:
        m0 = next(iter(by))
        pub = p.s.kappa_published.get(m0, {}).get("hienet")
        if pub:
            t = np.array([it["kappa_dft"] for it in by[m0]["items"]])
            series.append(("HIENet (published)", t, np.array(pub["kappa"], float)))
    if not series:
        return []
    return p.image("kappa parity, log axes", plots.kappa_parity(series, p.figure("kappa.png")))

