"""HIENet-V3 and the smooth student at the DFT geometries of all WBM-972 structures: formation-energy
MAE of each against DFT (MP2020 corrections of the labels added, as in `hipot evaluate`) and
their disagreement (energy per atom, forces). CPU or GPU; no relaxation.

    python3 benchmarks/smooth/wbm_static.py [--device cpu] [--data ../shared/data] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hipot import predict
from hipot.evaluate.data import default_data_dir, element_refs, load_wbm
from hipot.evaluate.wbm import formation_energy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--models", nargs=2, default=["hienet-v3", "hienet-v3-smooth"])
    ap.add_argument("--json")
    args = ap.parse_args()
    data = args.data or default_data_dir()
    entries = load_wbm(data)
    mu = element_refs(data)
    frames = [e.atoms for e in entries]
    res = {m: predict(frames, model=m, device=args.device, progress=True) for m in args.models}
    a, b = args.models
    out: dict[str, object] = {"n": len(entries)}
    for m in args.models:
        ef = np.array([formation_energy(r["energy"], e, mu, True) for r, e in zip(res[m], entries)])
        out[f"{m}_e_form_mae"] = float(np.mean(np.abs(ef - np.array([e.e_form for e in entries]))))
    n_atoms = np.array([len(f) for f in frames])
    ea = np.array([r["energy"] for r in res[a]]) / n_atoms
    eb = np.array([r["energy"] for r in res[b]]) / n_atoms
    fa = np.concatenate([r["forces"] for r in res[a]])
    fb = np.concatenate([r["forces"] for r in res[b]])
    out["disagreement_e_atom_mae"] = float(np.mean(np.abs(ea - eb)))
    out["disagreement_e_atom_max"] = float(np.max(np.abs(ea - eb)))
    out["disagreement_f_mae"] = float(np.mean(np.abs(fa - fb)))
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
