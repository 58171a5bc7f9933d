"""Harmonic phonons with phonopy: finite displacements on a supercell chosen from a target length,
force constants, band structure along the standard path, DOS, thermal properties. A warning
says when a neighbour shell lies within the displacement of a cutoff where the model's energy
is not continuous (the finite differences then straddle the jump)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from ..optional import require
from .checks import cutoff_crossing, note
from .common import (ModelLike, Result, atomic_write, evaluate_many, pyplot, require_periodic, resolve_model,
                     save_figure)
from .relax import relax


@dataclass
class PhononResult(Result):
    """Frequencies in THz (negative = imaginary). `has_imaginary`: any band-path or mesh frequency
    below `imaginary_threshold`. `gamma_frequencies` are at Gamma, sorted. `thermal` has columns
    temperature (K), free_energy (kJ/mol), entropy and heat_capacity (J/K/mol), per mole of
    primitive cells. Without bands (`bands=False`) there is no band path, DOS or plot."""

    formula: str
    supercell_matrix: list[int]
    n_supercell_atoms: int
    n_displacements: int
    has_imaginary: bool
    min_frequency: float
    max_frequency: float
    gamma_frequencies: list[float]
    imaginary_threshold: float
    path: str
    thermal: dict[str, list[float]] = field(default_factory=dict)
    n_primitive_atoms: int = 0
    warnings: list[str] = field(default_factory=list)
    _phonon: Any = None
    _band: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.pop("thermal", None)
        d.pop("_band", None)
        return d

    def write_thermal_csv(self, path: str) -> str:
        keys = ["temperature", "free_energy", "entropy", "heat_capacity"]
        header = ["temperature_K", "free_energy_kJ_per_mol", "entropy_J_per_K_mol", "heat_capacity_J_per_K_mol"]

        def _w(tmp):
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                for row in zip(*(self.thermal[k] for k in keys)):
                    w.writerow([f"{x:.6g}" for x in row])

        atomic_write(path, _w)
        return path

    def plot(self, path: str) -> str:
        """Band structure (left) and total DOS (right), frequencies in THz."""
        if not self._band:
            raise ValueError("no band structure to plot: computed with bands=False")
        plt = pyplot()
        b = self._band
        fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8, 4.5), sharey=True,
                                         gridspec_kw={"width_ratios": [3, 1], "wspace": 0.05})
        for seg_x, seg_f in zip(b["x"], b["frequencies"]):
            ax.plot(seg_x, seg_f, color="C0", lw=1.2)
        ax.set_xticks(b["tick_x"])
        ax.set_xticklabels(b["tick_labels"])
        for x in b["tick_x"]:
            ax.axvline(x, color="0.7", lw=0.6)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xlim(b["tick_x"][0], b["tick_x"][-1])
        ax.set_ylabel("frequency (THz)")
        title = f"{self.formula} phonons ({'x'.join(map(str, self.supercell_matrix))} supercell)"
        if self.has_imaginary:
            title += f"  — imaginary modes, min {self.min_frequency:.2f} THz"
        ax.set_title(title, fontsize=10)
        dos = self._phonon.total_dos
        ax_dos.plot(dos.dos, dos.frequency_points, color="C1")
        ax_dos.fill_betweenx(dos.frequency_points, 0, dos.dos, color="C1", alpha=0.3)
        ax_dos.set_xlabel("DOS")
        ax_dos.set_xticks([])
        ax_dos.set_xlim(left=0)
        span = max(self.max_frequency, 1e-3) - min(self.min_frequency, 0.0)
        ax.set_ylim(min(self.min_frequency, 0.0) - 0.03 * span, self.max_frequency + 0.05 * span)
        ax_dos.axhline(0.0, color="k", lw=0.6)
        save_figure(fig, path)
        return path


def supercell_for_length(atoms: Atoms, length: float) -> list[int]:
    """Repeats along each cell vector so that the supercell is at least `length` A wide between
    opposite faces (a sphere of that diameter fits), not merely `length` long along the vectors."""
    cell = atoms.cell.array
    vol = abs(np.linalg.det(cell))
    widths = [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return [max(1, int(np.ceil(length / w - 1e-6))) for w in widths]


def _phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses())


def _ase_atoms(patoms) -> Atoms:
    return Atoms(symbols=patoms.symbols, cell=patoms.cell, scaled_positions=patoms.scaled_positions, pbc=True)


def phonons(atoms: Atoms, model: ModelLike = "hienet-v3", *, supercell_length: float = 10.0,
            supercell: list[int] | None = None, displacement: float = 0.01, relax_first: bool = True,
            fmax: float = 0.005, steps: int = 300, mesh: float = 30.0, band_points: int = 51,
            t_min: float = 0.0, t_max: float = 1000.0, t_step: float = 10.0, imaginary_threshold: float = -0.1,
            bands: bool = True, device: str = "auto", dtype: str = "float32", batch_size: int = 16,
            progress: bool = False) -> PhononResult:
    """Phonons by finite displacements (phonopy). The supercell repeats the input cell until it is
    `supercell_length` A wide (or `supercell`, three repeats); with relax_first the structure is
    first relaxed with the model, keeping its symmetry. `mesh` is phonopy's length-based q-mesh for
    the DOS and thermal properties. The band path is ASE's standard path for the primitive cell
    (`bands=False`: only the mesh, for the thermal properties)."""
    require("phonopy", "tasks", "phonons")
    from phonopy import Phonopy

    require_periodic(atoms, "phonons")
    m = resolve_model(model, device, dtype)
    if relax_first:
        atoms = relax([atoms], m, fmax=fmax, steps=steps, relax_cell=True, symmetry=True)[0].atoms
    reps = list(supercell) if supercell is not None else supercell_for_length(atoms, supercell_length)
    if len(reps) != 3 or min(reps) < 1:
        raise ValueError(f"supercell must be three positive integers, not {reps}")
    import warnings

    with warnings.catch_warnings():  # phonopy notes that 'auto' changed meaning in v4; we want v4's
        warnings.filterwarnings("ignore", message=".*primitive_matrix.*")
        phonon = Phonopy(_phonopy_atoms(atoms), supercell_matrix=np.diag(reps), primitive_matrix="auto")
    phonon.generate_displacements(distance=displacement)
    displaced = [_ase_atoms(s) for s in phonon.supercells_with_displacements]
    results = evaluate_many(displaced, m, batch_size=batch_size, progress=progress)
    forces = np.array([r["forces"] for r in results])
    forces -= forces.mean(axis=1, keepdims=True)  # drop any net force (numerical drift), as phonopy advises
    phonon.forces = forces
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants()  # acoustic sum rule: acoustic modes go to zero at Gamma

    band_freqs, band = _bands(phonon, band_points) if bands else ([], {})
    phonon.run_mesh(mesh)
    if bands:
        phonon.run_total_dos()
    import inspect

    kw = {}
    if "exclude_gamma_acoustic" in inspect.signature(phonon.run_thermal_properties).parameters:
        kw["exclude_gamma_acoustic"] = True  # the three zero modes at Gamma carry no thermal weight
    phonon.run_thermal_properties(t_min=t_min, t_max=t_max, t_step=t_step, **kw)
    tp = phonon.thermal_properties
    thermal = {"temperature": np.asarray(tp.temperatures).tolist(), "free_energy": np.asarray(tp.free_energy).tolist(),
               "entropy": np.asarray(tp.entropy).tolist(), "heat_capacity": np.asarray(tp.heat_capacity).tolist()}
    mesh_freqs = phonon.mesh.frequencies
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = np.sort(np.asarray(phonon.qpoints.frequencies)[0])
    all_f = np.concatenate([np.ravel(f) for f in band_freqs] + [np.ravel(mesh_freqs)])
    fmin, fmax_ = float(all_f.min()), float(all_f.max())
    out = PhononResult(atoms.get_chemical_formula(), reps, len(phonon.supercell), len(displaced),
                       fmin < imaginary_threshold, fmin, fmax_, gamma.tolist(), imaginary_threshold,
                       band.get("path", ""), thermal, len(phonon.primitive), [], phonon, band)
    note(out, cutoff_crossing(atoms, m, displacement, f"phonopy's {displacement:g} A displacements"))
    return out


def _bands(phonon, band_points: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Frequencies along ASE's standard path for the primitive cell (q in its reduced
    coordinates) and what the plot needs."""
    prim_cell = Atoms(cell=phonon.primitive.cell, pbc=True).cell
    bandpath = prim_cell.bandpath(npoints=0)
    segments_labels = _segments(bandpath.path)
    special = bandpath.special_points
    paths = [np.array([np.asarray(special[a]) + (np.asarray(special[b]) - np.asarray(special[a])) * t
                       for t in np.linspace(0.0, 1.0, band_points)])
             for seg in segments_labels for a, b in zip(seg[:-1], seg[1:])]
    phonon.run_band_structure(paths)
    recip = np.linalg.inv(phonon.primitive.cell).T  # columns: reciprocal vectors (no 2 pi)
    xs, x0, tick_x, tick_labels = [], 0.0, [0.0], []
    k = 0
    for seg in segments_labels:
        if tick_labels:
            tick_labels[-1] = f"{tick_labels[-1]}|{_pretty(seg[0])}"  # a jump in the path
        else:
            tick_labels.append(_pretty(seg[0]))
        for lab in seg[1:]:
            q = paths[k] @ recip.T
            d = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
            xs.append(x0 + d)
            x0 += d[-1]
            tick_x.append(x0)
            tick_labels.append(_pretty(lab))
            k += 1
    band_freqs = [np.asarray(f) for f in phonon.band_structure.frequencies]
    return band_freqs, {"x": xs, "frequencies": band_freqs, "tick_x": tick_x, "tick_labels": tick_labels,
                        "path": ",".join("".join(seg) for seg in segments_labels)}


def _segments(path: str) -> list[list[str]]:
    """ASE path string 'GXWKGLUWLK,UX' -> [['G','X','W','K','G','L','U','W','L','K'], ['U','X']]
    (labels may carry digits, e.g. 'X1')."""
    out = []
    for part in path.split(","):
        labels: list[str] = []
        for ch in part:
            if ch.isdigit() and labels:
                labels[-1] += ch
            else:
                labels.append(ch)
        out.append(labels)
    return out


def _pretty(label: str) -> str:
    return "Γ" if label == "G" else label
