"""Constants fitted to the training data before training, as SevenNet and the official HIENet code fit them.

- shift: per-element reference energies, by (ridge) least squares of the total energies on the
  composition, no intercept; or given by the user.
- scale: the root mean square of the force components (the atomic energies' natural scale).
- avg_num_neighbors: mean number of neighbours per atom within the cutoff (message normaliser).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase.data import chemical_symbols

from .data import Dataset, _spaced


@dataclass
class Statistics:
    species: list[int]
    element_energies: np.ndarray  # (S,) eV, in `species` order
    force_rms: float  # eV/A
    avg_num_neighbors: float
    frames: int


def composition(numbers: np.ndarray, species: Sequence[int]) -> np.ndarray:
    index = {z: k for k, z in enumerate(species)}
    row = np.zeros(len(species))
    for z, c in zip(*np.unique(numbers, return_counts=True)):
        row[index[int(z)]] = c
    return row


def fit_element_energies(counts: np.ndarray, energies: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """Per-element energies x minimising |counts x - energies|^2 + alpha |x|^2 (no intercept).
    alpha = 0: the minimum-norm least-squares solution (e.g. one molecule: only the total of its
    composition is determined, and spread over its elements in proportion to their counts)."""
    if alpha > 0:
        a = counts.T @ counts + alpha * np.eye(counts.shape[1])
        return np.linalg.solve(a, counts.T @ energies)
    return np.linalg.lstsq(counts, energies, rcond=None)[0]


def compute_statistics(ds: Dataset, species: Sequence[int], alpha: float = 0.0,
                       max_frames: int | None = 20000) -> Statistics:
    """Statistics of (an evenly spaced subset of) a data set."""
    idx = _spaced(len(ds), max_frames)
    counts, energies = [], []
    f2, nf, edges, atoms = 0.0, 0, 0, 0
    for i in idx:
        s = ds[int(i)]
        counts.append(composition(s.numbers, species))
        energies.append(s.energy)
        if s.forces is not None:
            f2 += float(np.sum(s.forces ** 2))
            nf += s.forces.size
        edges += len(s.center)
        atoms += s.num_atoms
    shift = fit_element_energies(np.array(counts), np.array(energies), alpha)
    return Statistics(species=list(species), element_energies=shift,
                      force_rms=float(np.sqrt(f2 / nf)) if nf else 1.0,
                      avg_num_neighbors=edges / max(atoms, 1), frames=len(idx))


def given_element_energies(table: dict[str, float], species: Sequence[int]) -> np.ndarray:
    """User-given reference energies (symbol -> eV) in `species` order; every element needs one."""
    missing = [chemical_symbols[z] for z in species if chemical_symbols[z] not in table]
    if missing:
        raise ValueError(f"statistics.element_energies lacks {', '.join(missing)}")
    return np.array([float(table[chemical_symbols[z]]) for z in species])
