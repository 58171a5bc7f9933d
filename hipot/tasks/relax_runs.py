"""Relaxations of a command: split across torchrun ranks and resumable after an interruption,
each finished structure kept as a JSON record next to the output (`hipot relax`, `hipot screen`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from .common import ModelLike, Tally, check_inputs, resolve_model
from .relax import RelaxResult, _skipped, relax


def to_record(res: RelaxResult) -> dict[str, Any]:
    """A JSON-able checkpoint of a result (geometry, results, status); floats round-trip exactly."""
    rec: dict[str, Any] = {"positions": res.atoms.positions.tolist(), "cell": res.atoms.cell.array.tolist(),
                           "energy": res.energy if np.isfinite(res.energy) else None, "fmax": res.fmax
                           if np.isfinite(res.fmax) else None, "steps": res.steps, "converged": res.converged,
                           "error": res.error, "smax": res.smax}
    if res.atoms.calc is not None:
        for k in ("forces", "stress", "energies"):
            if k in res.atoms.calc.results:
                rec[k] = np.asarray(res.atoms.calc.results[k]).tolist()
    return rec


def from_record(rec: dict[str, Any], original: Atoms, index: int) -> RelaxResult:
    """The RelaxResult of a checkpoint record; numbers, pbc and info come from the input structure."""
    atoms = original.copy()
    atoms.calc = None
    atoms.set_constraint()
    atoms.set_cell(np.array(rec["cell"]))
    atoms.positions = np.array(rec["positions"])
    energy = rec["energy"] if rec["energy"] is not None else float("nan")
    if rec.get("error") is None:
        res = {"energy": energy, "free_energy": energy}
        for k in ("forces", "stress", "energies"):
            if k in rec:
                res[k] = np.array(rec[k])
        atoms.calc = SinglePointCalculator(atoms, **res)
    fmax = rec["fmax"] if rec["fmax"] is not None else float("nan")
    return RelaxResult(atoms, energy, fmax, int(rec["steps"]), bool(rec["converged"]), rec.get("error"), index,
                       atoms.get_chemical_formula(), rec.get("smax"))


def relax_resumable(structures: Sequence[Atoms], checkpoint: str | Path, key: str, model: ModelLike = "hienet-v3",
                    *, device: str = "auto", progress: bool = False, labels: Sequence[str] | None = None,
                    skip: dict[int, str] | None = None, tally: Tally | None = None,
                    **kwargs) -> list[RelaxResult] | None:
    """relax() split across torchrun ranks and resumable: each rank relaxes its share of the
    structures not yet in the partial results next to `checkpoint` (appending each as it finishes);
    rank 0 returns all results in input order (other ranks None). Call `PartialResults.cleanup`
    through `cleanup_checkpoint` once the final outputs are written.
    `skip` (index -> reason) are structures recorded as failed without being relaxed (bad input
    the caller chose to skip); `tally` counts this rank's finished structures as they finish."""
    from datetime import timedelta

    from ..distributed import PartialResults, setup

    skip = dict(skip or {})
    names = list(labels) if labels is not None else [f"structure {i}" for i in range(len(structures))]
    w, dev = setup(device, timeout=timedelta(days=7))
    m = resolve_model(model, str(dev), kwargs.pop("dtype", "float32"))
    keep = [i for i in range(len(structures)) if i not in skip]
    check_inputs([structures[i] for i in keep], m, labels=[names[i] for i in keep])  # before anything is written
    parts = PartialResults(checkpoint, len(structures), key, w)
    todo = parts.start()
    if tally is not None:
        tally.total, tally.done = len(structures), len(structures) - len(todo)
    failed = [i for i in todo if i in skip]
    if failed:
        parts.append((i, to_record(_skipped(structures[i], i, skip[i]))) for i in failed)
        if tally is not None:
            tally.add(len(failed))
    todo = [i for i in todo if i not in skip]

    def done(r: RelaxResult) -> None:
        parts.append([(r.index, to_record(r))])
        if tally is not None:
            tally.add()

    if todo:
        try:
            relax([structures[i] for i in todo], m, indices=todo, labels=[names[i] for i in todo],
                  progress=progress and w.is_main, on_result=done, **kwargs)
        except Exception:
            # An error (not Ctrl-C, whose partial results a rerun continues from) before anything
            # finished leaves nothing to resume: no hidden folder of empty partial results.
            if w.size == 1 and not parts.done():
                parts.cleanup()
            raise
    records = parts.collect()
    if records is None:
        return None
    return [from_record(rec, structures[i], i) for i, rec in enumerate(records)]


def cleanup_checkpoint(checkpoint: str | Path, n: int, key: str) -> None:
    from ..distributed import PartialResults

    PartialResults(checkpoint, n, key).cleanup()
