"""The κ_SRME reference set (`ksrme_phonondb_pbe/`, from MPA2suite/k_SRME; its PROVENANCE.md):
the 103 phononDB-PBE crystals with their phono3py settings in `info` (fc2_supercell, fc3_supercell,
q_mesh, mp_id, name, symm.no), and the DFT-PBE kappa at 300 K without NAC, total and mode-resolved,
that κ_SRME compares with."""
from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

FOLDER = "ksrme_phonondb_pbe"
STRUCTURES = f"{FOLDER}/phononDB-PBE-structures.extxyz"
REFERENCE = f"{FOLDER}/kappas_phononDB_PBE_noNAC.json.gz"


def load_structures(data_dir: Path) -> list[Atoms]:
    """The 103 structures in the file's order, info as in the file (supercells as 3x3 arrays)."""
    import ase.io

    return ase.io.read(Path(data_dir) / STRUCTURES, index=":")


@functools.lru_cache(maxsize=4)
def _reference(path: str) -> dict[str, dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        raw = json.load(f)
    out = {}
    for k, mp_id in raw["mp_id"].items():
        out[mp_id] = {"mp_id": mp_id, "name": raw["name"][k], "spacegroup": int(raw["symm.no"][k]),
                      "q_mesh": [int(x) for x in raw["q_mesh"][k]],
                      "temperatures": np.asarray(raw["temperatures"][k], float),
                      "kappa_ave": np.asarray(raw["kappa_TOT_ave"][k], float),
                      "mode_kappa": np.asarray(raw["mode_kappa_TOT_ave"][k], float),
                      "weights": np.asarray(raw["weights"][k], int),
                      "qpoints": np.asarray(raw["qpoints"][k], float),
                      "frequencies": np.asarray(raw["frequencies"][k], float)}
    return out


def load_reference(data_dir: Path) -> dict[str, dict[str, Any]]:
    """mp_id -> the DFT reference: name, spacegroup, q_mesh, temperatures, kappa_ave (T), mode_kappa
    (T, q, bands; weighted as phono3py's, summing to kappa_ave times the sum of weights), weights,
    qpoints (the irreducible mesh of the primitive cell), frequencies (THz)."""
    return _reference(str(Path(data_dir) / REFERENCE))


def select(structures: Sequence[Atoms], names: Sequence[str] | None) -> list[Atoms]:
    """The structures named by mp id ('mp-22862'), formula ('NaCl', when only one compound has it)
    or formula:spacegroup ('ZnO:186'); all of them for None. An unknown or ambiguous name is a
    ValueError naming the choices."""
    if not names:
        return list(structures)
    out = []
    for name in names:
        formula, _, sg = name.partition(":")
        hits = [a for a in structures if a.info["mp_id"] == name or (
            a.info["name"] == formula and (not sg or str(int(a.info["symm.no"])) == sg))]
        if not hits:
            raise ValueError(f"no compound {name!r} among the {len(structures)} phononDB-PBE structures "
                             "(an mp id, a formula or formula:spacegroup, e.g. mp-22862, NaCl, ZnO:186)")
        if len(hits) > 1:
            raise ValueError(f"{name!r} names {len(hits)} compounds: "
                             + ", ".join(f"{a.info['mp_id']} ({a.info['name']}:{int(a.info['symm.no'])})" for a in hits))
        out.append(hits[0])
    return out
