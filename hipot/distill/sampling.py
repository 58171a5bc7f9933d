"""Structures the teacher itself leads to: relaxations of substituted seeds (hipot's batched
relaxation) and snapshots of Langevin dynamics (hipot's MD task, one run per seed and
temperature, each resumable from its own trajectory)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ..evaluator import Evaluator
from ..types import StructureError
from .perturb import substituted, supercell


def _plain(atoms: Atoms, **info) -> Atoms:
    """Numbers, positions, cell and pbc only (no calculator, constraints or MD state)."""
    b = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    b.info.update({k: v for k, v in atoms.info.items() if k in ("source", "kind", "temperature")})
    b.info.update(info)
    return b


def relaxed_substitutions(seeds: Sequence[Atoms], teacher: Evaluator, copies: int, steps: int,
                          rng: np.random.Generator, split_probability: float = 0.5, batch_size: int = 64,
                          progress: bool = False) -> list[Atoms]:
    """`copies` substitutions of every periodic seed (elements drawn from those of all seeds that
    the teacher knows), each relaxed by the teacher for at most `steps` FIRE steps with its cell
    (fmax 0.05 eV/A): the starting guess and the end point of each are returned."""
    from ..tasks.relax import relax

    known = set(int(z) for z in teacher.model.species)
    pool = sorted({int(z) for a in seeds for z in a.numbers} & known)
    subs = [substituted(a, pool, rng, split_probability) for a in seeds if a.pbc.all() for _ in range(copies)
            if len(pool) > len(set(a.numbers.tolist()))]
    if not subs:
        return []
    out = []
    for s, r in zip(subs, relax(subs, teacher, fmax=0.05, smax=None, steps=steps, relax_cell=True,
                                batch_size=batch_size, progress=progress)):  # forces only: the recipe's data
        out.append(s)
        if r.error is None and np.isfinite(r.energy):
            out.append(_plain(r.atoms, kind="substituted-relaxed"))
    return out


def md_snapshots(seeds: Sequence[Atoms], teacher: Evaluator, folder: str | Path, temperatures: Sequence[float],
                 steps: int, every: int, timestep_fs: float, friction_per_fs: float, min_atoms: int, seed: int = 0,
                 progress: bool = False) -> list[Atoms]:
    """Langevin MD (hipot.tasks.md, ensemble nvt-langevin) of a supercell of each seed at each
    temperature, driven by the teacher; a snapshot every `every` steps (the starting frame not
    included). Each run keeps its trajectory in `folder`: a rerun continues unfinished runs and
    reads finished ones back. A run that stops on a structure the model refuses (atoms run into
    each other) keeps the snapshots it made and is not retried."""
    from ..tasks.md import md

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    every = max(1, min(every, steps))
    runs = [(k, a, t) for k, a in enumerate(seeds) for t in temperatures]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), desc="teacher MD", unit="run")
    snaps: list[Atoms] = []
    for k, a, temp in runs:
        traj = folder / f"{k:05d}-{int(round(temp))}K.traj"
        failed = traj.with_suffix(".failed")
        if not failed.exists():
            try:
                md(supercell(a, min_atoms), teacher, ensemble="nvt-langevin", temperature=float(temp),
                   timestep=timestep_fs, steps=steps, friction=friction_per_fs, interval=every, trajectory=str(traj),
                   restart=True, seed=seed + 7919 * k + int(round(temp)))
            except StructureError as e:
                failed.write_text(f"{e}\n")
        snaps.extend(_plain(f, kind="md", temperature=float(temp)) for f in _frames(traj) if f.info.get("md_step", 0))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for s in snaps:
        s.wrap()
    return snaps


def _frames(path: Path) -> list[Atoms]:
    """The complete frames of a trajectory (none if it was never written)."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    from ase.io import Trajectory

    out = []
    with Trajectory(str(path)) as traj:
        for k in range(len(traj)):
            try:
                out.append(traj[k])
            except Exception:  # a frame torn by a kill: the rest of the run is redone on restart
                break
    return out
