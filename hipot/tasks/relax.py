"""Structure relaxation: ASE optimizers (FIRE, BFGS, LBFGS), cell relaxation through
FrechetCellFilter, optional symmetry constraint, and many structures relaxed in batches.

Batching keeps one ordinary ASE optimizer (and filter) per structure and drives up to
`batch_size` of them in lockstep: each round evaluates every active structure in one batched
model call, hands each its own results through a calculator that serves them (so the optimizer
sees exactly what a plain ASE calculator would give), checks convergence, takes one step, and
replaces finished structures with pending ones. The trajectory of each structure is therefore
the one ASE's optimizer would produce alone, to round-off.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator

from ..graph import StructureError
from ..evaluator import Evaluator
from .common import ModelLike, Result, check_inputs, progress_bar, resolve_model
from .trajectory import TrajectoryWriter, trajectory_path

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")


@dataclass
class RelaxResult(Result):
    """A relaxed structure. `atoms` carries a SinglePointCalculator with energy, forces (and stress);
    `fmax` is the optimizer's convergence measure (largest atomic force, and with cell relaxation
    also the filter's cell gradient) in eV/A; `smax` the largest stress component in GPa (cell
    relaxation only, else None)."""

    atoms: Atoms
    energy: float
    fmax: float
    steps: int
    converged: bool
    error: str | None = None
    index: int = 0
    formula: str = field(default="")
    smax: float | None = None

    def to_dict(self) -> dict[str, Any]:
        n = len(self.atoms)
        d = {"index": self.index, "formula": self.formula, "n_atoms": n, "energy": self.energy,
             "energy_per_atom": self.energy / n if n else float("nan"), "fmax": self.fmax, "steps": self.steps,
             "converged": self.converged}
        if self.smax is not None:
            d["smax"] = self.smax
        if n and np.all(self.atoms.pbc) and abs(self.atoms.cell.volume) > 0:
            d["volume_per_atom"] = float(self.atoms.get_volume() / len(self.atoms))
        if self.error:
            d["error"] = self.error
        return d


class ServedCalculator(Calculator):
    """Serves results computed elsewhere (the batched evaluation) for the atoms they belong to.
    If asked about any other geometry (an optimizer with a line search), it computes them itself
    through `fallback`, so the optimizer's behaviour never depends on the batching."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, fallback: Callable[[Atoms], dict[str, Any]]):
        super().__init__()
        self.fallback = fallback
        self.fallback_calls = 0

    def serve(self, atoms: Atoms, results: dict[str, Any]) -> None:
        self.atoms = atoms.copy()
        self.results = dict(results)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties or ["energy"], system_changes)
        self.fallback_calls += 1
        self.results = dict(self.fallback(self.atoms))


def _optimizer_class(name: str):
    from ase.optimize import BFGS, FIRE, LBFGS

    table = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}
    key = name.upper()
    if key not in table:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {name!r}")
    return table[key]


def has_3d_cell(atoms: Atoms) -> bool:
    """Whether the structure has a cell spanning three dimensions: what a space group (spglib,
    FixSymmetry) needs. A molecule without a cell has none; a slab or a molecule in a box has one."""
    return atoms.cell.rank == 3


class SymmetryError(ValueError):
    """spglib could not analyse a structure's symmetry (its message says why)."""


def prepare(atoms: Atoms, relax_cell: bool, symmetry: bool, symprec: float = 1e-3,
            cell_mask: Sequence[bool] | None = None):
    """A working copy of `atoms` (constraints kept, FixSymmetry added on request for a structure
    with a 3D cell; a molecule without one relaxes without it) and the object the optimizer moves:
    a FrechetCellFilter for periodic cells with relax_cell (`cell_mask`: which of the 6 Voigt
    strain components may relax), else the atoms. SymmetryError when spglib fails on the structure."""
    work = atoms.copy()
    work.calc = None
    if symmetry and has_3d_cell(work):
        from ase.constraints import FixSymmetry

        from ..optional import require

        require("spglib", "tasks", "keeping the space group (symmetry=True)")
        try:
            fix = FixSymmetry(work, symprec=symprec)
        except Exception as e:  # spglib raises its own error types, which vary between versions
            raise SymmetryError(f"the symmetry analysis failed (spglib: {e}); relax it without --symmetry") from None
        work.set_constraint(list(work.constraints) + [fix])
    if relax_cell and np.all(work.pbc):
        from ase.filters import FrechetCellFilter

        return work, FrechetCellFilter(work, mask=None if cell_mask is None else list(cell_mask))
    return work, work


def _gradient_norm(opt) -> float:
    """The optimizer's own convergence measure (largest row norm of its gradient), any ASE version."""
    o = opt.optimizable
    g = -o.get_gradient() if hasattr(o, "get_gradient") else o.get_forces()
    return float(np.sqrt((np.asarray(g).reshape(-1, 3) ** 2).sum(axis=1).max()))


class _Job:
    """One structure under relaxation: its working atoms, the object the optimizer moves, the optimizer."""

    def __init__(self, index: int, atoms: Atoms, opt_cls, relax_cell: bool, symmetry: bool,
                 calc: Calculator, traj: Path | None, symprec: float = 1e-3, cell_mask: Sequence[bool] | None = None):
        self.index = index
        self.atoms, self.obj = prepare(atoms, relax_cell, symmetry, symprec, cell_mask)
        # the stress criterion reads only the components the cell may relax
        self.free = np.ones(6, dtype=bool) if cell_mask is None else np.asarray(cell_mask, dtype=bool)
        self.atoms.calc = calc
        self._forces: np.ndarray | None = None
        if self.obj is not self.atoms:
            # The cell filter's forces cost nine Frechet derivatives of a matrix exponential (scipy,
            # ~3 ms) per call, and both the convergence test and the optimiser's step ask for them:
            # most of the host work per step of a small cell, which is what bounds batched
            # relaxations of small cells on a GPU. They are computed once per evaluation.
            raw = self.obj.get_forces

            def forces_once(*args, **kwargs) -> np.ndarray:
                if self._forces is None:
                    self._forces = raw(*args, **kwargs)
                return self._forces.copy()

            self.obj.get_forces = forces_once
        self.opt = opt_cls(self.obj, logfile=None)
        self.traj = TrajectoryWriter(traj) if traj is not None else None

    def new_evaluation(self) -> None:
        """The atoms moved or were evaluated again: the filter's forces are computed afresh."""
        self._forces = None

    def stress_norm(self) -> float | None:
        """The largest stress component in GPa while the cell relaxes (None: it does not)."""
        if self.obj is self.atoms:
            return None
        return float(np.abs(self.atoms.get_stress()[self.free]).max(initial=0.0) / units.GPa)

    def result(self, converged: bool, fmax: float, error: str | None = None,
               smax: float | None = None) -> RelaxResult:
        if self.traj is not None:
            self.traj.close()
        out = self.atoms.copy()
        out.set_constraint()  # FixSymmetry is a relaxation aid, not part of the result
        energy = float("nan")
        if error is None:
            calc = self.atoms.calc
            res = {k: calc.results[k] for k in ("energy", "free_energy", "forces", "stress", "energies")
                   if k in calc.results}
            energy = float(res["energy"])
            out.calc = SinglePointCalculator(out, **res)
        return RelaxResult(out, energy, fmax, int(self.opt.nsteps), bool(converged), error, self.index,
                           out.get_chemical_formula(), smax)


def _evaluate_safely(evaluator: Evaluator, atoms_list: list[Atoms], max_atoms: int | None,
                     labels: Sequence[str]) -> list[Any]:
    """Batched results; if the batch fails on a bad structure (atoms collapsed onto each other),
    evaluate one by one so only that structure fails (its entry is the error message, naming the
    structure by its label)."""
    try:
        return evaluator.evaluate(atoms_list, batch_size=len(atoms_list), max_atoms=max_atoms, labels=labels)
    except StructureError:
        out: list[Any] = []
        for a, label in zip(atoms_list, labels):
            try:
                out.extend(evaluator.evaluate([a], batch_size=1, max_atoms=None, labels=[label]))
            except StructureError as e:
                out.append(str(e))
        return out


def relax(structures: Sequence[Atoms], model: ModelLike = "hienet-v3", *, device: str = "auto",
          dtype: str = "float32", optimizer: str = "FIRE", fmax: float = 0.05, smax: float | None = 0.01,
          steps: int = 500, relax_cell: bool = True, symmetry: bool = False, batch_size: int = 64, max_atoms: int | None = 4096,
          trajectory: str | None = None, progress: bool = False,
          on_result: Callable[[RelaxResult], None] | None = None,
          indices: Sequence[int] | None = None, labels: Sequence[str] | None = None,
          symprec: float = 1e-3, cell_mask: Sequence[bool] | None = None) -> list[RelaxResult]:
    """Relax each structure until the optimizer's fmax < `fmax` (eV/A) and, when the cell relaxes,
    every stress component is below `smax` (GPa; None: forces only), or `steps` steps; returns one
    RelaxResult per input, in input order. (The stress criterion is there because the filter's
    cell gradient is the virial per atom: at fmax 0.05 a cell can stop at -0.3 GPa.) Cell relaxation (FrechetCellFilter) applies to fully
    periodic structures only; molecules and slabs relax their positions. `symmetry` keeps the
    space group (ase FixSymmetry) of structures with a 3D cell (`has_3d_cell`; a molecule without
    a cell relaxes without it), and a structure whose symmetry spglib cannot analyse is a failed
    result with the reason (`error`). `trajectory`: a path (.traj or extxyz); with several structures
    each gets stem.INDEX.suffix. `on_result` is called as each structure finishes (for checkpointing);
    `indices` (default 0..n-1) are the ids results and trajectory files carry (a subset of a larger run);
    `labels` name the structures in error messages (default 'structure ID'); `symprec` is
    FixSymmetry's, `cell_mask` FrechetCellFilter's mask (e.g. shear held). The progress bar
    counts finished structures and shows the optimiser steps taken so far."""
    if isinstance(structures, Atoms):
        structures = [structures]
    structures = list(structures)
    ids = list(indices) if indices is not None else list(range(len(structures)))
    if len(ids) != len(structures):
        raise ValueError("indices must name every structure")
    names = list(labels) if labels is not None else [f"structure {i}" for i in ids]
    if len(names) != len(structures):
        raise ValueError("labels must name every structure")
    opt_cls = _optimizer_class(optimizer)
    if fmax <= 0 or steps < 0 or batch_size < 1 or (smax is not None and not smax > 0):
        raise ValueError("relax needs fmax > 0, smax > 0 (or None), steps >= 0 and batch_size >= 1")
    m = resolve_model(model, device, dtype)
    check_inputs(structures, m, labels=names)
    batched = isinstance(m, Evaluator)
    width = batch_size if batched else 1  # an arbitrary ASE calculator evaluates one structure at a time
    results: list[RelaxResult | None] = [None] * len(structures)
    pending = deque(range(len(structures)))
    active: list[_Job] = []
    bar = progress_bar(len(structures), "relax", progress)
    steps_taken = 0

    def fallback(atoms: Atoms) -> dict[str, Any]:
        return m.evaluate([atoms], batch_size=1, max_atoms=None)[0]

    def finish(job: _Job, converged: bool, fnorm: float, error: str | None = None, snorm: float | None = None) -> None:
        res = job.result(converged, fnorm, error, snorm)
        results[job.slot] = res
        if on_result is not None:
            on_result(res)
        bar.update(1)

    try:
        while pending or active:
            while pending and len(active) < width:
                k = pending.popleft()
                calc = ServedCalculator(fallback) if batched else m
                tpath = None
                if trajectory:
                    tpath = trajectory_path(trajectory, ids[k], len(structures) if indices is None else 2)
                try:
                    job = _Job(ids[k], structures[k], opt_cls, relax_cell, symmetry, calc, tpath, symprec, cell_mask)
                except SymmetryError as e:
                    failed = _skipped(structures[k], ids[k], f"{names[k]}: {e}")
                    results[k] = failed
                    if on_result is not None:
                        on_result(failed)
                    bar.update(1)
                    continue
                job.slot = k
                active.append(job)
            if batched:
                evaluated = _evaluate_safely(m, [j.atoms for j in active], max_atoms, [names[j.slot] for j in active])
            else:
                evaluated = [None] * len(active)
            still = []
            for job, res in zip(active, evaluated):
                job.new_evaluation()
                if isinstance(res, str):
                    finish(job, False, float("nan"), res)
                    continue
                if res is not None:
                    job.atoms.calc.serve(job.atoms, res)
                # Same order as ASE's Optimizer.irun: observe, test convergence, then step.
                if job.traj is not None:
                    job.traj.write(job.atoms)
                fnorm = _gradient_norm(job.opt)
                snorm = job.stress_norm()
                converged = fnorm < fmax and (smax is None or snorm is None or snorm < smax)
                if converged or job.opt.nsteps >= steps:
                    finish(job, converged, fnorm, snorm=snorm)
                    continue
                job.opt.step()
                job.opt.nsteps += 1
                steps_taken += 1
                still.append(job)
            active = still
            bar.set_postfix_str(f"{steps_taken} optimiser steps", refresh=True)
    finally:
        for job in active:
            if job.traj is not None:
                job.traj.close()
        bar.close()
    return results  # type: ignore[return-value]


def unconverged_message(results: Sequence[RelaxResult], fmax: float, steps: int,
                        smax: float | None = None) -> str | None:
    """A one-line warning naming structures that did not converge (None when all did)."""
    bad = [r for r in results if not r.converged]
    if not bad:
        return None
    failed = [r for r in bad if r.error]
    stress = f" (and stress < {smax} GPa)" if smax is not None and any(r.smax is not None for r in bad) else ""
    parts = [f"{len(bad)} of {len(results)} structure(s) did not converge to fmax < {fmax} eV/A{stress} "
             f"within {steps} steps (indices {', '.join(str(r.index) for r in bad[:20])}"
             f"{', ...' if len(bad) > 20 else ''})"]
    if failed:
        parts.append(f"{len(failed)} stopped on an error, e.g. {failed[0].error}")
    return "; ".join(parts)


def _skipped(atoms: Atoms, index: int, reason: str) -> RelaxResult:
    out = atoms.copy()
    out.calc = None
    return RelaxResult(out, float("nan"), float("nan"), 0, False, reason, index, out.get_chemical_formula())
