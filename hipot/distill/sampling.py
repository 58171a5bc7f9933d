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


def _plain(atoms: Atoms, **info) -> Atoms:
    """Numbers, positions, cell and pbc only (no calculator, constraints or MD state)."""
    b = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    b.info.update({k: v for k, v in atoms.info.items() if k in ("source", "kind", "temperature")})
    b.info.update(info)
    return b


def relaxed_substitutions(seeds: Sequence[Atoms], teacher: Evaluator, copies: int, steps: int,
                          rng: np.random.Generator, split_probability: float = 0.5, batch_size: int = 64,
                          progress: bool = False, folder: str | Path | None = None,
                          part_size: int = 512) -> list[Atoms]:
    """`copies` substitutions of every periodic seed (elements drawn from those of all seeds that
    the teacher knows), each relaxed by the teacher for at most `steps` FIRE steps with its cell
    (fmax 0.05 eV/A): the starting guess and the end point of each are returned. With `folder`,
    each `part_size` substitutions' results are kept there (FOLDER/part-NNNN.extxyz) and a rerun
    relaxes only the parts not yet written (the substitutions themselves are drawn the same way)."""
    import ase.io

    from ..io import atomic_write
    from ..tasks.relax import relax

    known = set(int(z) for z in teacher.model.species)
    pool = sorted({int(z) for a in seeds for z in a.numbers} & known)
    subs = [substituted(a, pool, rng, split_probability) for a in seeds if a.pbc.all() for _ in range(copies)
            if len(pool) > len(set(a.numbers.tolist()))]
    if not subs:
        return []
    out: list[Atoms] = []
    for p, start in enumerate(range(0, len(subs), part_size)):
        chunk = subs[start:start + part_size]
        path = Path(folder) / f"part-{p:04d}.extxyz" if folder is not None else None
        if path is not None and path.exists():
            out.extend(ase.io.read(path, ":", format="extxyz") if path.stat().st_size else [])
            continue
        made = []
        for s, r in zip(chunk, relax(chunk, teacher, fmax=0.05, steps=steps, relax_cell=True, batch_size=batch_size,
                                     progress=progress)):
            made.append(s)
            if r.error is None and np.isfinite(r.energy):
                made.append(_plain(r.atoms, kind="substituted-relaxed"))
        if path is not None:
            atomic_write(path, lambda tmp: ase.io.write(tmp, made, format="extxyz"))
        out.extend(made)
    return out
