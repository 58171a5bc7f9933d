"""Elastic constants: the 6x6 tensor from finite strains with relaxed internal coordinates;
Voigt, Reuss and Hill bulk and shear moduli."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.units import GPa

from .common import ModelLike, Result, evaluate_many, require_periodic, resolve_model
from .relax import relax

# Voigt index -> (i, j) of the strain tensor; shear components are engineering strains (2 eps_ij).
VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


@dataclass
class ElasticResult(Result):
    """c: 6x6 elastic tensor in GPa (Voigt order xx, yy, zz, yz, xz, xy; symmetrized);
    moduli in GPa; `stable` is Born stability (all eigenvalues of c positive)."""

    c: np.ndarray
    k_vrh: float
    g_vrh: float
    k_voigt: float
    k_reuss: float
    g_voigt: float
    g_reuss: float
    stable: bool = True
    asymmetry: float = 0.0
    formula: str = ""
    strain: float = 0.01


def strain_matrix(voigt: np.ndarray) -> np.ndarray:
    """Symmetric 3x3 strain tensor from a Voigt vector (engineering shear strains)."""
    e = np.zeros((3, 3))
    for k, (i, j) in enumerate(VOIGT):
        e[i, j] = e[j, i] = voigt[k] if i == j else voigt[k] / 2.0
    return e


def strained(atoms: Atoms, voigt: np.ndarray) -> Atoms:
    """A copy deformed by F = I + eps (cell rows transform as a -> a F^T, atoms follow)."""
    a = atoms.copy()
    a.calc = None
    f = np.eye(3) + strain_matrix(voigt)
    a.set_cell(atoms.cell.array @ f.T, scale_atoms=True)
    return a


def vrh(c: np.ndarray) -> dict[str, float]:
    """Voigt, Reuss and Hill bulk and shear moduli of a 6x6 stiffness tensor (same units)."""
    s = np.linalg.inv(c)
    kv = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[1, 2] + c[0, 2])) / 9.0
    gv = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[1, 2] + c[0, 2]) + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15.0
    kr = 1.0 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[1, 2] + s[0, 2]))
    gr = 15.0 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[1, 2] + s[0, 2]) + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
    return {"k_voigt": kv, "k_reuss": kr, "g_voigt": gv, "g_reuss": gr, "k_vrh": (kv + kr) / 2, "g_vrh": (gv + gr) / 2}


def elastic(atoms: Atoms, model: ModelLike = "hienet-v3", *, strain: float = 0.01, relax_internal: bool = True,
            relax_first: bool = True, fmax: float = 0.005, steps: int = 300, device: str = "auto",
            dtype: str = "float32", batch_size: int = 64, progress: bool = False) -> ElasticResult:
    """C_ij = d sigma_i / d eps_j from strains of +-strain and +-strain/2 along each of the six Voigt
    components (a linear fit of the stress), internal coordinates relaxed at each strain. With
    relax_first the structure (cell and positions) is relaxed with the model beforehand, so that
    the tensor belongs to the model's own equilibrium."""
    require_periodic(atoms, "elastic")
    if not 0 < strain < 0.1:
        raise ValueError("elastic needs 0 < strain < 0.1")
    m = resolve_model(model, device, dtype)
    if relax_first:
        atoms = relax([atoms], m, fmax=fmax, steps=steps, relax_cell=True, symmetry=True)[0].atoms
    amplitudes = np.array([-1.0, -0.5, 0.5, 1.0]) * strain
    structures = []
    for j in range(6):
        for amp in amplitudes:
            v = np.zeros(6)
            v[j] = amp
            structures.append(strained(atoms, v))
    if relax_internal:
        res = relax(structures, m, fmax=fmax, steps=steps, relax_cell=False, batch_size=batch_size,
                    progress=progress)
        stresses = np.array([r.atoms.get_stress() for r in res])
    else:
        stresses = np.array([r["stress"] for r in evaluate_many(structures, m, batch_size, progress=progress)])
    stresses = stresses.reshape(6, len(amplitudes), 6)
    c = np.zeros((6, 6))
    for j in range(6):
        # ASE's stress is positive under tension, so sigma = C eps without a sign change.
        c[:, j] = np.polyfit(amplitudes, stresses[j], 1)[0]
    c /= GPa
    asym = float(np.abs(c - c.T).max() / 2)
    c = (c + c.T) / 2
    moduli = vrh(c)
    stable = bool(np.all(np.linalg.eigvalsh(c) > 0))
    return ElasticResult(c, moduli["k_vrh"], moduli["g_vrh"], moduli["k_voigt"], moduli["k_reuss"],
                         moduli["g_voigt"], moduli["g_reuss"], stable, asym, atoms.get_chemical_formula(), strain)
