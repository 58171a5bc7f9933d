"""Structures the teacher itself leads to: relaxations of substituted seeds (hipot's batched
relaxation, in parts that each survive an interruption) and snapshots of Langevin dynamics of
many supercells at once (`md.batched_langevin`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ..evaluator import Evaluator
from .perturb import substituted
from .workers import Teacher


def _plain(atoms: Atoms, **info) -> Atoms:
    """Numbers, positions, cell and pbc only (no calculator, constraints or MD state)."""
    b = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    b.info.update({k: v for k, v in atoms.info.items() if k in ("source", "kind", "temperature")})
    b.info.update(info)
    return b


def _relax_part(teacher: Evaluator, chunk: list[Atoms], path: Path, steps: int, batch_size: int) -> int:
    """Relax one part of the substitutions (in a worker) and write the starts and end points to `path`."""
    import ase.io

    from ..io import atomic_write
    from ..tasks.relax import relax

    made = []
    for s, r in zip(chunk, relax(chunk, teacher, fmax=0.05, smax=None, steps=steps, relax_cell=True,
                                     batch_size=batch_size)):
        made.append(s)
        if r.error is None and np.isfinite(r.energy):
            made.append(_plain(r.atoms, kind="substituted-relaxed"))
    atomic_write(path, lambda tmp: ase.io.write(tmp, made, format="extxyz"))
    return len(chunk)


def relaxed_substitutions(seeds: Sequence[Atoms], teacher: Teacher, species: Sequence[int], copies: int, steps: int,
                          rng: np.random.Generator, folder: str | Path, split_probability: float = 0.5,
                          batch_size: int = 64, part_size: int = 256, progress: bool = False) -> list[Atoms]:
    """`copies` substitutions of every periodic seed (elements drawn from those of all seeds that
    the teacher knows, `species`), each relaxed by the teacher for at most `steps` FIRE steps with
    its cell (fmax 0.05 eV/A): the starting guess and the end point of each are returned. Each
    `part_size` substitutions are relaxed as one job (spread over the teacher's workers) and kept
    in FOLDER/part-NNNN.extxyz; a rerun relaxes only the parts not yet written (the substitutions
    themselves are drawn the same way)."""
    import ase.io

    folder = Path(folder)
    known = set(int(z) for z in species)
    pool = sorted({int(z) for a in seeds for z in a.numbers} & known)
    subs = [substituted(a, pool, rng, split_probability) for a in seeds if a.pbc.all() for _ in range(copies)
            if len(pool) > len(set(a.numbers.tolist()))]
    paths = [folder / f"part-{p:04d}.extxyz" for p in range(0, (len(subs) + part_size - 1) // part_size)]
    jobs = [(subs[k * part_size:(k + 1) * part_size], path, steps, batch_size)
            for k, path in enumerate(paths) if not path.exists()]
    teacher.run(_relax_part, jobs, f"teacher relaxations ({teacher.workers} workers)" if progress else None)
    return [a for path in paths if path.stat().st_size for a in ase.io.read(path, ":", format="extxyz")]
