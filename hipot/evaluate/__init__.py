"""Accuracy evaluation against DFT reference data (`hipot evaluate`).

Benchmarks (one module each): wbm (relaxation, formation energy, stability, RMSD), dcdft (equation
of state), elastic (K_VRH, G_VRH), diatomics (cutoff jump, smoothness), phonons (Si-PBE forces and
frequencies). `runner.run_all` runs them for a hipot model and peer models and writes raw JSON;
`report.write_report` turns a raw folder into the Markdown report and parity plots."""
from .common import BENCHMARKS, Options
from .runner import run_all

__all__ = ["BENCHMARKS", "Options", "run_all"]
