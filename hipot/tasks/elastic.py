"""Elastic constants: the 6x6 tensor from finite strains with relaxed internal coordinates;
Voigt, Reuss and Hill bulk and shear moduli. Many structures go through one batched relaxation
per stage (`elastic_many`). A warning says when a neighbour shell lies within the strain of a
cutoff where the model's energy is not continuous."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.units import GPa

from .checks import cutoff_crossing, note
from .common import ModelLike, Result, evaluate_many, require_periodic, resolve_model
from .relax import relax

AMPLITUDES = (-1.0, -0.5, 0.5, 1.0)  # multiples of `strain` applied to each Voigt component

# Voigt index -> (i, j) of the strain tensor; shear components are engineering strains (2 eps_ij).
VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


@dataclass
class ElasticResult(Result):
    """c: 6x6 elastic tensor in GPa (Voigt order xx, yy, zz, yz, xz, xy; symmetrized);
    moduli in GPa; `stable` is Born stability (all eigenvalues of c positive). `error` names a
    relaxation that failed (the numbers are then NaN)."""

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
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


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


def strain_set(atoms: Atoms, strain: float) -> list[Atoms]:
    """The strained copies, component by component (Voigt order), AMPLITUDES x strain each."""
    out = []
    for j in range(6):
        for amp in AMPLITUDES:
            v = np.zeros(6)
            v[j] = amp * strain
            out.append(strained(atoms, v))
    return out


def from_stresses(stresses: np.ndarray, strain: float, formula: str = "") -> ElasticResult:
    """The result from the stresses (eV/A^3) of `strain_set`, shape (6 * len(AMPLITUDES), 6):
    C_ij = d sigma_i / d eps_j as the slope of a line through each component's stresses."""
    amplitudes = np.array(AMPLITUDES) * strain
    stresses = np.asarray(stresses, float).reshape(6, len(amplitudes), 6)
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
                         moduli["g_voigt"], moduli["g_reuss"], stable, asym, formula, strain)


def failed(formula: str, strain: float, error: str) -> ElasticResult:
    nan = float("nan")
    return ElasticResult(np.full((6, 6), nan), nan, nan, nan, nan, nan, nan, False, nan, formula, strain, [], error)


def elastic_many(structures: Sequence[Atoms], model: ModelLike = "hienet-v3", *, strain: float = 0.01,
                 relax_internal: bool = True, relax_first: bool = True, fmax: float = 0.005, steps: int = 300,
                 device: str = "auto", dtype: str = "float32", batch_size: int = 64,
                 progress: bool = False) -> list[ElasticResult]:
    """`elastic` for many structures: every stage (relaxation of the structures, relaxation of all
    strained cells, their stresses) in one batched call. A structure whose relaxation fails gets a
    result with `error` set and NaN numbers; the others are unaffected."""
    for a in structures:
        require_periodic(a, "elastic")
    if not 0 < strain < 0.1:
        raise ValueError("elastic needs 0 < strain < 0.1")
    m = resolve_model(model, device, dtype)
    structures = list(structures)
    errors: list[str | None] = [None] * len(structures)
    if relax_first:
        res = relax(structures, m, fmax=fmax, steps=steps, relax_cell=True, symmetry=True, batch_size=batch_size,
                    progress=progress)
        structures = [r.atoms for r in res]
        errors = [r.error for r in res]
    per = 6 * len(AMPLITUDES)
    todo = [k for k, e in enumerate(errors) if e is None]
    cells = [s for k in todo for s in strain_set(structures[k], strain)]
    if relax_internal and cells:
        res = relax(cells, m, fmax=fmax, steps=steps, relax_cell=False, batch_size=batch_size, progress=progress)
        for i, r in enumerate(res):
            if r.error is not None and errors[todo[i // per]] is None:
                errors[todo[i // per]] = r.error
        cells = [r.atoms for r in res]
    ok = [i for i in range(len(cells)) if errors[todo[i // per]] is None]
    stresses = dict(zip(ok, (r["stress"] for r in evaluate_many([cells[i] for i in ok], m, batch_size))))
    out = []
    for k, atoms in enumerate(structures):
        formula = atoms.get_chemical_formula()
        if errors[k] is not None:
            out.append(failed(formula, strain, errors[k]))
            continue
        first = todo.index(k) * per
        r = from_stresses(np.array([stresses[first + i] for i in range(per)]), strain, formula)
        # a distance r changes by at most |eps| r under a strain eps (internal relaxation aside)
        cutoff = getattr(getattr(m, "model", None), "cutoff", 0.0)
        note(r, cutoff_crossing(atoms, m, strain * float(cutoff), f"a strain of {strain:g}"))
        out.append(r)
    return out


def elastic(atoms: Atoms, model: ModelLike = "hienet-v3", *, strain: float = 0.01, relax_internal: bool = True,
            relax_first: bool = True, fmax: float = 0.005, steps: int = 300, device: str = "auto",
            dtype: str = "float32", batch_size: int = 64, progress: bool = False) -> ElasticResult:
    """C_ij = d sigma_i / d eps_j from strains of +-strain and +-strain/2 along each of the six Voigt
    components (a linear fit of the stress), internal coordinates relaxed at each strain. With
    relax_first the structure (cell and positions) is relaxed with the model beforehand (symmetry
    kept), so that the tensor belongs to the model's own equilibrium."""
    (r,) = elastic_many([atoms], model, strain=strain, relax_internal=relax_internal, relax_first=relax_first,
                        fmax=fmax, steps=steps, device=device, dtype=dtype, batch_size=batch_size, progress=progress)
    if r.error is not None:
        raise ValueError(f"elastic: {r.error}")
    return r
