"""Accuracy evaluation against DFT reference data (`hipot evaluate`).

Benchmarks (one module each): wbm (relaxation, formation energy, stability, RMSD), dcdft (equation
of state, energy steps), elastic (K_VRH, G_VRH by the elastic task's protocol), diatomics (cutoff
jump, smoothness, energy steps), phonons (Si-PBE forces and frequencies), heat_capacity
(Alexandria, by the phonons task's protocol), kappa (the kappa-103 phononDB-PBE compounds, hipot.tasks.kappa, κ_SRME).
The data path: `data` (loaders) -> `runner.run_all` (each model on each benchmark, raw JSON) ->
`runner.complete_raw` (steps a run without pymatgen/phonopy left open) -> `summary.summarize_run`
(the numbers) -> `report.render` (Markdown, with `sections`, `sections_phonons` and `plots`)."""
from .common import BENCHMARKS, Options
from .runner import run_all

__all__ = ["BENCHMARKS", "Options", "run_all"]
