"""The physics contract every engine of a model passes, as plain functions.

An engine is any callable that maps a list of ase.Atoms to one result dict each, with the ASE
calculator's keys and units: "energy" (eV), "forces" (N, 3; eV/A), "stress" (6, ASE Voigt order
and sign, eV/A^3; structures periodic in 3D only) and, where given, "energies" (N), "stresses"
(N, 6; per-atom stresses summing to the stress, ASE's `get_stresses`) and "virials" (N, 6; per-atom
virials in eV summing to -stress * V). `hipot.engines` makes engines of the calculator, the batched
Evaluator and torch-sim; tests/test_lammps_contract.py one of LAMMPS, tests/fake_lammps.py one of
its driver in process.

Each check evaluates what it needs in one engine call and returns a `Check` (measured, allowed,
passed); `run_contract` runs them all into a `Report`. What must be equal is equal to `Tolerances`
(by precision); what a model breaks on purpose it declares (`Declared`; `hipot.check` holds
HIENet-V3's and DFT-D3's, and runs the contract on a model file through its doors): HIENet-V3 is
not mirror-symmetric (trained with parity off: a reflection changes its energy by up to ~5e-4
eV/atom, as in the official code) and its energy steps when a neighbour crosses its cutoff. The
contract measures and reports both, and fails on them only beyond what the model declares.

Why one module: the checks share one comparison (`_equal`), one finite-difference verdict
(`_converges`) and one report; what is model-specific (declarations) and engine-specific
(adapters) lives in hipot/check.py and hipot/engines.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

Engine = Callable[[Sequence[Atoms]], list[dict]]


@dataclass(frozen=True)
class Tolerances:
    """What 'equal' means for an engine's results: energy per atom (eV), forces (eV/A), stress
    (eV/A^3); `eps`: the relative precision of its energies, which sets the noise floor of
    finite differences (10 eps sum |E_i| / h); the finite-difference steps, displacement `h` (A)
    and strain `strain_h`, larger in float32 so that the h^2 error stands above that noise."""

    energy: float
    forces: float
    stress: float
    eps: float
    h: float = 1e-3
    strain_h: float = 1e-4

    @classmethod
    def for_dtype(cls, dtype: str) -> "Tolerances":
        """float64: round-off of a few thousand operations; float32: what the model's float32
        path gives on equal inputs written differently (rotated, permuted, batched)."""
        if str(dtype).removeprefix("torch.") == "float64":
            return cls(energy=1e-10, forces=1e-9, stress=1e-10, eps=2.2e-16)
        return cls(energy=5e-6, forces=5e-4, stress=5e-6, eps=1.2e-7, h=1e-2, strain_h=1e-3)


@dataclass(frozen=True)
class Declared:
    """Properties a model breaks on purpose, with how far (None: measured and reported, not
    checked; 0: exact, to Tolerances), and why. A parity-symmetric model declares reflection 0;
    a smooth one a cutoff jump of 0; one with hard cutoffs (DFT-D3) the energy steps per atom that
    pairs crossing them make, which finite differences over a step h see as an error of step / h."""

    reflection_energy: float | None = 0.0  # eV/atom
    reflection_forces: float | None = 0.0  # eV/A
    reflection_stress: float | None = 0.0  # eV/A^3
    cutoff_jump: float | None = 0.0  # eV: energy step when a neighbour crosses the model's cutoff
    beyond_cutoff: float | None = 0.0  # eV: interaction of a pair beyond the cutoff (None: a long-range term)
    energy_steps: float = 0.0  # eV/atom: steps of hard cutoffs (other than the model's) under finite differences
    why_reflection: str = ""
    why_cutoff: str = ""
    why_fd: str = ""

    def plus(self, other: "Declared") -> "Declared":
        """A sum of two terms (a model and its dispersion) breaks what either breaks."""
        def add(a, b):
            return None if a is None or b is None else a + b

        return Declared(*(add(getattr(self, f), getattr(other, f)) for f in
                          ("reflection_energy", "reflection_forces", "reflection_stress", "cutoff_jump",
                           "beyond_cutoff")),
                        self.energy_steps + other.energy_steps,
                        *("; ".join(x for x in (getattr(self, f), getattr(other, f)) if x)
                          for f in ("why_reflection", "why_cutoff", "why_fd")))


@dataclass
class Check:
    """One check on one structure: passed, the numbers measured and what was allowed."""

    name: str
    structure: str
    passed: bool
    measured: dict[str, float] = field(default_factory=dict)
    allowed: dict[str, float | None] = field(default_factory=dict)
    note: str = ""

    def __str__(self) -> str:
        nums = ", ".join(f"{k} {v:.3g}" + (f" (<= {self.allowed[k]:.3g})" if self.allowed.get(k) is not None else "")
                         for k, v in self.measured.items())
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<22} {self.structure:<24} {nums}" + (
            f"  [{self.note}]" if self.note else "")


@dataclass
class Report:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def __str__(self) -> str:
        return "\n".join(str(c) for c in self.checks)

    def measured(self, name: str, key: str) -> list[float]:
        """The numbers `key` of every check called `name` (e.g. 'reflection', 'dE/atom')."""
        return [c.measured[key] for c in self.checks if c.name == name and key in c.measured]


# ---------------------------------------------------------------- helpers
def _label(atoms: Atoms) -> str:
    return str(atoms.info.get("name", atoms.get_chemical_formula()))


def _periodic(atoms: Atoms) -> bool:
    return bool(np.all(atoms.pbc))


def _max(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.abs(x).max()) if x.size else 0.0


def _stress3(r: dict) -> np.ndarray:
    return voigt_6_to_full_3x3_stress(np.asarray(r["stress"], dtype=np.float64))


def _within(measured: dict[str, float], allowed: dict[str, float | None]) -> bool:
    return all(allowed.get(k) is None or (np.isfinite(v) and v <= allowed[k]) for k, v in measured.items())


def _equal(name: str, atoms: Atoms, r: dict, ref: dict, tol: Tolerances, forces=None, stress=None,
           energies=None, allowed: dict | None = None, note: str = "") -> Check:
    """`r` must equal `ref` after mapping ref's forces, stress and per-atom energies as given."""
    n = len(atoms)
    f_ref = np.asarray(ref["forces"]) if forces is None else forces
    measured = {"dE/atom": abs(r["energy"] - ref["energy"]) / n, "dF": _max(np.asarray(r["forces"]) - f_ref)}
    if "energies" in r and "energies" in ref:
        e_ref = np.asarray(ref["energies"]) if energies is None else energies
        measured["dE_i"] = _max(np.asarray(r["energies"]) - e_ref)
    if "stress" in r and "stress" in ref:
        s_ref = _stress3(ref) if stress is None else stress
        measured["dσ"] = _max(_stress3(r) - s_ref)
    allowed = allowed or _equal_within(tol)
    return Check(name, _label(atoms), _within(measured, allowed), measured, allowed, note)


def _equal_within(tol: Tolerances) -> dict[str, float]:
    """What equal results may differ by: energy per atom, forces, per-atom energies, stress."""
    return {"dE/atom": tol.energy, "dF": tol.forces, "dE_i": tol.energy * 10, "dσ": tol.stress}


def random_rotation(seed: int) -> np.ndarray:
    """A proper rotation matrix drawn from `seed`."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def transformed(atoms: Atoms, matrix: np.ndarray) -> Atoms:
    """The structure with positions and cell mapped by `matrix` (x -> matrix @ x)."""
    out = atoms.copy()
    out.calc = None
    out.positions = atoms.positions @ matrix.T
    out.set_cell(atoms.cell.array @ matrix.T, scale_atoms=False)
    return out


def cutoff_margins(atoms: Atoms, cutoff: float | None) -> np.ndarray:
    """For each atom, how far its nearest pair distance lies from the cutoff (A; inf: none near).
    A finite difference whose step moves a pair across the cutoff measures the model's step
    there (HIENet-V3 has one), not its derivative."""
    if cutoff is None:
        return np.full(len(atoms), np.inf)
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, cutoff + 0.5)
    margin = np.full(len(atoms), np.inf)
    np.minimum.at(margin, i, np.abs(d - cutoff))
    np.minimum.at(margin, j, np.abs(d - cutoff))
    return margin


# ---------------------------------------------------------------- checks
def _converges(name: str, atoms: Atoms, engine: Engine, cases: list[Atoms], h: float, scale: float,
               analytic, noise: float, energy_steps: float, note: str) -> Check:
    """The finite-difference verdict shared by forces and stress: `cases` are the displaced
    structures in fours (+h, -h, +h/2, -h/2) per component; derivative = scale * dE/dstep
    compared with `analytic(base result)`. The error of a correct derivative falls as h^2 (ratio
    4 between the steps); one that does not fall is wrong. Passes at a ratio of at least 3, or an
    error at h/2 below the noise of the energies (10 eps sum |E_i| / h) plus the declared steps of
    hard cutoffs (N `energy_steps` / h), both times |scale|."""
    res = engine([atoms] + cases)
    base, e = res[0], np.array([r["energy"] for r in res[1:]]).reshape(-1, 4)
    want = np.asarray(analytic(base), dtype=np.float64).reshape(-1)
    err_h = _max(scale * (e[:, 0] - e[:, 1]) / (2 * h) - want)
    err_h2 = _max(scale * (e[:, 2] - e[:, 3]) / h - want)
    floor = (noise * float(np.abs(base.get("energies", [base["energy"]])).sum()) + energy_steps * len(atoms)) * abs(scale) / h
    ratio = err_h / err_h2 if err_h2 > 0 else np.inf
    passed = bool(np.isfinite(err_h2) and (err_h2 <= floor or ratio >= 3.0))
    return Check(name, _label(atoms), passed,
                 {"err(h)": err_h, "err(h/2)": err_h2, "ratio": ratio, "noise": floor, "max": _max(want)},
                 note=f"{note}; passes at ratio >= 3 (h^2: 4) or err(h/2) <= noise")


def check_forces_fd(engine: Engine, atoms: Atoms, tol: Tolerances, n_atoms: int = 2,
                    cutoff: float | None = None, declared: Declared = Declared()) -> Check:
    """Central finite differences of the energy at steps h and h/2 (`tol.h`) against the forces,
    for `n_atoms` atoms along x, y, z: those farthest from a pair at the `cutoff`, with h below
    half that margin (`_converges` says when it passes, with `declared.energy_steps`)."""
    margins = cutoff_margins(atoms, cutoff)
    idx = sorted(np.argsort(-margins, kind="stable")[:min(n_atoms, len(atoms))].tolist())
    h = min(tol.h, float(margins[idx].min()) / 2)
    cases = []
    for i in idx:
        for d in range(3):
            for step in (h, -h, h / 2, -h / 2):
                a = atoms.copy()
                a.positions[i, d] += step
                cases.append(a)
    note = f"atoms {idx}, h = {h:.3g} A" + (f"; {declared.why_fd}" if declared.why_fd else "")
    return _converges("forces: finite diff.", atoms, engine, cases, h, -1.0,
                      lambda r: np.asarray(r["forces"])[idx], 10 * tol.eps, declared.energy_steps, note)


def check_stress_fd(engine: Engine, atoms: Atoms, tol: Tolerances, cutoff: float | None = None,
                    declared: Declared = Declared()) -> Check:
    """Central finite differences of the energy under symmetric strains at steps h and h/2
    (`tol.strain_h`, shrunk so that no pair crosses the `cutoff`) against the stress,
    sigma = (1/V) dE/d(strain) (`_converges` says when it passes, with `declared.energy_steps`)."""
    h = tol.strain_h if cutoff is None else min(tol.strain_h, float(cutoff_margins(atoms, cutoff).min()) / (2 * cutoff))
    cases = []
    for i, j in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:  # ASE's Voigt order
        for step in (h, -h, h / 2, -h / 2):
            eps = np.zeros((3, 3))
            eps[i, j] += step / 2
            eps[j, i] += step / 2
            cases.append(transformed(atoms, np.eye(3) + eps))
    note = f"strain h = {h:.3g}" + (f"; {declared.why_fd}" if declared.why_fd else "")
    return _converges("stress: finite diff.", atoms, engine, cases, h, 1.0 / abs(atoms.get_volume()),
                      lambda r: r["stress"], 10 * tol.eps, declared.energy_steps, note)


def check_rotation(engine: Engine, atoms: Atoms, tol: Tolerances, seed: int = 0) -> Check:
    """A random proper rotation R: the same energies, forces R F, stress R sigma R^T."""
    rot = random_rotation(seed)
    ref, r = engine([atoms, transformed(atoms, rot)])
    stress = rot @ _stress3(ref) @ rot.T if "stress" in ref else None
    return _equal("rotation", atoms, r, ref, tol, forces=np.asarray(ref["forces"]) @ rot.T, stress=stress)


def check_reflection(engine: Engine, atoms: Atoms, tol: Tolerances, declared: Declared = Declared()) -> Check:
    """A mirror (x -> -x; the cell becomes left-handed): for a parity-symmetric model the same
    energy, mirrored forces and stress; a model that is not declares how far it may differ."""
    mirror = np.diag([-1.0, 1.0, 1.0])
    ref, r = engine([atoms, transformed(atoms, mirror)])
    stress = mirror @ _stress3(ref) @ mirror if "stress" in ref else None
    allowed = {"dE/atom": _plus(declared.reflection_energy, tol.energy), "dF": _plus(declared.reflection_forces, tol.forces),
               "dE_i": None, "dσ": _plus(declared.reflection_stress, tol.stress)}
    return _equal("reflection", atoms, r, ref, tol, forces=np.asarray(ref["forces"]) @ mirror, stress=stress,
                  allowed=allowed, note=declared.why_reflection)


def _plus(declared: float | None, tol: float) -> float | None:
    return None if declared is None else declared + tol


def check_basis(engine: Engine, atoms: Atoms, tol: Tolerances) -> Check:
    """The same crystal in another basis of its lattice, left-handed (a1, a2, a3 -> -a1, a1 + a2,
    a3): the same results (a stress divided by the signed volume changes sign here)."""
    other = atoms.copy()
    other.set_cell(np.array([[-1, 0, 0], [1, 1, 0], [0, 0, 1]]) @ atoms.cell.array, scale_atoms=False)
    ref, r = engine([atoms, other])
    return _equal("basis (left-handed)", atoms, r, ref, tol)


def check_translation(engine: Engine, atoms: Atoms, tol: Tolerances, seed: int = 0) -> Check:
    """All atoms shifted by one vector, and (periodic directions) one atom moved by a lattice
    vector: the same results; the forces sum to zero."""
    shifted = atoms.copy()
    shifted.positions += np.random.default_rng(seed).uniform(-3, 3, size=3)
    if atoms.pbc.any():
        d = int(np.flatnonzero(atoms.pbc)[0])
        shifted.positions[0] += atoms.cell.array[d]
    ref, r = engine([atoms, shifted])
    check = _equal("translation", atoms, r, ref, tol)
    check.measured["|ΣF|"] = _max(np.asarray(ref["forces"]).sum(0))
    check.allowed["|ΣF|"] = tol.forces * max(1.0, np.sqrt(len(atoms)))
    check.passed = _within(check.measured, check.allowed)
    return check


def check_permutation(engine: Engine, atoms: Atoms, tol: Tolerances, seed: int = 0) -> Check:
    """The atoms in another order: the same energy, forces and per-atom energies in that order."""
    p = np.random.default_rng(seed).permutation(len(atoms))
    ref, r = engine([atoms, atoms[p]])
    energies = np.asarray(ref["energies"])[p] if "energies" in ref else None
    return _equal("permutation", atoms, r, ref, tol, forces=np.asarray(ref["forces"])[p], energies=energies)


def check_supercell(engine: Engine, atoms: Atoms, tol: Tolerances, repeat: tuple[int, int, int] = (2, 1, 1)) -> Check:
    """A periodic structure repeated: n times the energy, the same forces, stress and per-atom
    energies (extensivity; a stress without its volume division fails here too)."""
    n = int(np.prod(repeat))
    ref, r = engine([atoms, atoms.repeat(repeat)])
    big = dict(ref)
    big["energy"] = n * ref["energy"]
    energies = np.tile(np.asarray(ref["energies"]), n) if "energies" in ref else None
    return _equal("supercell", atoms.repeat(repeat), r, big, tol, forces=np.tile(np.asarray(ref["forces"]), (n, 1)),
                  energies=energies, note=f"repeat {repeat}")


def check_per_atom_sums(engine: Engine, atoms: Atoms, tol: Tolerances) -> Check:
    """Per-atom energies sum to the energy; per-atom stresses to the stress and per-atom virials
    to -stress * V (periodic) or sum_i r_i (x) F_i (finite), where the engine gives them. For a
    slab or wire the virial's block along the non-periodic directions is sum_i r_i (x) F_i's (the
    periodic images' shifts lie in the periodic directions), and only that block is checked. The
    note names the per-atom results the engine does not give."""
    (r,) = engine([atoms])
    measured: dict[str, float] = {}
    allowed: dict[str, float | None] = {}
    if "energies" in r:
        measured["ΣE_i-E"] = abs(float(np.sum(r["energies"])) - r["energy"]) / len(atoms)
        allowed["ΣE_i-E"] = tol.energy
    if "stresses" in r and "stress" in r:
        measured["Σσ_i-σ"] = _max(np.asarray(r["stresses"]).sum(0) - np.asarray(r["stress"]))
        allowed["Σσ_i-σ"] = tol.stress
    if "virials" in r:
        total = voigt_6_to_full_3x3_stress(np.asarray(r["virials"], dtype=np.float64).sum(0))
        if "stress" in r:
            measured["ΣW_i-W"] = _max(total + _stress3(r) * abs(atoms.get_volume()))
            allowed["ΣW_i-W"] = tol.stress * max(1.0, abs(atoms.get_volume()))
        else:
            w = atoms.positions.T @ np.asarray(r["forces"], dtype=np.float64)
            p = _non_periodic_projector(atoms)
            measured["ΣW_i-W"] = _max(p @ (total - 0.5 * (w + w.T)) @ p)
            allowed["ΣW_i-W"] = tol.forces * 10
    expected = ("energies", "stresses", "virials") if _periodic(atoms) else ("energies", "virials")
    missing = [k for k in expected if k not in r]
    note = f"not given: {', '.join(missing)}" if missing else ""
    return Check("per-atom sums", _label(atoms), _within(measured, allowed), measured, allowed, note)


def _non_periodic_projector(atoms: Atoms) -> np.ndarray:
    """(3, 3) projector onto the directions orthogonal to the periodic cell vectors (identity
    for a molecule)."""
    periodic = atoms.cell.array[np.asarray(atoms.pbc, dtype=bool)]
    if not len(periodic):
        return np.eye(3)
    _, _, vt = np.linalg.svd(periodic)
    complement = vt[periodic.shape[0]:]
    return complement.T @ complement


def check_batch(engine: Engine, structures: Sequence[Atoms], tol: Tolerances) -> Check:
    """All structures in one call give what each gives alone."""
    together = engine(list(structures))
    worst: dict[str, float] = {}
    passed = True
    for atoms, r in zip(structures, together):
        c = _equal("batch = single", atoms, r, engine([atoms])[0], tol)
        passed &= c.passed
        for k, v in c.measured.items():
            worst[k] = max(worst.get(k, 0.0), v)
    return Check("batch = single", f"{len(structures)} structures", passed, worst, _equal_within(tol))


def check_cutoff_scan(engine: Engine, numbers: tuple[int, int], cutoff: float, tol: Tolerances,
                      declared: Declared = Declared(), width: float = 0.05, points: int = 21) -> Check:
    """A dimer scanned across the cutoff: between neighbouring distances the energy must change as
    the forces say (trapezoid rule with its end correction, dr^2/12 times the change of dE/dr's
    slope); what they do not explain is a jump, reported with where it is (largest), and allowed
    up to what the model declares. Beyond the cutoff the pair must not interact (unless declared:
    a long-range term): its energy equals the two atoms' apart."""
    r = np.sort(np.concatenate([np.linspace(cutoff - width, cutoff + width, points), [cutoff - 1e-6, cutoff + 1e-6]]))
    r = r[np.abs(r - cutoff) > 5e-7]
    dimers = [Atoms(numbers=list(numbers), positions=[[0, 0, 0], [d, 0, 0]]) for d in r]
    singles = [Atoms(numbers=[z], positions=[[0, 0, 0]]) for z in numbers]
    res = engine(dimers + singles)
    e = np.array([x["energy"] for x in res[:len(r)]])
    dedr = -np.array([np.asarray(x["forces"])[1, 0] for x in res[:len(r)]])  # dE/dr = -F_2 along the bond
    dr, curvature = np.diff(r), np.gradient(dedr, r)
    steps = np.abs(np.diff(e) - 0.5 * (dedr[1:] + dedr[:-1]) * dr + dr ** 2 / 12 * np.diff(curvature))
    k = int(np.argmax(steps))
    apart = res[len(r)]["energy"] + res[len(r) + 1]["energy"]
    beyond = _max(e[r > cutoff] - apart)
    measured = {"jump": float(steps[k]), "at r": float(0.5 * (r[k] + r[k + 1])), "E(r>rc)-E(apart)": beyond}
    floor = 10 * tol.eps * abs(apart) + tol.energy
    # below 100 energy tolerances a 'jump' is what the integration rule leaves of a smooth curve
    allowed = {"jump": _plus(declared.cutoff_jump, floor + 100 * tol.energy), "at r": None,
               "E(r>rc)-E(apart)": _plus(declared.beyond_cutoff, floor)}
    name = "-".join(Atoms(numbers=list(numbers)).get_chemical_symbols())
    return Check("cutoff scan", f"{name} dimer, rc = {cutoff:g} A", _within(measured, allowed), measured, allowed,
                 note=declared.why_cutoff)


def run_contract(engine: Engine, structures: Sequence[Atoms], tol: Tolerances, declared: Declared = Declared(),
                 cutoff: float | None = None, fd: bool = True, fd_atoms: int = 2, one_call: bool = False) -> Report:
    """Every check on every structure (stress, supercell only for periodic ones), batch = single on
    all together, and, given the model's `cutoff`, a scan across it for the first structure's two
    first elements. `fd=False` leaves out the finite differences (the costliest part).
    `one_call`: every structure the checks need goes to the engine in a single call (an engine
    that starts a program per call: LAMMPS), found by a first pass that records them; batch =
    single is then not measured."""
    if one_call:
        wanted: dict[bytes, Atoms] = {}

        def record(batch: Sequence[Atoms]) -> list[dict]:
            wanted.update((_key(a), a) for a in batch)
            return [_placeholder(a) for a in batch]

        _checks(record, structures, tol, declared, cutoff, fd, fd_atoms, batch=False)
        known = dict(zip(wanted, engine(list(wanted.values()))))
        return Report(_checks(lambda batch: [known[_key(a)] for a in batch], structures, tol, declared, cutoff, fd,
                              fd_atoms, batch=False))
    return Report(_checks(engine, structures, tol, declared, cutoff, fd, fd_atoms, batch=True))


def _key(atoms: Atoms) -> bytes:
    return b"|".join(np.ascontiguousarray(x).tobytes() for x in (atoms.numbers, atoms.positions, atoms.cell.array,
                                                                 atoms.pbc))


def _placeholder(atoms: Atoms) -> dict:
    """A result of the right shape (a recording pass needs the checks to run to the end)."""
    out = {"energy": 0.0, "forces": np.zeros((len(atoms), 3)), "energies": np.zeros(len(atoms))}
    if _periodic(atoms):
        out["stress"] = np.zeros(6)
    return out


def _checks(engine: Engine, structures: Sequence[Atoms], tol: Tolerances, declared: Declared,
            cutoff: float | None, fd: bool, fd_atoms: int, batch: bool) -> list[Check]:
    checks: list[Check] = []
    for atoms in structures:
        if fd:
            checks.append(check_forces_fd(engine, atoms, tol, n_atoms=fd_atoms, cutoff=cutoff, declared=declared))
            if _periodic(atoms):
                checks.append(check_stress_fd(engine, atoms, tol, cutoff=cutoff, declared=declared))
        checks += [check_rotation(engine, atoms, tol), check_reflection(engine, atoms, tol, declared),
                   check_translation(engine, atoms, tol), check_permutation(engine, atoms, tol)]
        if _periodic(atoms):
            checks += [check_basis(engine, atoms, tol), check_supercell(engine, atoms, tol)]
        checks.append(check_per_atom_sums(engine, atoms, tol))
    if batch and len(structures) > 1:
        checks.append(check_batch(engine, structures, tol))
    if cutoff is not None and structures:
        z = list(dict.fromkeys(int(x) for x in structures[0].numbers))
        checks.append(check_cutoff_scan(engine, (z[0], z[min(1, len(z) - 1)]), cutoff, tol, declared))
    return checks


def assert_contract(engine: Engine, structures: Sequence[Atoms], tol: Tolerances, declared: Declared = Declared(),
                    **kw) -> Report:
    """run_contract, raising AssertionError with the whole report when a check fails."""
    report = run_contract(engine, structures, tol, declared, **kw)
    if not report.passed:
        raise AssertionError(f"{len(report.failures)} contract check(s) failed:\n{report}")
    return report

