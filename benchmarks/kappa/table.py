"""The Markdown table of benchmarks/kappa/README.md from `hipot kappa --json` results: per compound
hipot's κ and κ_SRME beside the DFT reference and the published HIENet's κ and κ_SRME (both from
Matbench Discovery's files in ../shared/data), and the means over the compounds given. κ_SRME is
computed here from the mode-resolved κ each JSON carries (`modes`) against the DFT reference, and
checked against the one the run stored where it had the reference at hand.

    python3 benchmarks/kappa/table.py benchmarks/kappa/*_phonondb-v1.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def srme_of(d: dict, ref: dict) -> float:
    """The benchmark's score of one `hipot kappa` JSON: 2 for a failure, else SRME from its modes."""
    from hipot.tasks.kappa_srme import srme

    if d["failure"] or d["has_imaginary"] or d["broken_symmetry"] or d["kappa_ave"] is None:
        return 2.0
    m = d["modes"]
    if not np.allclose(np.asarray(m["qpoints"]), ref["qpoints"], atol=1e-6):
        raise SystemExit(f"{d['formula']}: not on the reference's q-points")
    return srme(np.asarray(m["mode_kappa"])[0], np.asarray(m["weights"]), d["kappa_ave"][0], ref["mode_kappa"][0],
                ref["kappa_ave"][0])


def main() -> None:
    from hipot.evaluate.data import default_data_dir, load_kappa103_published, load_kappa103_summary
    from hipot.evaluate.phonondb_pbe import load_reference

    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", type=Path, help="JSON files written by hipot kappa --json")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or default_data_dir()
    base = load_kappa103_summary(data)
    pub = load_kappa103_published(data)["hienet"]
    refs = load_reference(data)
    where = {m: i for i, m in enumerate(base["material_ids"])}
    print("| compound | κ DFT | κ hipot HIENet-V3 | κ_SRME hipot | κ HIENet published | κ_SRME published | note |")
    print("|---|---|---|---|---|---|---|")
    ours, theirs = [], []
    for path in args.results:
        d = json.loads(path.read_text())
        mp_id = (d.get("structure") or {}).get("mp_id") or (d.get("reference") or {}).get("mp_id")
        if mp_id is None:  # a result that does not say: the compound of its formula and space group
            from ase.formula import Formula

            name = Formula(d["formula"]).reduce()[0].format("metal")
            hits = [m for m, f, g in zip(base["material_ids"], base["formulas"], base["spg_nums"])
                    if Formula(f).reduce()[0].format("metal") == name and g == d["spacegroup_initial"]]
            if len(hits) != 1:
                raise SystemExit(f"{path}: which compound is {d['formula']} ({d['spacegroup_initial']})? {hits}")
            mp_id = hits[0]
        i = where[mp_id]
        value = srme_of(d, refs[mp_id])
        if d.get("kappa_srme") is not None and abs(d["kappa_srme"] - value) > 1e-9:
            raise SystemExit(f"{path}: stored κ_SRME {d['kappa_srme']} but {value} from its modes")
        k_pub = pub["kappa_ml"][i]
        k = "failed" if d["kappa_ave"] is None else f"{d['kappa_ave'][0]:.3f}"
        note = d["failure"] or ""
        if d["warnings"]:
            note += ("; " if note else "") + "warning: " + d["warnings"][0].split(" lie")[0]
        print(f"| {base['formulas'][i]} ({mp_id}) | {base['kappa_dft'][i]:.3f} | {k} | {value:.4f} | "
              f"{'failed' if k_pub is None else f'{k_pub:.3f}'} | {pub['srme'][i]:.4f} | {note} |")
        ours.append(value)
        theirs.append(pub["srme"][i])
    print(f"| mean over these {len(ours)} | | | **{np.mean(ours):.3f}** | | **{np.mean(theirs):.3f}** | |")


if __name__ == "__main__":
    main()
