"""How far a student is from its teacher, from a distillation run's own files (no teacher needed):
energy per atom and forces on the held-out set (WBM-972 at its DFT geometries, labelled by V3),
and energy per atom on a fixed sample of the training parts, by kind of structure. CPU or GPU.

    python3 benchmarks/smooth/fit_report.py MODEL [MODEL ...] --data RUN/data [--sample 150] [--json OUT]

The training sample leaves out the few structures on which the teacher's labels are absurd (|E/atom|
> 20 eV or a stress component > 5 eV/A^3: unrelaxed substitutions of light elements into small
cells), which would otherwise set the mean.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import ase.io
import numpy as np

from hipot import predict


def _sample(data: Path, per_part: int, every: int = 4, seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    frames = []
    for part in sorted(data.glob("part-*.extxyz"))[::every]:
        atoms = ase.io.read(part, ":")
        frames += [atoms[i] for i in rng.choice(len(atoms), min(per_part, len(atoms)), replace=False)]
    return [a for a in frames if abs(a.info["REF_energy"] / len(a)) < 20
            and np.abs(a.info.get("REF_stress", np.zeros(6))).max() < 5]


def report(model: str, test: list, train: list, device: str) -> dict:
    """meV/atom and meV/A: held-out energy and force MAE; training-sample energy MAE by kind."""
    out: dict = {"model": model}
    res = predict(test, model=model, device=device)
    n = np.array([len(a) for a in test])
    de = np.array([r["energy"] - a.info["REF_energy"] for r, a in zip(res, test)]) / n
    df = np.concatenate([r["forces"] - a.arrays["REF_forces"] for r, a in zip(res, test)])
    out.update(test_frames=len(test), test_e_atom_mae=1e3 * float(np.abs(de).mean()),
               test_f_mae=1e3 * float(np.abs(df).mean()))
    res = predict(train, model=model, device=device)
    by: dict[str, list[float]] = defaultdict(list)
    for r, a in zip(res, train):
        by[a.info.get("kind", "seed")].append(1e3 * abs(r["energy"] - a.info["REF_energy"]) / len(a))
    out["train_e_atom_mae"] = {k: [len(v), float(np.mean(v))] for k, v in sorted(by.items())}
    out["train_e_atom_mae_all"] = float(np.mean([x for v in by.values() for x in v]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model names or folders")
    ap.add_argument("--data", type=Path, required=True, help="the run's data folder (part-*.extxyz, test.extxyz)")
    ap.add_argument("--sample", type=int, default=150, help="structures from every 4th training part")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    test = ase.io.read(args.data / "test.extxyz", ":")
    train = _sample(args.data, args.sample)
    rows = []
    for m in args.models:
        rows.append(report(m, test, train, args.device))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
