"""The Markdown table of benchmarks/kappa/README.md from `hipot kappa --json` results: per compound
hipot's κ and κ_SRME beside the DFT reference and the published HIENet's κ and κ_SRME (both from
Matbench Discovery's files in ../shared/data), and the means over the compounds given.

    python3 benchmarks/kappa/table.py benchmarks/kappa/*_phonondb-v1.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from hipot.evaluate.data import default_data_dir, load_kappa103_published, load_kappa103_summary

    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+", type=Path, help="JSON files written by hipot kappa --json")
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    data = args.data or default_data_dir()
    base = load_kappa103_summary(data)
    pub = load_kappa103_published(data)["hienet"]
    where = {m: i for i, m in enumerate(base["material_ids"])}
    print("| compound | κ DFT | κ hipot HIENet-V3 | κ_SRME hipot | κ HIENet published | κ_SRME published | note |")
    print("|---|---|---|---|---|---|---|")
    ours, theirs = [], []
    for path in args.results:
        d = json.loads(path.read_text())
        mp_id = d["reference"]["mp_id"]
        i = where[mp_id]
        k_pub = pub["kappa_ml"][i]
        k = "failed" if d["kappa_ave"] is None else f"{d['kappa_ave'][0]:.3f}"
        note = d["failure"] or ""
        if d["warnings"]:
            note += ("; " if note else "") + "warning: " + d["warnings"][0].split(",")[0].split(" lie")[0]
        print(f"| {base['formulas'][i]} ({mp_id}) | {base['kappa_dft'][i]:.3f} | {k} | {d['kappa_srme']:.3f} | "
              f"{'failed' if k_pub is None else f'{k_pub:.3f}'} | {pub['srme'][i]:.4f} | {note} |")
        ours.append(d["kappa_srme"])
        theirs.append(pub["srme"][i])
    print(f"| mean over these {len(ours)} | | | **{sum(ours) / len(ours):.3f}** | | **{sum(theirs) / len(theirs):.3f}** | |")


if __name__ == "__main__":
    main()
