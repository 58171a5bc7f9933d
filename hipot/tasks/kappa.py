"""Lattice thermal conductivity with phono3py, following the Matbench Discovery protocol (Póta et
al., arXiv:2408.00755): relaxation keeping the crystal's symmetry to a tight fmax, second- and
third-order force constants from finite displacements of 0.03 A, phonons on a q-mesh (imaginary
modes end the calculation, as there), then the Wigner transport equation in the relaxation-time
approximation at 300 K with isotope scattering (kappa = particle-like + coherence term).

The stages, each usable alone: `relax_for_kappa` (many structures in one batched relaxation),
`displacements` (the phono3py object and its displaced supercells), `compute_forces` (all
displaced supercells of a compound in batches), `solve` (force constants, phonons, kappa).
`kappa` runs them for one structure."""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from ..optional import require
from .checks import cutoff_crossing, note
from .common import ModelLike, Result, evaluate_many, require_periodic, resolve_model
from .relax import relax


@dataclass
class KappaSettings:
    """How kappa is computed. Supercells are diagonal multiples of the conventional standard cell
    (spglib; with standardize=False of the cell as given), explicit or the smallest at least
    `*_length` A wide between opposite faces."""

    fc3_supercell: tuple[int, int, int] | None = None
    fc3_length: float = 8.0
    fc2_supercell: tuple[int, int, int] | None = None
    fc2_length: float = 12.0
    displacement: float = 0.03  # A
    mesh: tuple[int, int, int] | float = (19, 19, 19)  # q-mesh, or a length (phono3py's rule)
    temperatures: tuple[float, ...] = (300.0,)
    isotope: bool = True
    wigner: bool = True  # add the coherence term (Simoncelli, Marzari, Mauri 2019)
    boundary_mfp: float = 1e6  # micrometre: boundary scattering switched off in effect
    symprec: float = 1e-5
    imaginary_threshold: float = -0.01  # THz, away from Gamma (at Gamma the 3 acoustic modes may dip below 0)
    ignore_imaginary: bool = False  # compute kappa anyway (the protocol stops there)
    standardize: bool = True


QUICK = KappaSettings(fc3_supercell=(1, 1, 1), fc2_supercell=(2, 2, 2), mesh=(6, 6, 6))
"""Coarse settings for a smoke run on a CPU: the conventional cell for fc3, twice it for fc2, a 6^3 mesh."""


@dataclass
class KappaResult(Result):
    """kappa in W/(m K): per temperature the Voigt tensor (xx, yy, zz, yz, xz, xy) of the total
    (kappa = kappa_p + kappa_c), particle-like and coherence parts, and kappa_ave (mean of the
    diagonal of the total). None where the protocol stopped: `failure` says why (imaginary modes,
    broken symmetry); `max_steps` marks a relaxation that used all its steps (the protocol counts
    it a failure too). Frequencies in THz."""

    formula: str
    spacegroup_initial: int
    spacegroup: int
    broken_symmetry: bool
    relax_steps: int
    max_steps: bool
    fc2_supercell: list[int]
    fc3_supercell: list[int]
    n_fc2_displacements: int
    n_fc3_displacements: int
    mesh: list[int]
    temperatures: list[float]
    has_imaginary: bool
    min_frequency: float
    kappa: list[list[float]] | None = None
    kappa_p: list[list[float]] | None = None
    kappa_c: list[list[float]] | None = None
    kappa_ave: list[float] | None = None
    failure: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Relaxed:
    """A structure after the protocol's relaxation, with what the result reports about it."""

    atoms: Atoms
    spacegroup_initial: int
    spacegroup: int
    steps: int
    max_steps: bool
    error: str | None = None


def spacegroup(atoms: Atoms, symprec: float) -> int:
    spglib = require("spglib", "tasks", "symmetry")
    ds = spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers), symprec=symprec)
    if ds is None:
        return 0
    return int(ds.number if hasattr(ds, "number") else ds["number"])


def relax_for_kappa(structures: Sequence[Atoms], model: ModelLike, *, fmax: float = 1e-4, steps: int = 300,
                    prerelax_fmax: float | None = 0.005, prerelax_steps: int = 300, symprec: float = 1e-5,
                    batch_size: int = 64, progress: bool = False) -> list[Relaxed]:
    """The protocol's relaxation, all structures in one batch: each is symmetrised first (to its
    space group at 0.01 A), then FIRE + FrechetCellFilter keeping the symmetry, to `fmax` within
    `steps` steps. With `prerelax_fmax` a looser relaxation comes first, so that a structure not
    made with this model starts the protocol's relaxation close to its minimum, as the protocol's
    DFT structures do."""
    from ase.spacegroup.symmetrize import refine_symmetry

    m = resolve_model(model)
    work, initial = [], []
    for a in structures:
        require_periodic(a, "kappa")
        b = a.copy()
        b.calc = None
        refine_symmetry(b, symprec=0.01, verbose=False)
        work.append(b)
        initial.append(spacegroup(b, symprec))
    if prerelax_fmax:
        pre = relax(work, m, fmax=prerelax_fmax, steps=prerelax_steps, relax_cell=True, symmetry=True,
                    batch_size=batch_size, progress=progress)
        work = [r.atoms if r.error is None else w for r, w in zip(pre, work)]
    res = relax(work, m, fmax=fmax, steps=steps, relax_cell=True, symmetry=True, batch_size=batch_size,
                progress=progress)
    out = []
    for r, sg0 in zip(res, initial):
        a = r.atoms.copy()
        a.calc = None
        out.append(Relaxed(a, sg0, spacegroup(a, symprec) if r.error is None else 0, int(r.steps),
                           not r.converged and r.error is None, r.error))
    return out


def _diagonal(reps: Sequence[int] | None, cell: np.ndarray, length: float) -> list[int]:
    if reps is not None:
        reps = [int(x) for x in reps]
        if len(reps) != 3 or min(reps) < 1:
            raise ValueError(f"a supercell is three positive integers, not {reps}")
        return reps
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return [max(1, int(np.ceil(length / w - 1e-6))) for w in widths]


def displacements(atoms: Atoms, settings: KappaSettings):
    """The phono3py object of the conventional standard cell of `atoms` (or of `atoms` itself,
    settings.standardize off) with its fc2 and fc3 displacements generated."""
    require("phono3py", "kappa", "thermal conductivity")
    spglib = require("spglib", "tasks", "symmetry")
    from phono3py import Phono3py
    from phonopy.structure.atoms import PhonopyAtoms

    lattice, positions, numbers = atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers
    if settings.standardize:
        lattice, positions, numbers = spglib.standardize_cell((lattice, positions, numbers), to_primitive=False,
                                                              symprec=settings.symprec)
    unit = PhonopyAtoms(numbers=numbers, cell=lattice, scaled_positions=positions)
    fc3 = _diagonal(settings.fc3_supercell, lattice, settings.fc3_length)
    fc2 = _diagonal(settings.fc2_supercell, lattice, settings.fc2_length)
    import warnings

    with warnings.catch_warnings():  # phonopy notes that 'auto' changed meaning in v4; we want v4's
        warnings.filterwarnings("ignore", message=".*primitive_matrix.*")
        ph3 = Phono3py(unit, supercell_matrix=np.diag(fc3), phonon_supercell_matrix=np.diag(fc2),
                       primitive_matrix="auto", symprec=settings.symprec)
    ph3.mesh_numbers = settings.mesh
    ph3.generate_displacements(distance=settings.displacement)
    return ph3


def _atoms(patoms) -> Atoms:
    return Atoms(numbers=patoms.numbers, cell=patoms.cell, scaled_positions=patoms.scaled_positions, pbc=True)


def compute_forces(ph3, model, batch_size: int = 64, progress: bool = False) -> None:
    """Forces on every displaced supercell (fc2 and fc3 sets, each in batches) into `ph3`."""
    for cells, attr in ((ph3.phonon_supercells_with_displacements, "phonon_forces"),
                        (ph3.supercells_with_displacements, "forces")):
        structures = [_atoms(c) for c in cells if c is not None]
        results = evaluate_many(structures, model, batch_size=batch_size, progress=progress)
        setattr(ph3, attr, np.array([r["forces"] for r in results]))


def imaginary(frequencies: np.ndarray, threshold: float) -> bool:
    """The protocol's test: any frequency below 0 at Gamma besides the three acoustic modes, or
    below `threshold` anywhere else on the mesh (the first grid point is Gamma)."""
    f = np.asarray(frequencies)
    if not np.all(np.isfinite(f)):
        return True
    return bool(np.any(f[0, 3:] < 0) or np.any(f[1:] < threshold))


def _run_conductivity(ph3, settings: KappaSettings) -> dict[str, np.ndarray]:
    """phono3py's RTA (Wigner with settings.wigner) across phono3py versions: total, particle and
    coherence kappa, each (temperatures, 6)."""
    params = inspect.signature(ph3.run_thermal_conductivity).parameters
    kw: dict[str, Any] = dict(temperatures=list(settings.temperatures), is_isotope=settings.isotope,
                              boundary_mfp=settings.boundary_mfp, log_level=0)
    if settings.wigner:
        if "transport_type" in params:  # phono3py >= 4.x: the coherence term is the SMM19 variant
            kw["transport_type"] = "SMM19"
        else:
            kw["conductivity_type"] = "wigner"
    ph3.run_thermal_conductivity(**kw)
    tc = ph3.thermal_conductivity
    if not settings.wigner:
        k = np.asarray(tc.kappa)[0]
        return {"kappa": k, "kappa_p": k, "kappa_c": np.zeros_like(k)}
    if hasattr(tc, "kappa_TOT_RTA"):  # phono3py 3.x
        return {"kappa": np.asarray(tc.kappa_TOT_RTA)[0], "kappa_p": np.asarray(tc.kappa_P_RTA)[0],
                "kappa_c": np.asarray(tc.kappa_C)[0]}
    total, intra = np.asarray(tc.kappa)[0], np.asarray(tc.kappa_intra)[0]
    return {"kappa": total, "kappa_p": intra, "kappa_c": total - intra}


def solve(ph3, settings: KappaSettings) -> dict[str, Any]:
    """Force constants (symmetrised), phonons on the mesh and, unless they are imaginary (or
    settings.ignore_imaginary), kappa. Forces must be set in `ph3`."""
    if callable(getattr(ph3, "symmetrize_fc2", None)):  # phono3py >= 4: produce, then symmetrise
        ph3.produce_fc2()
        ph3.symmetrize_fc2()
    else:
        ph3.produce_fc2(symmetrize_fc2=True)
    ph3.init_phph_interaction(symmetrize_fc3q=False)
    ph3.run_phonon_solver()
    freqs = np.asarray(ph3.get_phonon_data()[0])
    out: dict[str, Any] = {"has_imaginary": imaginary(freqs, settings.imaginary_threshold),
                           "min_frequency": float(np.min(freqs))}
    if out["has_imaginary"] and not settings.ignore_imaginary:
        return out
    if callable(getattr(ph3, "symmetrize_fc3", None)):
        ph3.produce_fc3()
        ph3.symmetrize_fc3()
    else:
        ph3.produce_fc3(symmetrize_fc3r=True)
    ph3.init_phph_interaction(symmetrize_fc3q=False)
    out.update(_run_conductivity(ph3, settings))
    return out


def conductivity(relaxed: Relaxed, model: ModelLike, settings: KappaSettings | None = None, batch_size: int = 64,
                 progress: bool = False) -> KappaResult:
    """kappa of a structure already relaxed by `relax_for_kappa` (the protocol's failures, broken
    symmetry and imaginary modes, stop before kappa)."""
    settings = settings or KappaSettings()
    m = resolve_model(model)
    t0 = time.perf_counter()
    atoms = relaxed.atoms
    ph3 = displacements(atoms, settings)
    n2 = len(ph3.phonon_supercells_with_displacements)
    n3 = len([c for c in ph3.supercells_with_displacements if c is not None])
    res = KappaResult(atoms.get_chemical_formula(), relaxed.spacegroup_initial, relaxed.spacegroup,
                      relaxed.spacegroup != relaxed.spacegroup_initial, relaxed.steps, relaxed.max_steps,
                      np.diag(ph3.phonon_supercell_matrix).tolist(), np.diag(ph3.supercell_matrix).tolist(), n2, n3,
                      [int(x) for x in ph3.mesh_numbers], list(settings.temperatures), False, float("nan"))
    if relaxed.error is not None:
        res.failure = f"relaxation failed: {relaxed.error}"
        return res
    if res.broken_symmetry:
        res.failure = f"relaxation broke the symmetry (space group {relaxed.spacegroup_initial} -> {relaxed.spacegroup})"
        return res
    note(res, cutoff_crossing(atoms, m, 2 * settings.displacement,
                              f"pairs of {settings.displacement:g} A displacements (third order)"))
    compute_forces(ph3, m, batch_size, progress)
    t1 = time.perf_counter()
    out = solve(ph3, settings)
    res.seconds = {"forces": round(t1 - t0, 2), "phono3py": round(time.perf_counter() - t1, 2)}
    res.has_imaginary, res.min_frequency = out["has_imaginary"], out["min_frequency"]
    if "kappa" not in out:
        res.failure = f"imaginary modes (lowest {res.min_frequency:.3f} THz)"
        return res
    res.kappa, res.kappa_p, res.kappa_c = (np.asarray(out[k]).tolist() for k in ("kappa", "kappa_p", "kappa_c"))
    res.kappa_ave = np.mean(np.asarray(out["kappa"])[:, :3], axis=1).tolist()
    return res


def kappa(atoms: Atoms, model: ModelLike = "hienet-v3", *, settings: KappaSettings | None = None,
          relax_first: bool = True, fmax: float = 1e-4, steps: int = 300, device: str = "auto",
          dtype: str = "float32", batch_size: int = 64, progress: bool = False) -> KappaResult:
    """Lattice thermal conductivity of one crystal (see the module's docstring for the protocol).
    With relax_first=False the structure is used as given (its symmetry is still checked)."""
    m = resolve_model(model, device, dtype)
    settings = settings or KappaSettings()
    if relax_first:
        (relaxed,) = relax_for_kappa([atoms], m, fmax=fmax, steps=steps, symprec=settings.symprec,
                                     batch_size=batch_size)
    else:
        require_periodic(atoms, "kappa")
        sg = spacegroup(atoms, settings.symprec)
        relaxed = Relaxed(atoms.copy(), sg, sg, 0, False)
    return conductivity(relaxed, m, settings, batch_size, progress)
