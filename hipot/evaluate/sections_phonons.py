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
        cells = ("as the file gives them" if not st.get("fc3_supercell")
                 else f"fc3 {st.get('fc3_supercell')}, fc2 {st.get('fc2_supercell')}")
        L += [p.run_line("kappa"), "",
              "**Data:** `ksrme_phonondb_pbe/` (from MPA2suite/k_SRME): the 103 phononDB-PBE rocksalt, zincblende and "
              "wurtzite binaries with their own fc2/fc3 supercells and q-meshes, and the DFT-PBE κ at 300 K (no NAC), "
              "total and mode-resolved; `mbd_kappa103/`: the published per-compound κ and κ_SRME of 40 models. "
              f"**Protocol** (`{st.get('protocol', '?')}`, Matbench Discovery's; `hipot.tasks.kappa`): one "
              f"{st.get('relax_optimizer', 'FIRE')} relaxation of the phononDB structure with FixSymmetry (symprec "
              f"{st.get('relax_symprec')}) and a FrechetCellFilter with the shear masked, fmax {st.get('relax_fmax')} "
              f"eV/Å, at most {st.get('relax_steps')} steps; a changed space group is a failure; phono3py (symprec "
              f"{st.get('symprec')}) with {st.get('displacement')} Å displacements on the structure's own supercells "
              f"({cells}), "
              "every displaced supercell of a compound evaluated in batches; fc2 first and its phonons on the "
              "structure's q-mesh: a mode below 0 away from Γ, an optical mode below 0 at Γ or an acoustic one below "
              f"{st.get('acoustic_threshold')} THz there is a failure and fc3 is not computed; else the Wigner RTA at "
              f"{st.get('temperatures')} K with isotope scattering. **κ_SRME** per compound (the leaderboard's metric): "
              "2 Σ|κ_mode − κ_mode,DFT| / W / (κ + κ_DFT) over the modes of the irreducible q-mesh (W the sum of "
              "the q-point weights), 2 for a failure; its mean over the compounds. The published HIENet's κ_SRME per "
              "compound comes from its file (the same protocol, 0.01 Å). SRE = 2|κ − κ_DFT|/(κ + κ_DFT) is shown "
              "beside, not compared with an SRME.", ""]
        if s.quick:
            L += ["Quick settings (`--quick`): fc3 on the structure's cell itself, fc2 on twice it, relaxations of at "
                  "most 50 steps; the structure's own q-mesh so that κ_SRME is defined: the pipeline end to end, not "
                  "converged κ.", ""]
        rows = []
        for m, sm in s.own.get("kappa", {}).items():
            if not sm:
                continue
            rows.append([m, "hipot run", sm["n"], f(sm["srme_mean"], 3), f(sm["sre_mean"], 3),
                         f"{sm['failures']} ({sm['imaginary']} imaginary, {sm['broken_symmetry']} broken symmetry)",
                         sm["max_steps"], sm["cutoff_warnings"]])
            for key, pub in s.kappa_published.get(m, {}).items():
                if pub:
                    rows.append([f"{pub['label']} (published)", f"on {m}'s compounds", pub["n"], f(pub["srme_mean"], 3),
                                 f(pub["sre_mean"], 3), pub["failures"], "—", "—"])
        L += table(["model", "", "n", "κ_SRME", "κ_SRE (beside)", "failures", "relaxations out of steps",
                    "shell within 2 displacements of a discontinuous cutoff"], rows)
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
    pub_k = dict(zip(pub["ids"], pub["kappa"])) if pub else {}
    pub_s = dict(zip(pub["ids"], pub["srme"])) if pub else {}
    rows = []
    for mp_id in order:
        first = next(it for it in by[models[0]]["items"] if it["mp_id"] == mp_id)
        row = [first["formula"], mp_id, first.get("spacegroup_dft", "—"), f(first["kappa_dft"], 2)]
        for m in models:
            it = next((i for i in by[m]["items"] if i["mp_id"] == mp_id), None)
            if it is None:
                row += ["", ""]
                continue
            k, _, _ = per_compound([it])
            row += [f(k[0], 2) if np.isfinite(k[0]) else (it.get("failure") or "failed"), f(it.get("kappa_srme"), 3)]
        row += [f(pub_k.get(mp_id), 2) if pub_k.get(mp_id) is not None else ("failed" if mp_id in pub_k else "—"),
                f(pub_s.get(mp_id), 3)]
        rows.append(row)
    header = ["compound", "id", "space group", "κ_DFT"]
    for m in models:
        header += [f"κ {m}", f"κ_SRME {m}"]
    header += ["κ HIENet (published)", "κ_SRME HIENet (published)"]
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

