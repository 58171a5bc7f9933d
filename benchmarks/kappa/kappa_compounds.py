"""kappa of chosen kappa-103 compounds with the benchmark's full settings (hipot.tasks.kappa
defaults), one compound after another, next to the DFT value and the published HIENet result:
a check of the pipeline on a CPU where the whole benchmark would take too long.

    python3 benchmarks/kappa/kappa_compounds.py mp-22862 mp-1265 --model hienet-v3 --device cpu \
        --json benchmarks/kappa/cpu_check.json
"""
from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    from hipot.evaluate.data import default_data_dir, load_kappa103, load_kappa103_published
    from hipot.evaluate.metrics import symmetric_relative_error
    from hipot.evaluator import Evaluator
    from hipot.io import write_json
    from hipot.tasks.kappa import KappaSettings, conductivity, relax_for_kappa

    ap = argparse.ArgumentParser()
    ap.add_argument("ids", nargs="+", help="material ids of the kappa-103 set, e.g. mp-22862")
    ap.add_argument("--model", default="hienet-v3")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    data = args.data or default_data_dir()
    entries = {e.mp_id: e for e in load_kappa103(data)}
    pub = load_kappa103_published(data)["hienet"]
    order = [e for e in load_kappa103(data)]
    ev = Evaluator(args.model, device=args.device)
    settings = KappaSettings()
    rows = []
    for mp_id in args.ids:
        e = entries[mp_id]
        t0 = time.perf_counter()
        (relaxed,) = relax_for_kappa([e.atoms], ev, symprec=settings.symprec)
        r = conductivity(relaxed, ev, settings)
        k = r.kappa_ave[0] if r.kappa_ave and not (r.failure or r.max_steps or r.broken_symmetry) else float("nan")
        i = [x.mp_id for x in order].index(mp_id)
        row = {"mp_id": mp_id, "formula": e.formula, "source": e.source, "kappa_dft": e.kappa_dft,
               "kappa": k, "sre": float(symmetric_relative_error([k], [e.kappa_dft])[0]),
               "kappa_hienet_published": pub["kappa_ml"][i], "srme_hienet_published": pub["srme"][i],
               "failure": r.failure, "relax_steps": r.relax_steps, "max_steps": r.max_steps,
               "fc3_supercell": r.fc3_supercell, "fc2_supercell": r.fc2_supercell,
               "n_fc3_displacements": r.n_fc3_displacements, "mesh": r.mesh, "min_frequency": r.min_frequency,
               "warnings": r.warnings, "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(f"{e.formula} {mp_id}: kappa {k:.3f} W/mK (DFT {e.kappa_dft}, HIENet published "
              f"{pub['kappa_ml'][i]}), SRE {row['sre']:.3f}, {row['seconds']} s{'; ' + r.failure if r.failure else ''}",
              flush=True)
    sre = np.array([r["sre"] for r in rows])
    out = {"model": args.model, "settings": "hipot.tasks.kappa.KappaSettings() defaults",
           "machine": f"{platform.machine()} CPU" if args.device == "cpu" else args.device,
           "sre_mean": float(sre.mean()), "compounds": rows}
    print(f"mean SRE {sre.mean():.3f} over {len(rows)} compounds")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
