"""Seed structures of a distillation: ASE-readable files, or JSON (optionally gzipped) holding
pymatgen structure dicts, as the matcalc benchmark files (a list of records with a `structure`)
and the elemental-reference files (element -> {"structure": [dicts]}) do."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from ase import Atoms


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _structures(doc: Any) -> Iterator[dict]:
    """Every pymatgen structure dict in a JSON document: records with a 'structure' (one dict or a
    list of them), lists and mappings of records."""
    if isinstance(doc, dict):
        if doc.get("@class") == "Structure" or ("lattice" in doc and "sites" in doc):
            yield doc
            return
        if "structure" in doc:
            s = doc["structure"]
            yield from (s if isinstance(s, list) else [s])
            return
        for v in doc.values():
            yield from _structures(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _structures(v)


def read_structure_json(path: str | Path) -> list[Atoms]:
    """Atoms of every ordered pymatgen structure in a JSON file (no pymatgen needed); disordered
    structures are skipped."""
    from ..evaluate.data import atoms_from_pmg_dict

    path = Path(path)
    with _open(path) as f:
        doc = json.load(f)
    out = []
    for d in _structures(doc):
        try:
            out.append(atoms_from_pmg_dict(d))
        except (ValueError, KeyError):  # a disordered site: not a structure a model can label
            continue
    return out


def _is_json(path: Path) -> bool:
    return path.name.endswith((".json", ".json.gz"))


def read_seeds(paths: Sequence[str | Path], supported: Sequence[int], max_atoms: int = 64,
               limit: int | None = None, seed: int = 0) -> list[Atoms]:
    """Seed structures from the files, keeping those of at most `max_atoms` atoms whose elements
    the teacher knows; at most `limit` of them (drawn with `seed`, in file order). Each carries
    info['source'] = 'FILE:INDEX'."""
    import ase.io

    ok = set(int(z) for z in supported)
    out: list[Atoms] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"seed file {path} not found")
        frames = read_structure_json(path) if _is_json(path) else []
        if not frames:  # any other format ASE reads (an ASE database as .json among them)
            frames = ase.io.read(path, ":")
        for k, a in enumerate(frames):
            if 0 < len(a) <= max_atoms and set(a.numbers.tolist()) <= ok:
                b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
                b.info["source"] = f"{path.name}:{k}"
                out.append(b)
    if limit is not None and len(out) > limit:
        rng = np.random.default_rng(seed)
        out = [out[k] for k in sorted(rng.choice(len(out), limit, replace=False))]
    return out
