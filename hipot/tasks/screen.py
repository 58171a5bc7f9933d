"""Alloy screening: enumerate orderings on a parent lattice (or take candidates from a file), relax
them in batches, formation energies against the relaxed pure elements, convex hull (pymatgen)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii, reference_states

from ..graph import StructureError
from ..optional import require
from .common import ModelLike, Result, atomic_write, pyplot, save_figure
from .enumerate import LATTICES, build, enumerate_orderings, parent, volume_per_site
from .relax import RelaxResult, relax

CSV_COLUMNS = ["rank", "id", "formula", "n_atoms", "composition", "prototype", "spacegroup_ideal",
               "spacegroup_relaxed", "energy_per_atom_eV", "formation_energy_eV_per_atom",
               "e_above_hull_eV_per_atom", "on_hull", "converged", "fmax", "steps", "volume_per_atom_A3"]

# Named orderings, keyed by (parent lattice, space group of the ideal ordering, atoms per primitive
# cell, sorted element counts).
PROTOTYPES = {
    ("fcc", 221, 4, (1, 3)): "L1_2", ("fcc", 123, 2, (1, 1)): "L1_0", ("fcc", 166, 2, (1, 1)): "L1_1",
    ("fcc", 139, 4, (1, 3)): "D0_22", ("fcc", 141, 4, (2, 2)): "CH/40", ("fcc", 225, 1, (1,)): "A1",
    ("bcc", 229, 1, (1,)): "A2", ("bcc", 221, 2, (1, 1)): "B2", ("bcc", 225, 4, (1, 3)): "D0_3",
    ("bcc", 227, 4, (2, 2)): "B32", ("hcp", 194, 2, (2,)): "A3", ("hcp", 187, 2, (1, 1)): "B_h",
    ("hcp", 194, 8, (2, 6)): "D0_19",
}


def atomic_volume(symbol: str) -> float:
    """An element's volume per atom (A^3) from ASE's reference crystal, else from its covalent radius."""
    z = atomic_numbers[symbol]
    ref = reference_states[z] or {}
    a = ref.get("a")
    sym = ref.get("symmetry")
    if a is not None:
        if sym == "fcc":
            return a**3 / 4
        if sym == "bcc":
            return a**3 / 2
        if sym == "hcp":
            return np.sqrt(3) / 2 * a**2 * a * ref.get("c/a", 1.633) / 2
        if sym == "diamond":
            return a**3 / 8
        if sym == "sc":
            return a**3
    d = 2 * covalent_radii[z]
    return d**3 / np.sqrt(2)  # close-packed spheres touching at 2 r


def spacegroup(atoms: Atoms, symprec: float = 1e-3) -> tuple[int, str]:
    import warnings

    spglib = require("spglib", "tasks", "space groups")
    with warnings.catch_warnings():  # spglib 2.5+ warns about its legacy error handling on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
                                         symprec=symprec)
    return (int(ds.number), str(ds.international)) if ds is not None else (0, "?")


def candidates(elements: Sequence[str], lattice: str = "fcc", max_atoms: int = 4) -> list[Atoms]:
    """Every symmetry-distinct ordering of `elements` on `lattice` up to `max_atoms` atoms per cell,
    at a Vegard's-law volume from the elements' reference volumes; info holds id and prototype."""
    elements = list(elements)
    for el in elements:
        if el not in atomic_numbers:
            raise StructureError(f"screen: unknown element {el!r}")
    p = parent(lattice)
    vols = {el: atomic_volume(el) for el in elements}
    out = []
    counter: dict[int, int] = {}
    for o in enumerate_orderings(elements, lattice, max_atoms):
        v = float(np.mean([vols[elements[c]] for c in o["colors"]]))
        a = (v / volume_per_site(p)) ** (1.0 / 3.0)
        atoms = build(o, elements, lattice, a)
        n = o["n_atoms"]
        counter[n] = counter.get(n, 0) + 1
        atoms.info["id"] = f"{lattice}-{n}-{counter[n]}"
        number, symbol = spacegroup(atoms, 1e-5)
        counts = tuple(sorted(int(c) for c in np.bincount(o["colors"]) if c > 0))
        atoms.info["spacegroup_ideal"] = f"{symbol} ({number})"
        proto = PROTOTYPES.get((lattice, number, n, counts))
        if proto:  # only named ones: extxyz cannot round-trip an empty string value
            atoms.info["prototype"] = proto
        atoms.info["hnf"] = " ".join(str(x) for x in o["hnf"].ravel())
        out.append(atoms)
    return out


@dataclass
class ScreenResult(Result):
    """Ranked rows (by energy above hull, then formation energy): CSV_COLUMNS; `hull` the ids on
    the hull; `references` the energy per atom of each pure element (eV/atom)."""

    elements: list[str]
    lattice: str
    rows: list[dict[str, Any]]
    hull: list[str]
    references: dict[str, float]
    n_candidates: int = 0
    n_converged: int = 0
    structures: list[Atoms] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.pop("structures", None)
        d["rows"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in d["rows"]]
        d["hull"] = [{k: r[k] for k in ("id", "formula", "prototype", "formation_energy_eV_per_atom")}
                     for r in self.rows if r["on_hull"]]
        return d

    def write_csv(self, path: str) -> str:
        def _w(tmp):
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
                w.writeheader()
                for r in self.rows:
                    w.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in CSV_COLUMNS})

        atomic_write(path, _w)
        return path

    def plot(self, path: str) -> str:
        """Formation energy against composition with the hull (binary systems); for more elements,
        formation energy against energy above the hull."""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ok = [r for r in self.rows if np.isfinite(r["formation_energy_eV_per_atom"])]
        ef = np.array([r["formation_energy_eV_per_atom"] for r in ok])
        if len(self.elements) == 2:
            b = self.elements[1]
            x = np.array([r["_x"][b] for r in ok])
            on = np.array([r["on_hull"] for r in ok])
            ax.scatter(x[~on], ef[~on], s=18, color="0.55", label="above hull", zorder=2)
            hx, hy = x[on], ef[on]
            order = np.argsort(hx)
            ax.plot(hx[order], hy[order], "-o", color="C3", ms=6, label="hull", zorder=3)
            placed: dict[float, list[float]] = {}  # grey labels already at each composition
            for r, xi, yi in zip(ok, x, ef):
                if r["on_hull"] and 0 < xi < 1:
                    label = r["formula"] + (f" ({r['prototype']})" if r["prototype"] else "")
                    ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(0, -14), ha="center",
                                fontsize=8, color="C3")
                elif r["prototype"] and 0 < xi < 1:  # named orderings off the hull, for reference
                    near = placed.setdefault(round(float(xi), 3), [])
                    dy = -9 * sum(abs(yi - y) < 0.004 * (ef.max() - ef.min() + 1e-9) * 3 for y in near)
                    near.append(yi)
                    ax.annotate(r["prototype"], (xi, yi), textcoords="offset points", xytext=(6, dy), va="center",
                                fontsize=7, color="0.4")
            ax.margins(y=0.12)
            ax.set_xlabel(f"x in {self.elements[0]}$_{{1-x}}${b}$_x$")
            ax.set_xlim(-0.03, 1.03)
        else:
            eh = np.array([r["e_above_hull_eV_per_atom"] for r in ok])
            ax.scatter(eh, ef, s=18, color="C0")
            ax.set_xlabel("energy above hull (eV/atom)")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_ylabel("formation energy (eV/atom)")
        ax.set_title(f"{'-'.join(self.elements)} on {self.lattice}: {len(self.rows)} structures, "
                     f"{len(self.hull)} on the hull", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
        save_figure(fig, path)
        return path


def analyse(structures: Sequence[Atoms], results: Sequence[RelaxResult], elements: Sequence[str] | None = None,
            lattice: str = "", hull_tol: float = 1e-6) -> ScreenResult:
    """Formation energies and the convex hull of relaxed candidates. The references are the lowest
    energies per atom of the pure-element candidates, which must be among them."""
    require("pymatgen", "tasks", "the convex hull")
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    if elements is None:
        elements = sorted({s for a in structures for s in a.get_chemical_symbols()})
    elements = list(elements)
    refs: dict[str, float] = {}
    for a, r in zip(structures, results):
        syms = set(a.get_chemical_symbols())
        if len(syms) == 1 and np.isfinite(r.energy):
            el = syms.pop()
            refs[el] = min(refs.get(el, np.inf), r.energy / len(a))
    missing = [el for el in elements if el not in refs]
    if missing:
        raise StructureError(f"screen: no relaxed pure-element structure of {', '.join(missing)} among the "
                             "candidates (needed as the formation-energy reference)")
    entries, rows = [], []
    for k, (a, r) in enumerate(zip(structures, results)):
        ident = str(a.info.get("id", a.info.get("name", f"candidate-{k}")))
        comp = Composition(a.get_chemical_formula())
        x = {el: comp.get_atomic_fraction(el) for el in elements}
        row = {"id": ident, "formula": comp.reduced_formula, "n_atoms": len(a),
               "composition": " ".join(f"{el}{x[el]:.4g}" for el in elements),
               "prototype": a.info.get("prototype", ""), "spacegroup_ideal": a.info.get("spacegroup_ideal", ""),
               "spacegroup_relaxed": "", "energy_per_atom_eV": r.energy / len(a), "converged": r.converged,
               "fmax": r.fmax, "steps": r.steps, "volume_per_atom_A3": float("nan"), "_x": x,
               "formation_energy_eV_per_atom": float("nan"), "e_above_hull_eV_per_atom": float("nan"),
               "on_hull": False}
        if np.isfinite(r.energy):
            number, symbol = spacegroup(r.atoms, 0.1)
            row["spacegroup_relaxed"] = f"{symbol} ({number})"
            row["volume_per_atom_A3"] = float(r.atoms.get_volume() / len(a))
            entries.append((row, PDEntry(comp, r.energy, name=ident)))
        rows.append(row)
    pd = PhaseDiagram([e for _, e in entries])
    for row, e in entries:
        row["formation_energy_eV_per_atom"] = float(pd.get_form_energy_per_atom(e))
        row["e_above_hull_eV_per_atom"] = float(pd.get_e_above_hull(e, allow_negative=True))
        row["on_hull"] = bool(row["e_above_hull_eV_per_atom"] <= hull_tol)
    rows.sort(key=lambda r: (not np.isfinite(r["e_above_hull_eV_per_atom"]), r["e_above_hull_eV_per_atom"],
                             r["formation_energy_eV_per_atom"]))
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    hull = [r["id"] for r in rows if r["on_hull"]]
    return ScreenResult(elements, lattice, rows, hull, refs, len(rows), sum(bool(r.converged) for r in results),
                        [r.atoms for r in results])


def screen(elements: Sequence[str] = ("Cu", "Au"), lattice: str = "fcc", max_atoms: int = 4,
           model: ModelLike = "hienet-v3", *, structures: Sequence[Atoms] | None = None, optimizer: str = "FIRE",
           fmax: float = 0.05, steps: int = 500, batch_size: int = 64, device: str = "auto", dtype: str = "float32",
           progress: bool = False) -> ScreenResult:
    """Enumerate orderings of `elements` on `lattice` (fcc, bcc, hcp) up to `max_atoms` atoms per cell
    (or take `structures`), relax all (cell and positions, batched), and build the hull."""
    if structures is None:
        if lattice not in LATTICES:
            raise ValueError(f"lattice must be one of {', '.join(LATTICES)}, not {lattice!r}")
        structures = candidates(elements, lattice, max_atoms)
    structures = list(structures)
    results = relax(structures, model, device=device, dtype=dtype, optimizer=optimizer, fmax=fmax, steps=steps,
                    batch_size=batch_size, progress=progress)
    return analyse(structures, results, elements, lattice)
