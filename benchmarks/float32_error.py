"""float32 round-off of hipot and of the official code, both measured against hipot in float64, on
the 42 structures of the golden file (the official code's float32 outputs):

    python3 benchmarks/float32_error.py
"""
import warnings
from pathlib import Path

import ase.io
import numpy as np

from hipot import Evaluator

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "hienet_v3_reference.extxyz"


def main() -> None:
    warnings.filterwarnings("ignore")
    frames = ase.io.read(GOLDEN, ":")
    p32 = Evaluator("hienet-v3", device="cpu", dtype="float32").evaluate(frames)
    p64 = Evaluator("hienet-v3", device="cpu", dtype="float64").evaluate(frames)
    official = [np.abs(a.calc.get_forces() - q64["forces"]).max() for a, q64 in zip(frames, p64)]
    hipot = [np.abs(q32["forces"] - q64["forces"]).max() for q32, q64 in zip(p32, p64)]
    for name, d in (("official float32", official), ("hipot float32", hipot)):
        print(f"{name:>17}: max |F - F(hipot float64)| {max(d):.2e} eV/A, median over frames {np.median(d):.2e}")


if __name__ == "__main__":
    main()
