"""New structures from seeds without a model: rattled and strained copies, element substitutions
(the way WBM made its candidates from Materials Project prototypes), supercells for MD."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import covalent_radii


def rattled(atoms: Atoms, sigma: float, rng: np.random.Generator) -> Atoms:
    """A copy with every position moved by a normal deviate of `sigma` A."""
    b = atoms.copy()
    b.positions += rng.normal(scale=sigma, size=b.positions.shape)
    return b


def strained(atoms: Atoms, max_strain: float, rng: np.random.Generator, sigma: float = 0.03) -> Atoms:
    """A copy under a random symmetric strain (each component within +-max_strain), rattled by
    `sigma` A."""
    eps = rng.uniform(-max_strain, max_strain, (3, 3))
    b = atoms.copy()
    b.set_cell(b.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
    b.positions += rng.normal(scale=sigma, size=b.positions.shape)
    return b


def perturbed(seeds: Sequence[Atoms], rattled_copies: int, rattle_sigma: tuple[float, float], strained_copies: int,
              max_strain: float, rng: np.random.Generator) -> list[Atoms]:
    """The seeds themselves, `rattled_copies` rattled copies of each (sigma drawn uniformly from
    `rattle_sigma`) and, for periodic cells, `strained_copies` strained copies; info['kind'] says which."""
    out = []
    for a in seeds:
        out.append(a.copy())
        for _ in range(rattled_copies):
            b = rattled(a, rng.uniform(*rattle_sigma), rng)
            b.info["kind"] = "rattled"
            out.append(b)
        if a.pbc.all():
            for _ in range(strained_copies):
                b = strained(a, max_strain, rng)
                b.info["kind"] = "strained"
                out.append(b)
    return out


def substituted(atoms: Atoms, pool: Sequence[int], rng: np.random.Generator, split_probability: float = 0.5) -> Atoms:
    """A copy with each element replaced by a different one drawn from `pool` (distinct elements
    stay distinct); with `split_probability` the sites of one element are further shared at random
    between two new elements (one more component). The cell is scaled by the cube root of the
    ratio of summed covalent-radius volumes, a first guess that a relaxation then corrects."""
    species = sorted(set(atoms.numbers.tolist()))
    pool = np.array(sorted(set(int(z) for z in pool)))
    if len(pool) < len(species) + 1:
        raise ValueError("the element pool is too small for a substitution")
    new = rng.choice(pool, size=len(species) + 1, replace=False)
    numbers = atoms.numbers.copy()
    for old, z in zip(species, new):
        numbers[atoms.numbers == old] = z
    if rng.uniform() < split_probability:
        counts = [(int(np.sum(atoms.numbers == s)), s) for s in species]
        many = [s for c, s in counts if c >= 2]
        if many:
            s = many[rng.integers(len(many))]
            sites = np.flatnonzero(atoms.numbers == s)
            take = rng.choice(sites, size=rng.integers(1, len(sites)), replace=False)
            numbers[take] = new[-1]
    b = Atoms(numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if b.pbc.all():
        ratio = np.sum(covalent_radii[numbers] ** 3) / np.sum(covalent_radii[atoms.numbers] ** 3)
        b.set_cell(b.cell.array * ratio ** (1.0 / 3.0), scale_atoms=True)
    b.info.update({k: v for k, v in atoms.info.items() if k == "source"})
    b.info["kind"] = "substituted"
    return b


def supercell(atoms: Atoms, min_atoms: int) -> Atoms:
    """Repeat a periodic cell along its shortest vectors until it holds at least min_atoms atoms
    (a 2-atom cell's dynamics moves every image alike)."""
    if not atoms.pbc.all():
        return atoms.copy()
    reps = np.ones(3, dtype=int)
    lengths = atoms.cell.lengths()
    while len(atoms) * reps.prod() < min_atoms:
        reps[np.argmin(lengths * reps)] += 1
    out = atoms.repeat(tuple(int(r) for r in reps))
    out.info.update(atoms.info)
    return out
