"""DFT-D3(BJ) dispersion added to a model's energy, forces and stress (not to per-atom virials
or stresses, which simple-dftd3 does not give: with dispersion on hipot offers none).

The data path: a graph the evaluator has built -> the model's Prediction -> plus the dispersion
of the same structures (this module) -> the calculator, tasks and engines. MPtrj-trained models
(HIENet-V3) learned PBE, which misses van der Waals binding; Grimme's D3 with Becke-Johnson
damping and PBE's parameters is the usual add-on.

Library: simple-dftd3 (PyPI `dftd3`, LGPL-3.0, installed by the `d3` extra), the reference
implementation by the authors of D3. It runs on the CPU in float64, structure by structure, with
periodic cells, analytic gradients and virial; a fraction of a second for 128 atoms on 2 CPU
cores, linear in the atoms (benchmarks/RESULTS.md section 6).
The PyTorch alternatives were passed over: tad-dftd3 (Apache-2.0) has no periodic cells (0.7.0),
torch-dftd (MIT) is GPU-capable and batched but takes seconds per call on a CPU and defaults to
zero damping in float32, and the Warp kernels behind torch-sim's D3 model ship no C6 tables.
On a GPU every call copies positions to the host once per batch and the results back.

Settings (two-body D3(BJ), as VASP's IVDW=12 and torch-dftd's default): s6 = 1, s8 = 0.7875,
a1 = 0.4289, a2 = 4.4407 Bohr (PBE, Grimme et al., J. Comput. Chem. 32, 1456 (2011)); no
three-body (ATM) term: with it simple-dftd3 takes 40 s for 128 atoms on this CPU. Real-space
cutoffs are simple-dftd3's defaults: 60 Bohr (31.75 A) for the pair sum, 40 Bohr (21.17 A) for
coordination numbers. Elements 1-103 (simple-dftd3 returns zero for Z = 104 and segfaults on Z = 118).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from ase.data import chemical_symbols
from ase.units import Bohr, Hartree

from .optional import require
from .types import AtomGraph, Prediction, StructureError

# name -> how model names show it ("hienet-v3+D3(BJ)")
CHOICES = {"d3bj": "D3(BJ)"}
MAX_Z = 103
# Per-atom D3 energies come from simple-dftd3's N x N pair-energy matrices (two of them, float64):
# above this many atoms in one structure they would take gigabytes, and are reported as NaN.
PER_ATOM_MAX_ATOMS = 10_000
# Along a direction that is not periodic the atoms are placed inside a box vector longer than
# their extent by D3's largest cutoff and this margin (A): their images there do not interact.
_MARGIN = 10.0


@dataclass(frozen=True)
class D3Settings:
    """Rational (Becke-Johnson) damping parameters (a2 in Bohr) and real-space cutoffs (A).
    Both cutoffs are hard, as in simple-dftd3's own calculator and in VASP: a pair crossing one
    steps the energy (C6 / r^6 at the pair cutoff; ~1e-7 in a coordination number at the other).
    Finite differences of the stress see the pairs crossing the pair cutoff under a strain: an
    error of 1.5e-5 to 1.3e-4 eV/A^3 that does not shrink with the strain; a pair cutoff of
    80 Bohr makes it about 3x smaller, at (80/60)^3 = 2.4x the pairs (tests/test_contract.py,
    docs/tasks.md#dispersion). Other settings: `D3BJ(D3Settings(...))` as `dispersion=`."""

    s6: float = 1.0
    s8: float = 0.7875
    a1: float = 0.4289
    a2: float = 4.4407
    pair_cutoff: float = 60.0 * Bohr
    cn_cutoff: float = 40.0 * Bohr


PBE = D3Settings()


def _check_name(name: "str | D3BJ | None") -> str | None:
    if isinstance(name, D3BJ):
        return "d3bj"
    if name is None or str(name).lower() == "none":
        return None
    if str(name).lower() not in CHOICES:
        raise ValueError(f"dispersion must be one of {', '.join(CHOICES)} or None, not {name!r}")
    return str(name).lower()


def make_dispersion(name: "str | D3BJ | None") -> "D3BJ | None":
    """The dispersion term called `name` (None or 'none': no dispersion), or a D3BJ given as it is
    (other settings: `D3BJ(D3Settings(cn_cutoff=60 * Bohr))`)."""
    if isinstance(name, D3BJ):
        return name
    return D3BJ() if _check_name(name) == "d3bj" else None


def model_label(model: str, dispersion: "str | D3BJ | None") -> str:
    """How outputs name a model with its dispersion: 'hienet-v3', 'hienet-v3+D3(BJ)'."""
    key = _check_name(dispersion)
    return model if key is None else f"{model}+{CHOICES[key]}"


class D3BJ:
    """DFT-D3(BJ) with PBE parameters, evaluated by simple-dftd3 on the CPU in float64."""

    name = CHOICES["d3bj"]

    def __init__(self, settings: D3Settings = PBE):
        self.settings = settings
        self._api = require("dftd3.interface", "d3", "DFT-D3 dispersion")
        s = settings
        self._param = self._api.RationalDampingParam(s6=s.s6, s8=s.s8, s9=0.0, a1=s.a1, a2=s.a2)

    def __repr__(self) -> str:
        return f"D3BJ({self.settings})"

    def structure(self, numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                  per_atom: bool = True, label: str = "structure") -> dict[str, np.ndarray | float]:
        """Energy (eV), per-atom energies, forces (eV/A) and, if periodic in all three directions,
        stress (3x3, eV/A^3, ASE sign) of one structure, all float64."""
        numbers = np.asarray(numbers, dtype=np.int64)
        bad = sorted({int(z) for z in numbers if z < 1 or z > MAX_Z})
        if bad:
            names = ", ".join(chemical_symbols[z] if 0 <= z < len(chemical_symbols) else str(z) for z in bad)
            raise StructureError(f"{label}: element(s) {names} have no D3 parameters (elements 1-{MAX_Z})")
        pbc = np.asarray(pbc, dtype=bool)
        vacuum = max(self.settings.pair_cutoff, self.settings.cn_cutoff) + _MARGIN
        positions, lattice = _inside_box(np.asarray(positions, dtype=np.float64), np.asarray(cell, np.float64), pbc,
                                         vacuum)
        try:
            # periodic in 3D whenever in any direction: along the others the images are beyond both cutoffs
            model = self._api.DispersionModel(numbers, positions / Bohr,
                                              None if lattice is None else lattice / Bohr,
                                              np.ones(3, dtype=bool) if lattice is not None else None)
            s = self.settings
            model.set_realspace_cutoff(disp2=s.pair_cutoff / Bohr, disp3=40.0, cn=s.cn_cutoff / Bohr)  # no 3-body
            res = model.get_dispersion(self._param, grad=True)
            if per_atom and len(numbers) <= PER_ATOM_MAX_ATOMS:
                pair = model.get_pairwise_dispersion(self._param)
                energies = pair["additive pairwise energy"].sum(axis=1) * Hartree
            else:
                energies = np.full(len(numbers), np.nan)
        except RuntimeError as e:
            raise StructureError(f"{label}: simple-dftd3 could not evaluate D3: {e}") from e
        out: dict[str, np.ndarray | float] = {"energy": float(res["energy"]) * Hartree, "energies": energies,
                                              "forces": -res["gradient"] * (Hartree / Bohr)}
        if pbc.all():
            out["stress"] = res["virial"] * Hartree / abs(np.linalg.det(cell))
        return out

    def __call__(self, graph: AtomGraph, stress: bool = True, labels: list[str] | None = None) -> Prediction:
        """The dispersion of every structure of a graph, as a Prediction on the graph's device
        and in its dtype (stress zeros unless periodic in all three directions). One copy to the
        host for the batch, one back."""
        ptr = graph.ptr.cpu().numpy()
        numbers = graph.numbers.cpu().numpy()
        positions = graph.positions.detach().double().cpu().numpy()
        cells = graph.cell.detach().double().cpu().numpy()
        pbcs = graph.pbc.cpu().numpy()
        B = graph.num_graphs
        energy = np.zeros(B)
        energies = np.zeros(len(numbers))
        forces = np.zeros((len(numbers), 3))
        stresses = np.zeros((B, 3, 3))
        for b in range(B):
            s = slice(ptr[b], ptr[b + 1])
            res = self.structure(numbers[s], positions[s], cells[b], pbcs[b],
                                 label=labels[b] if labels is not None else f"structure {b}")
            energy[b] = res["energy"]
            energies[s] = res["energies"]
            forces[s] = res["forces"]
            if stress and "stress" in res:
                stresses[b] = res["stress"]
        t = lambda x: torch.as_tensor(x, dtype=graph.positions.dtype).to(graph.positions.device)  # noqa: E731
        return Prediction(energy=t(energy), energies=t(energies), forces=t(forces), stress=t(stresses) if stress else None)


def add(pred: Prediction, extra: Prediction) -> Prediction:
    """The sum of two predictions of the same graph, field by field; what either lacks the sum
    lacks. D3 gives no virial and no per-atom virials or stresses (simple-dftd3 has no per-atom
    virials), so those of a model + D3 are None: a model's own would not sum to the total (the
    Evaluator refuses to compute them with dispersion on)."""
    def plus(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        return None if a is None or b is None else a + b

    return Prediction(**{f.name: plus(getattr(pred, f.name), getattr(extra, f.name)) for f in fields(Prediction)})


def _inside_box(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                vacuum: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions and lattice for simple-dftd3: no lattice for a molecule; for a slab or wire, each
    non-periodic cell vector replaced by an orthonormal complement of the periodic ones, as long
    as the atoms' extent plus `vacuum` (more than D3's cutoffs), the atoms shifted rigidly inside,
    so that the structure can be given to simple-dftd3 as periodic in 3D: its own handling of
    mixed periodicity is not rotation-invariant (a rotated Si2O2 slab: 9e-3 eV apart; 3.5e-4 eV
    from the same slab in a vacuum, tests/test_dispersion.py), and it wraps positions into the
    cell along non-periodic directions too."""
    if not pbc.any():
        return positions, None
    if pbc.all():
        return positions, cell
    periodic = cell[pbc]
    # orthonormal basis of the complement of the periodic vectors' span
    _, _, vt = np.linalg.svd(periodic)
    complement = vt[periodic.shape[0]:]
    lattice = cell.copy()
    shifted = positions.copy()
    for d, u in zip(np.where(~pbc)[0], complement):
        proj = positions @ u
        lattice[d] = u * (proj.max() - proj.min() + vacuum)
        shifted -= u * (proj.min() - 0.5 * vacuum)
    return shifted, lattice
