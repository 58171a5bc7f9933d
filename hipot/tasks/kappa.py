"""Lattice thermal conductivity with phono3py by Matbench Discovery's κ protocol (`phonondb-v1`;
Póta et al., arXiv:2408.00755), the defaults of `KappaSettings`:

1. one FIRE relaxation (fmax 1e-4 eV/A, at most 300 steps) of the structure as given, with
   FixSymmetry (symprec 0.01) and a FrechetCellFilter whose shear is masked (no tilt); the space
   group before and after (spglib at 1e-4) must agree, else the compound fails (broken symmetry);
2. phono3py (symprec 1e-5, primitive cell 'auto') on the relaxed cell as given, 0.01 A
   displacements; fc2 and fc3 supercells and the q-mesh from the structure's own settings (info
   keys `fc2_supercell`, `fc3_supercell`, `q_mesh` of the phononDB-PBE structures), else from a
   width rule on the conventional standard cell (`KappaResult.settings_source` says which);
3. fc2 first: phonons on the full mesh; any mode below 0 away from Gamma, an optical mode below 0
   at Gamma or an acoustic one below -0.01 THz there is a failure (imaginary modes), reported
   with the lowest frequency and where, and fc3 is never computed;
4. fc3, then the Wigner transport equation in the relaxation-time approximation at 300 K with
   isotope scattering: kappa = particle-like + coherence term, and the mode-resolved kappa that
   κ_SRME compares with DFT (`hipot.tasks.kappa_srme`).

A failure is a result with its reason, not an exception. Other settings are named for what they
differ in (`describe`); every result records its settings. Every displaced supercell of a
compound goes through the batched Evaluator (many per call). `kappa` runs the stages for one
structure; `relax_for_kappa` relaxes many in one batch and `conductivity` does the rest."""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

from ..optional import require
from .checks import cutoff_crossing, note
from .common import ModelLike, Result, _LiveBar, evaluate_many, require_periodic, resolve_model
from .kappa_srme import run_conductivity
from .relax import relax


@dataclass(frozen=True)
class KappaSettings:
    """How kappa is computed; the defaults are Matbench Discovery's `phonondb-v1`. Supercells and
    mesh: explicit here, else the structure's info (`fc2_supercell`, `fc3_supercell`, `q_mesh`),
    else the rule: diagonal multiples of the conventional standard cell at least `fc2_length` /
    `fc3_length` A wide, and a q-mesh of `mesh_length` (phono3py's length rule)."""

    displacement: float = 0.01  # A
    fc2_supercell: tuple[int, int, int] | None = None
    fc3_supercell: tuple[int, int, int] | None = None
    mesh: tuple[int, int, int] | None = None
    fc2_length: float = 15.0  # the rule (phononDB's own choices for the 103 binaries: 15-22 A, fc3 8.4-11 A)
    fc3_length: float = 8.0
    mesh_length: float = 60.0
    temperatures: tuple[float, ...] = (300.0,)
    isotope: bool = True
    wigner: bool = True  # add the coherence term (Simoncelli, Marzari, Mauri 2019)
    boundary_mfp: float = 1e6  # micrometre: boundary scattering switched off in effect
    symprec: float = 1e-5  # phono3py
    relax_optimizer: str = "FIRE"
    relax_fmax: float = 1e-4  # eV/A
    relax_steps: int = 300
    relax_symprec: float = 0.01  # FixSymmetry
    cell_mask: tuple[bool, ...] = (True, True, True, False, False, False)  # shear held
    spacegroup_symprec: float = 1e-4  # the before/after check (the benchmark: moyopy's default 1e-4)
    acoustic_threshold: float = -0.01  # THz: the three acoustic modes at Gamma may dip this far
    ignore_imaginary: bool = False  # compute kappa anyway (the protocol stops)


PHONONDB_V1 = KappaSettings()
PRESETS: dict[str, KappaSettings] = {
    "phonondb-v1": PHONONDB_V1,
    # many leaderboard entries used 0.03 A; compare such a result only with one of the same displacement
    "phonondb-v1-disp0.03": dataclasses.replace(PHONONDB_V1, displacement=0.03),
    # a smoke run on a CPU: small supercells and short relaxation, the structure's own q-mesh (so that
    # κ_SRME is defined); not converged kappa
    "quick": dataclasses.replace(PHONONDB_V1, fc2_supercell=(2, 2, 2), fc3_supercell=(1, 1, 1), relax_steps=50),
}
QUICK = PRESETS["quick"]


def describe(settings: KappaSettings) -> str:
    """The preset's name, or 'phonondb-v1 with ...' naming every setting that differs."""
    for name, preset in PRESETS.items():
        if settings == preset:
            return name
    base = dataclasses.asdict(PHONONDB_V1)
    diff = [f"{k}={v}" for k, v in dataclasses.asdict(settings).items() if base[k] != v]
    return "phonondb-v1 with " + ", ".join(diff)


@dataclass
class KappaResult(Result):
    """kappa in W/(m K): per temperature the Voigt tensor (xx, yy, zz, yz, xz, xy) of the total
    (particle-like + coherence), each part, and kappa_ave (mean of the diagonal). None where the
    protocol stopped: `failure` says why (imaginary modes, broken symmetry, relaxation error).
    Frequencies in THz; `min_frequency_q` in reduced coordinates of the primitive cell's reciprocal
    lattice. `kappa_srme` is filled by `kappa_srme.score` against a DFT reference."""

    formula: str
    protocol: str
    settings: dict[str, Any]
    settings_source: str
    displacement: float
    spacegroup_initial: int
    spacegroup: int
    broken_symmetry: bool
    relax_steps: int
    max_steps: bool
    fc2_supercell: list
    fc3_supercell: list
    mesh: list[int]
    temperatures: list[float]
    n_fc2_displacements: int = 0
    n_fc3_displacements: int = 0
    has_imaginary: bool = False
    min_frequency: float = float("nan")
    min_frequency_q: list[float] | None = None
    min_frequency_band: int | None = None
    kappa: list[list[float]] | None = None
    kappa_p: list[list[float]] | None = None
    kappa_c: list[list[float]] | None = None
    kappa_ave: list[float] | None = None
    kappa_srme: float | None = None
    failure: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _modes: dict[str, np.ndarray] | None = None  # mode-resolved kappa (kappa_srme), not in to_dict


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


def relax_for_kappa(structures: Sequence[Atoms], model: ModelLike, settings: KappaSettings | None = None,
                    batch_size: int = 64, progress: bool = False) -> list[Relaxed]:
    """The protocol's relaxation of each structure as given (all in one batch): FIRE with
    FixSymmetry and the masked FrechetCellFilter, to settings.relax_fmax within relax_steps."""
    s = settings or KappaSettings()
    m = resolve_model(model)
    for a in structures:
        require_periodic(a, "kappa")
    initial = [spacegroup(a, s.spacegroup_symprec) for a in structures]
    # the protocol's convergence is the filter's fmax alone (no separate stress criterion)
    res = relax(list(structures), m, optimizer=s.relax_optimizer, fmax=s.relax_fmax, smax=None, steps=s.relax_steps,
                relax_cell=True, symmetry=True, symprec=s.relax_symprec, cell_mask=s.cell_mask,
                batch_size=batch_size, progress=progress)
    out = []
    for r, a0, sg0 in zip(res, structures, initial):
        a = r.atoms.copy()
        a.calc = None
        a.info = dict(a0.info)  # the phononDB settings travel with the structure
        sg = spacegroup(a, s.spacegroup_symprec) if r.error is None else 0
        # the benchmark flags a run that took all its steps (ASE's nsteps >= steps); it is no failure there
        out.append(Relaxed(a, sg0, sg, int(r.steps), int(r.steps) >= s.relax_steps, r.error))
    return out


def _matrix(value: Any) -> np.ndarray:
    m = np.asarray(value, dtype=int)
    if m.shape == (3,) and m.min() >= 1:
        m = np.diag(m)
    if m.shape != (3, 3) or round(abs(np.linalg.det(m))) < 1:
        raise ValueError(f"a supercell is three positive integers or a 3x3 integer matrix, not {np.asarray(value).tolist()}")
    return m


def _widths_rule(cell: np.ndarray, length: float) -> np.ndarray:
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return np.diag([max(1, int(np.ceil(length / w - 1e-6))) for w in widths])


def structure_settings(atoms: Atoms, settings: KappaSettings) -> dict[str, Any]:
    """fc2 and fc3 supercell matrices, q-mesh (or a length), the cell phono3py starts from (the
    structure as given, or its conventional standard cell for the rule) and where each came from."""
    info = atoms.info
    mesh_info = info.get("q_mesh", info.get("q_point_mesh"))
    has_info = "fc2_supercell" in info and "fc3_supercell" in info and mesh_info is not None
    lattice, positions, numbers = atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers
    if not has_info and (settings.fc2_supercell is None or settings.fc3_supercell is None):
        spglib = require("spglib", "tasks", "symmetry")
        std = spglib.standardize_cell((lattice, positions, numbers), to_primitive=False, symprec=settings.symprec)
        if std is not None:
            lattice, positions, numbers = std
    sources = []

    def pick(explicit, key, rule):
        if explicit is not None:
            sources.append(f"{key}: settings")
            return explicit
        if has_info:
            sources.append(f"{key}: structure info")
            return info[key] if key != "q_mesh" else mesh_info
        sources.append(f"{key}: rule")
        return rule()

    fc2 = _matrix(pick(settings.fc2_supercell, "fc2_supercell", lambda: _widths_rule(lattice, settings.fc2_length)))
    fc3 = _matrix(pick(settings.fc3_supercell, "fc3_supercell", lambda: _widths_rule(lattice, settings.fc3_length)))
    mesh = pick(settings.mesh, "q_mesh", lambda: float(settings.mesh_length))
    mesh = mesh if isinstance(mesh, float) else [int(x) for x in np.asarray(mesh).ravel()]
    return {"fc2": fc2, "fc3": fc3, "mesh": mesh, "cell": (lattice, positions, numbers), "source": "; ".join(sources)}


def displacements(atoms: Atoms, settings: KappaSettings, chosen: dict[str, Any] | None = None):
    """The phono3py object of `atoms` (see `structure_settings`) with fc2 and fc3 displacements."""
    require("phono3py", "kappa", "thermal conductivity")
    from phono3py import Phono3py
    from phonopy.structure.atoms import PhonopyAtoms

    chosen = chosen or structure_settings(atoms, settings)
    lattice, positions, numbers = chosen["cell"]
    unit = PhonopyAtoms(numbers=numbers, cell=lattice, scaled_positions=positions)
    with warnings.catch_warnings():  # phonopy notes that 'auto' changed meaning in v4; we want v4's
        warnings.filterwarnings("ignore", message=".*primitive_matrix.*")
        ph3 = Phono3py(unit, supercell_matrix=chosen["fc3"], phonon_supercell_matrix=chosen["fc2"],
                       primitive_matrix="auto", symprec=settings.symprec)
    ph3.mesh_numbers = chosen["mesh"]
    ph3.generate_displacements(distance=settings.displacement)
    return ph3


def _atoms(patoms) -> Atoms:
    return Atoms(numbers=patoms.numbers, cell=patoms.cell, scaled_positions=patoms.scaled_positions, pbc=True)


def supercell_forces(cells: Sequence[Any], n_atoms: int, model, batch_size: int = 64, desc: str = "forces",
                     progress: bool = False) -> np.ndarray:
    """Forces on displaced supercells (phonopy cells; None, a pair phono3py skips, gives zeros),
    many per batched call, in chunks so that a progress bar can count them."""
    todo = [k for k, c in enumerate(cells) if c is not None]
    out = np.zeros((len(cells), n_atoms, 3))
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = _LiveBar(tqdm(total=len(todo), desc=desc, unit="supercell"))
    try:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            res = evaluate_many([_atoms(cells[k]) for k in chunk], model, batch_size=batch_size, max_atoms=None)
            for k, r in zip(chunk, res):
                out[k] = r["forces"]
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return out


def imaginary(frequencies: np.ndarray, acoustic_threshold: float = -0.01) -> bool:
    """The protocol's test on phonons over the mesh (row 0 is Gamma): an optical mode below 0 at
    Gamma, an acoustic mode below `acoustic_threshold` there, or any mode below 0 elsewhere; all NaN
    counts as imaginary. Bands are sorted, so the three lowest at Gamma are the acoustic ones."""
    f = np.asarray(frequencies, float)
    if np.all(np.isnan(f)):
        return True
    return bool(np.any(f[0, 3:] < 0) or np.any(f[0, :3] < acoustic_threshold) or np.any(f[1:] < 0))


def _fc2_phonons(ph3) -> tuple[np.ndarray, np.ndarray]:
    """fc2 from the forces in ph3 (symmetrised), then phonons on every point of the mesh:
    (frequencies (points, bands), q-points in reduced coordinates); point 0 is Gamma."""
    if callable(getattr(ph3, "symmetrize_fc2", None)):  # phono3py >= 4: produce, then symmetrise
        ph3.produce_fc2()
        ph3.symmetrize_fc2()
    else:
        ph3.produce_fc2(symmetrize_fc2=True)
    ph3.init_phph_interaction(symmetrize_fc3q=False)
    ph3.run_phonon_solver()
    freqs, _, addresses = ph3.get_phonon_data()
    qpoints = np.asarray(addresses, float) @ np.asarray(ph3.grid.QDinv, float).T
    return np.asarray(freqs, float), qpoints


def _fc3(ph3) -> None:
    if callable(getattr(ph3, "symmetrize_fc3", None)):
        ph3.produce_fc3()
        ph3.symmetrize_fc3()
    else:
        ph3.produce_fc3(symmetrize_fc3r=True)
    ph3.init_phph_interaction(symmetrize_fc3q=False)


def conductivity(relaxed: Relaxed, model: ModelLike, settings: KappaSettings | None = None, batch_size: int = 64,
                 progress: bool = False, log: Callable[[str], None] | None = None) -> KappaResult:
    """kappa of a structure relaxed by `relax_for_kappa`: fc2 and its phonons first, fc3 and the
    transport equation only if they pass (see the module's docstring). `log` gets a line per stage."""
    s = settings or KappaSettings()
    say = log or (lambda msg: None)
    m = resolve_model(model)
    atoms = relaxed.atoms
    chosen = structure_settings(atoms, s)
    diag = lambda x: np.diag(x).tolist() if np.count_nonzero(x - np.diag(np.diag(x))) == 0 else x.tolist()  # noqa: E731
    res = KappaResult(atoms.get_chemical_formula(), describe(s), dataclasses.asdict(s), chosen["source"],
                      s.displacement, relaxed.spacegroup_initial, relaxed.spacegroup,
                      relaxed.spacegroup != relaxed.spacegroup_initial, relaxed.steps, relaxed.max_steps,
                      diag(chosen["fc2"]), diag(chosen["fc3"]),
                      [] if isinstance(chosen["mesh"], float) else chosen["mesh"], list(s.temperatures))
    if relaxed.error is not None:  # the structure may be anything: no phono3py on it
        res.failure = f"relaxation failed: {relaxed.error}"
        return res
    ph3 = displacements(atoms, s, chosen)
    res.mesh = [int(x) for x in ph3.mesh_numbers]
    cells2 = ph3.phonon_supercells_with_displacements
    cells3 = ph3.supercells_with_displacements
    res.n_fc2_displacements = len(cells2)
    res.n_fc3_displacements = sum(c is not None for c in cells3)
    if res.broken_symmetry:
        res.failure = (f"broken symmetry: the relaxation changed the space group from {relaxed.spacegroup_initial} "
                       f"to {relaxed.spacegroup}")
        return res
    note(res, cutoff_crossing(atoms, m, 2 * s.displacement,
                              f"pairs of {s.displacement:g} A displacements (third order)"))
    t0 = time.perf_counter()
    say(f"fc2: {len(cells2)} displaced supercell(s) of {len(ph3.phonon_supercell)} atoms")
    ph3.phonon_forces = supercell_forces(cells2, len(ph3.phonon_supercell), m, batch_size, "fc2 forces", progress)
    t1 = time.perf_counter()
    say(f"phonons on the {'x'.join(map(str, res.mesh))} mesh")
    freqs, qpoints = _fc2_phonons(ph3)
    k = int(np.nanargmin(freqs)) if not np.all(np.isnan(freqs)) else 0
    res.min_frequency = float(freqs.flat[k])
    res.min_frequency_q = np.round(qpoints[k // freqs.shape[1]], 6).tolist()
    res.min_frequency_band = int(k % freqs.shape[1])
    res.has_imaginary = imaginary(freqs, s.acoustic_threshold)
    res.seconds = {"fc2_forces": round(t1 - t0, 2), "fc2_phonons": round(time.perf_counter() - t1, 2)}
    if res.has_imaginary:
        where = "at Gamma" if np.allclose(res.min_frequency_q, 0) else f"at q = {res.min_frequency_q}"
        msg = f"imaginary modes: lowest {res.min_frequency:.4f} THz {where} (band {res.min_frequency_band})"
        if not s.ignore_imaginary:
            res.failure = msg
            say(f"{msg}; fc3 not computed")
            return res
        say(f"{msg}; computing kappa anyway (ignore_imaginary)")
    t2 = time.perf_counter()
    say(f"fc3: {res.n_fc3_displacements} displaced supercells of {len(ph3.supercell)} atoms")
    ph3.forces = supercell_forces(cells3, len(ph3.supercell), m, batch_size, "fc3 forces", progress)
    t3 = time.perf_counter()
    say(f"phono3py: fc3 and the {'Wigner ' if s.wigner else ''}RTA at {list(s.temperatures)} K on the "
        f"{'x'.join(map(str, res.mesh))} mesh")
    _fc3(ph3)
    out = run_conductivity(ph3, s)
    res.seconds.update(fc3_forces=round(t3 - t2, 2), phono3py=round(time.perf_counter() - t3, 2))
    res.kappa, res.kappa_p, res.kappa_c = (np.asarray(out[key]).tolist() for key in ("kappa", "kappa_p", "kappa_c"))
    res.kappa_ave = np.mean(np.asarray(out["kappa"])[:, :3], axis=1).tolist()
    res._modes = out["modes"]
    return res


def kappa(atoms: Atoms, model: ModelLike = "hienet-v3", *, settings: KappaSettings | None = None,
          relax_first: bool = True, device: str = "auto", dtype: str = "float32", batch_size: int = 64,
          progress: bool = False, log: Callable[[str], None] | None = None) -> KappaResult:
    """Lattice thermal conductivity of one crystal by the protocol (the module's docstring).
    With relax_first=False the structure is used as given."""
    m = resolve_model(model, device, dtype)
    s = settings or KappaSettings()
    if relax_first:
        if log:
            log(f"relaxing ({s.relax_optimizer}, fmax {s.relax_fmax:g} eV/A, <= {s.relax_steps} steps, symmetry kept)")
        (relaxed,) = relax_for_kappa([atoms], m, s, batch_size=batch_size)
    else:
        require_periodic(atoms, "kappa")
        sg = spacegroup(atoms, s.spacegroup_symprec)
        relaxed = Relaxed(atoms.copy(), sg, sg, 0, False)
    return conductivity(relaxed, m, s, batch_size, progress, log)
