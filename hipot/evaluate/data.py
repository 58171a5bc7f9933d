"""Loaders for the shipped reference data (`../shared/data`, see each folder's PROVENANCE.md).

Everything returns plain Python/numpy objects and ase.Atoms; pymatgen is needed only where a
benchmark itself needs it (structure matching, convex hulls)."""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from ase import Atoms

WBM_FILE = "matcalc_benchmarks/wbm-random-pbe52-equilibrium-2025.1.json.gz"
ELASTIC_FILE = "matcalc_benchmarks/mp-binary-pbe-elasticity-2025.1.json.gz"
ELEMENT_REFS_FILE = "matcalc_benchmarks/MP-PBE-Element-Refs.json.gz"
DCDFT_FILE = "ase_collections/dcdft.json"
DIATOMICS_FILE = "mbd_diatomics/diatomics-dft.json.gz"
KAPPA103_FILE = "mbd_kappa103/kappa-103-analysis.jsonl"
ALEXANDRIA_FILE = "matcalc_benchmarks/alexandria-binary-pbe-phonon-2025.1.json.gz"
SI_PBE_DIR = "phono3py_examples/Si-PBE"
MODEL_METRICS_DIR = "mbd_model_metrics"


def default_data_dir() -> Path:
    """$HIPOT_DATA, else `../shared/data` beside the repository checkout, else ./shared/data."""
    env = os.environ.get("HIPOT_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared" / "data", repo / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "data"


def _load_json_gz(path: Path):
    with gzip.open(path, "rt") as f:
        return json.load(f)


def atoms_from_pmg_dict(d: dict) -> Atoms:
    """ase.Atoms from a pymatgen `Structure.as_dict()` without importing pymatgen (ordered sites only)."""
    cell = np.asarray(d["lattice"]["matrix"], dtype=float)
    symbols, frac = [], []
    for site in d["sites"]:
        species = site["species"]
        if len(species) != 1 or abs(species[0].get("occu", 1) - 1) > 1e-6:
            raise ValueError("disordered site: not supported")
        # strip oxidation states such as "Fe2+" that some dicts carry
        symbols.append("".join(c for c in species[0]["element"] if c.isalpha()))
        frac.append(site["abc"])
    pbc = d["lattice"].get("pbc", (True, True, True))
    return Atoms(symbols=symbols, scaled_positions=np.asarray(frac, float), cell=cell, pbc=pbc)


@dataclass
class WBMEntry:
    material_id: str
    formula: str
    atoms: Atoms
    energy: float               # DFT total energy, eV (uncorrected)
    correction: float           # MP2020 total correction carried by the label, eV (corrected - uncorrected)
    e_form: float               # corrected formation energy per atom, eV/atom (the label we score against)
    e_form_uncorrected: float
    structure_dict: dict = field(repr=False, default_factory=dict)


def load_wbm(data_dir: Path) -> list[WBMEntry]:
    out = []
    for e in _load_json_gz(data_dir / WBM_FILE):
        out.append(WBMEntry(e["material_id"], e["formula"], atoms_from_pmg_dict(e["structure"]), float(e["energy"]),
                            float(e["corrected_energy"]) - float(e["energy"]),
                            float(e["corrected_formation_energy_per_atom"]), float(e["formation_energy_per_atom"]),
                            e["structure"]))
    return out


@lru_cache(maxsize=4)
def element_refs(data_dir: Path) -> dict[str, float]:
    """Elemental chemical potentials (eV/atom): the lowest MP-PBE polymorph energy per element. These
    reproduce the WBM file's formation energies to 1e-8 eV/atom (checked in the tests), whereas the
    2023 Matbench-Discovery reference entries differ for a few elements by up to 0.06 eV/atom."""
    raw = _load_json_gz(data_dir / ELEMENT_REFS_FILE)
    return {el: float(min(v["energy_per_atom"])) for el, v in raw.items()}


@dataclass
class ElasticEntry:
    mp_id: str
    formula: str
    atoms: Atoms
    k_vrh: float  # GPa
    g_vrh: float  # GPa


def load_elastic(data_dir: Path) -> list[ElasticEntry]:
    return [ElasticEntry(e["mp_id"], e["formula"], atoms_from_pmg_dict(e["structure"]), float(e["bulk_modulus_vrh"]),
                         float(e["shear_modulus_vrh"])) for e in _load_json_gz(data_dir / ELASTIC_FILE)]


@dataclass
class DcdftEntry:
    element: str
    atoms: Atoms
    v0: float   # A^3/atom, WIEN2k all-electron PBE
    b0: float   # GPa
    b1: float


def load_dcdft(data_dir: Path) -> list[DcdftEntry]:
    from ase.db import connect

    out = []
    for row in connect(str(data_dir / DCDFT_FILE)).select():
        out.append(DcdftEntry(row.name, row.toatoms(), float(row.wien2k_volume), float(row.wien2k_B),
                              float(row.wien2k_Bp)))
    return sorted(out, key=lambda e: e.atoms.numbers[0])


def load_diatomics(data_dir: Path, functional: str = "PBE") -> dict[str, dict[str, np.ndarray]]:
    """{'Si': {'distances': (n,), 'energies': (n,)}} for the homonuclear dimers of one functional."""
    raw = _load_json_gz(data_dir / DIATOMICS_FILE)[functional]
    out = {}
    for key, v in raw.items():
        el = key.split("-")[0]
        out[el] = {"distances": np.asarray(v["distances"], float), "energies": np.asarray(v["energies"], float)}
    return out


@dataclass
class ForceSet:
    """Displaced supercells with DFT forces (phono3py FORCES_FC3)."""
    supercell: Atoms
    unit_cell: Atoms
    supercell_matrix: np.ndarray
    primitive_matrix: np.ndarray
    displacements: list[list[tuple[int, np.ndarray]]]  # per supercell: (atom index, displacement vector)
    forces: list[np.ndarray]                             # per supercell: (n, 3) eV/A


def _cell_from_yaml(block: dict) -> Atoms:
    symbols = [p["symbol"] for p in block["points"]]
    frac = np.array([p["coordinates"] for p in block["points"]], float)
    return Atoms(symbols, scaled_positions=frac, cell=np.array(block["lattice"], float), pbc=True)


def load_si_pbe(data_dir: Path) -> ForceSet:
    import yaml

    folder = data_dir / SI_PBE_DIR
    meta = yaml.safe_load((folder / "phono3py_disp.yaml").read_text())
    supercell = _cell_from_yaml(meta["supercell"])
    n = len(supercell)
    disps: list[list[tuple[int, np.ndarray]]] = []
    forces: list[np.ndarray] = []
    lines = (folder / "FORCES_FC3").read_text().splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("# File"):
            i += 1
            continue
        i += 1
        d = []
        while lines[i].startswith("#"):
            parts = lines[i][1:].split()
            d.append((int(parts[0]) - 1, np.array(parts[1:4], float)))
            i += 1
        forces.append(np.array([lines[i + k].split() for k in range(n)], float))
        disps.append(d)
        i += n
    return ForceSet(supercell, _cell_from_yaml(meta["unit_cell"]), np.array(meta["supercell_matrix"], float),
                    np.array(meta["primitive_matrix"], float), disps, forces)


def displaced(fs: ForceSet, k: int) -> Atoms:
    atoms = fs.supercell.copy()
    for idx, vec in fs.displacements[k]:
        atoms.positions[idx] += vec
    return atoms


@dataclass
class HeatCapacityEntry:
    mp_id: str
    formula: str
    atoms: Atoms
    cv: float  # J/(K mol) at 300 K, per mole of the given cell (phonopy's convention), Alexandria PBE


def load_alexandria_cv(data_dir: Path) -> list[HeatCapacityEntry]:
    return [HeatCapacityEntry(e["mp_id"], e["formula"], atoms_from_pmg_dict(e["structure"]), float(e["heat_capacity"]))
            for e in _load_json_gz(data_dir / ALEXANDRIA_FILE)]


def load_kappa103_summary(data_dir: Path) -> dict:
    with open(data_dir / KAPPA103_FILE) as f:
        return json.loads(f.readline())["_base"]


def load_kappa103_published(data_dir: Path) -> dict[str, dict]:
    """The published per-compound results of the models on the kappa benchmark, keyed by the
    Matbench Discovery model key (e.g. 'hienet'): label, kappa_ml (None where the model failed),
    srme (κ_SRME per compound), imag_modes, ..., each a list in the order of the summary's
    material_ids (`load_kappa103_summary`)."""
    out = {}
    with open(data_dir / KAPPA103_FILE) as f:
        next(f)
        for line in f:
            d = json.loads(line)
            out[d["key"]] = d
    return out


def load_published_metrics(data_dir: Path) -> dict[str, dict]:
    """Matbench-Discovery model cards (YAML) keyed by file stem, e.g. 'hienet', 'sevennet-0'."""
    import yaml

    out = {}
    for p in sorted((data_dir / MODEL_METRICS_DIR).glob("*.yml")):
        out[p.stem] = yaml.safe_load(p.read_text())
    return out
