"""Labelled structures: readers, validation, neighbour lists and batching.

A `Sample` is one structure with its labels and its neighbour list, all numpy arrays; `collate`
joins samples into an `AtomGraph` plus a `Labels` batch. Readers take any ASE-readable file
(labels under configurable keys, else the file's own calculator results), ASE databases and
the rMD17 `.npz` format. Everything bad in the data is collected and reported at once with its
file and frame index (`DataError`). A file name may end in '@SLICE' to take only those frames
(`split_frames`).

Why one module: the readers, the checks, the frame selection and the batching all produce or
consume the one `Sample` type and share its error reporting (~460 lines); the on-disk store and
the statistics, which only read samples, live in modules of their own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..graph import AtomGraph, StructureBatch, StructureError, check_structure, graph_from_lists, neighbor_lists
from ..io import held_warnings

KBAR_PER_EV_A3 = 1602.1766208  # 1 eV/A^3 = 160.21766208 GPa
EV_PER_KCAL_MOL = 4.184 / 96.48533212  # 1 kcal/mol in eV (rMD17 units)


class DataError(ValueError):
    """Bad training data; the message lists each problem as `file:frame: reason`."""


@dataclass
class Sample:
    """One labelled structure with its neighbour list (atom indices local to the structure)."""

    numbers: np.ndarray  # (n,) int
    positions: np.ndarray  # (n, 3)
    cell: np.ndarray  # (3, 3)
    pbc: np.ndarray  # (3,) bool
    energy: float  # eV (NaN: no label)
    forces: np.ndarray | None  # (n, 3) eV/A
    stress: np.ndarray | None  # (3, 3) eV/A^3, ASE sign
    center: np.ndarray | None = None  # (e,)
    neighbor: np.ndarray | None = None
    shift: np.ndarray | None = None  # (e, 3) integer cell shifts
    source: str = ""  # "file:frame", for error messages

    @property
    def num_atoms(self) -> int:
        return len(self.numbers)

    def atoms(self) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)


class Dataset(Protocol):
    """What the trainer needs from a data set: random access and the size of each structure."""

    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> Sample: ...
    def sizes(self) -> np.ndarray: ...


@dataclass
class Labels:
    """Batched labels on the model's device; masks say which structures carry which label."""

    energy: torch.Tensor  # (B,)
    has_energy: torch.Tensor  # (B,) bool
    forces: torch.Tensor  # (N, 3)
    has_forces: torch.Tensor  # (N,) bool (per atom, from its structure)
    stress: torch.Tensor  # (B, 3, 3)
    has_stress: torch.Tensor  # (B,) bool
    num_atoms: torch.Tensor  # (B,)

    def to(self, device: torch.device, dtype: torch.dtype) -> "Labels":
        """Labels in `dtype` on `device`, except the total energies: they stay float64, since
        float32 cannot resolve meV on totals of thousands of eV (the loss takes the difference in float64)."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)

        return Labels(self.energy.to(device=device, dtype=torch.float64), move(self.has_energy), move(self.forces),
                      move(self.has_forces), move(self.stress), move(self.has_stress), move(self.num_atoms))


# ----------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class LabelKeys:
    energy: str = "REF_energy"
    forces: str = "REF_forces"
    stress: str = "REF_stress"
    stress_unit: str = "eV/A^3"


def _label(atoms: Atoms, key: str, fallback: str, per_atom: bool):
    """A label from atoms.info/arrays[key], else the attached calculator's `fallback` result."""
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if not per_atom and key in atoms.arrays:  # e.g. a per-structure value written as an array
        return atoms.arrays[key]
    calc = atoms.calc
    if calc is not None and fallback in getattr(calc, "results", {}):
        return calc.results[fallback]
    return None


# How a frame with neither an energy nor force labels is reported: one problem, not three.
UNLABELLED = "unlabelled"


def sample_from_atoms(atoms: Atoms, keys: LabelKeys) -> tuple[Sample, list[str]]:
    """Turn one labelled Atoms into a Sample; returns it with the list of problems found."""
    problems: list[str] = []
    n = len(atoms)
    energy = _label(atoms, keys.energy, "energy", False)
    forces = _label(atoms, keys.forces, "forces", True)
    stress = _label(atoms, keys.stress, "stress", False)
    e = float("nan")
    if energy is None and forces is None:
        problems.append(f"{UNLABELLED} frame: no energy or force labels ('{keys.energy}', '{keys.forces}' or a "
                        "calculator's results)")
    elif energy is None:
        problems.append(f"no energy label ('{keys.energy}' or a calculator energy)")
    else:
        try:
            e = float(np.asarray(energy, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            problems.append(f"energy label has shape {np.shape(energy)}, expected a number")
    f = None
    if forces is not None:
        f = np.asarray(forces, dtype=np.float64)
        if f.shape != (n, 3):
            problems.append(f"forces have shape {f.shape}, expected ({n}, 3)")
            f = None
    s = None
    if stress is not None:
        s = np.asarray(stress, dtype=np.float64)
        if s.shape == (6,):
            xx, yy, zz, yz, xz, xy = s
            s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        elif s.shape == (9,):
            s = s.reshape(3, 3)
        if s.shape != (3, 3):
            problems.append(f"stress has shape {np.shape(stress)}, expected (6,) Voigt or (3, 3)")
            s = None
        elif keys.stress_unit == "kbar":
            s = s / KBAR_PER_EV_A3
        if s is not None and not np.all(atoms.pbc):
            s = None  # stress is defined only for 3D-periodic cells
    sample = Sample(numbers=atoms.numbers.astype(np.int64), positions=atoms.positions.astype(np.float64),
                    cell=atoms.cell.array.astype(np.float64), pbc=np.asarray(atoms.pbc, dtype=bool),
                    energy=e, forces=f, stress=s)
    return sample, problems


def check_sample(sample: Sample, species: Sequence[int] | None, require_forces: bool,
                 found: Sequence[str] = ()) -> list[str]:
    """Problems of a sample's labels and structure (empty list: fine), beyond those `found` while
    reading it (`sample_from_atoms`): a frame without an energy label is said to have none, once,
    not also to have a NaN one."""
    problems = []
    unlabelled = any(p.startswith(UNLABELLED) for p in found)
    if not np.isfinite(sample.energy) and not unlabelled and not any(p.startswith("no energy label") for p in found):
        problems.append(f"energy label is {sample.energy}")
    if sample.forces is None:
        if require_forces and not unlabelled:
            problems.append("no force labels")
    elif not np.all(np.isfinite(sample.forces)):
        bad = np.unique(np.where(~np.isfinite(sample.forces))[0])
        problems.append(f"non-finite force labels on atoms {bad[:10].tolist()}")
    if sample.stress is not None and not np.all(np.isfinite(sample.stress)):
        problems.append("non-finite stress label")
    try:
        check_structure(sample.atoms(), species, label="structure")
    except StructureError as e:
        problems.append(str(e).removeprefix("structure: "))
    return problems


def _is_npz_rmd17(path: Path) -> bool:
    return path.suffix == ".npz"


_SLICE = re.compile(r"^-?\d*(:-?\d*){0,2}$")


def parse_frames(text: str) -> slice:
    """Python/ASE slice syntax -> slice: '-50:' (the last 50), ':950', '::10', '7' (one frame)."""
    text = text.strip()
    if not text or not _SLICE.match(text):
        raise ValueError(f"{text!r} is not a frame selection (Python slice syntax, e.g. ':950', '-50:', '::10', '7')")
    if ":" not in text:
        k = int(text)
        return slice(k, k + 1 if k != -1 else None)
    parts = [int(v) if v else None for v in text.split(":")]
    if len(parts) == 3 and parts[2] == 0:
        raise ValueError(f"{text!r}: the step of a frame selection cannot be 0")
    return slice(*parts)


def split_frames(spec: str | Path) -> tuple[Path, slice | None]:
    """'FILE@SLICE' -> (FILE, slice): those frames of the file (as `ase.io.read` takes 'file@-50:');
    a name that exists as given, or whose part after the last '@' is no slice, is a plain file (None)."""
    text = str(spec)
    if "@" in text and not Path(text).exists():
        path, sel = text.rsplit("@", 1)
        if sel.strip() and _SLICE.match(sel.strip()):
            return Path(path), parse_frames(sel)
    return Path(text), None


def _slice_text(sel: slice) -> str:
    parts = (sel.start, sel.stop) if sel.step is None else (sel.start, sel.stop, sel.step)
    return ":".join("" if v is None else str(v) for v in parts)


def _is_db(path: Path, fmt: str | None) -> bool:
    return path.suffix in (".db", ".aselmdb") or fmt == "db"


def frame_file(spec: str | Path, fmt: str | None = None) -> str:
    """The name that the frame indices of `iter_file(spec)` count in: the file itself, or for an ASE
    file selected from its end or backwards (e.g. 'a.extxyz@-50:', whose length ASE does not say
    without reading it all) the selection 'a.extxyz@-50:', whose frames are then numbered 0, 1, ..."""
    path, sel = split_frames(spec)
    if sel is None or _is_npz_rmd17(path) or _is_db(path, fmt) or ((sel.start or 0) >= 0 and (sel.step or 1) > 0):
        return str(path)
    return str(spec)


def iter_file(path: str | Path, keys: LabelKeys, index: str = ":", fmt: str | None = None
              ) -> Iterator[tuple[int, Sample, list[str]]]:
    """(frame index, sample, problems) for every frame of a file, streaming where the format allows.
    `path` may end in '@SLICE' (`split_frames`): only those frames, in place of `index`; the frame
    index is then the frame's position in the file (in `frame_file(path)`, see there)."""
    path, sel = split_frames(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: a folder, and not a data store built by `hipot data build` (no index.json)")
    if _is_npz_rmd17(path):
        yield from _iter_rmd17(path, sel)
        return
    if _is_db(path, fmt):
        import ase.db

        with ase.db.connect(str(path)) as db:
            wanted = None if sel is None else set(range(db.count())[sel])
            for k, row in enumerate(db.select()):
                if wanted is not None and k not in wanted:
                    continue
                atoms = row.toatoms(add_additional_information=True)
                atoms.info.update(row.get("key_value_pairs", {}))
                atoms.info.update(row.get("data", {}) or {})
                for key in (keys.forces,):
                    if key in atoms.info:  # per-atom arrays live in row.data
                        atoms.arrays[key] = np.asarray(atoms.info.pop(key))
                sample, problems = sample_from_atoms(atoms, keys)
                yield k, sample, problems
        return
    import ase.io

    first, step = 0, 1
    if sel is not None:
        index = _slice_text(sel)
        if (sel.start or 0) >= 0 and (sel.step or 1) > 0:
            first, step = sel.start or 0, sel.step or 1
    frames = ase.io.iread(str(path), index=index, format=fmt)
    k = 0
    while True:
        try:
            with held_warnings(path):
                atoms = next(frames)
        except StopIteration:
            return
        except Exception as e:  # each ASE reader fails its own way on an empty, truncated or garbled file
            what = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise DataError(f"{path}: cannot read frame {k} ({type(e).__name__}: {what}); is the file empty, "
                            "truncated or of another format (--format)?") from None
        sample, problems = sample_from_atoms(atoms, keys)
        yield first + step * k, sample, problems
        k += 1


def _iter_rmd17(path: Path, sel: slice | None = None) -> Iterator[tuple[int, Sample, list[str]]]:
    """rMD17 npz: nuclear_charges (n,), coords (F,n,3) A, energies (F,) kcal/mol, forces kcal/mol/A;
    the frames `sel` (default: all)."""
    with np.load(path) as d:
        missing = {"nuclear_charges", "coords", "energies"} - set(d.files)
        if missing:
            raise DataError(f"{path}: not an rMD17 npz file (missing {sorted(missing)})")
        z = d["nuclear_charges"].astype(np.int64)
        coords, energies = d["coords"], d["energies"]
        forces = d["forces"] if "forces" in d.files else None
    for k in range(len(coords))[sel if sel is not None else slice(None)]:
        problems = []
        f = None
        if forces is not None:
            f = forces[k].astype(np.float64) * EV_PER_KCAL_MOL
            if f.shape != (len(z), 3):
                problems.append(f"forces have shape {f.shape}, expected ({len(z)}, 3)")
                f = None
        pos = coords[k].astype(np.float64)
        if pos.shape != (len(z), 3):
            raise DataError(f"{path}:{k}: coords have shape {pos.shape}, expected ({len(z)}, 3)")
        yield k, Sample(numbers=z, positions=pos, cell=np.zeros((3, 3)), pbc=np.zeros(3, dtype=bool),
                        energy=float(energies[k]) * EV_PER_KCAL_MOL, forces=f, stress=None), problems


def read_samples(paths: Sequence[str | Path], keys: LabelKeys = LabelKeys(), index: str = ":",
                 fmt: str | None = None, species: Sequence[int] | None = None, require_forces: bool = True,
                 max_frames: int | None = None, max_report: int = 20) -> list[Sample]:
    """Read and check every frame of the files; raise DataError listing all problems found."""
    samples: list[Sample] = []
    errors: list[str] = []
    n_bad = 0
    for path in paths:
        name = frame_file(path, fmt)  # what the frame numbers count in, also for 'FILE@SLICE'
        for k, sample, problems in iter_file(path, keys, index, fmt):
            problems = problems + check_sample(sample, species, require_forces, problems)
            if problems:
                n_bad += 1
                if len(errors) < max_report:
                    errors.append(f"{name}:{k}: " + "; ".join(problems))
                continue
            sample.source = f"{name}:{k}"
            samples.append(sample)
            if max_frames is not None and len(samples) >= max_frames:
                break
        if max_frames is not None and len(samples) >= max_frames:
            break
    if n_bad:
        more = f"\n... and {n_bad - len(errors)} more" if n_bad > len(errors) else ""
        err = DataError(f"{n_bad} bad frame(s) in the training data:\n" + "\n".join(errors) + more)
        err.problems, err.n_bad = errors, n_bad  # for callers that join the reports of several reads
        raise err
    if not samples:
        raise DataError(f"no frames in {', '.join(map(str, paths))}")
    return samples


# ----------------------------------------------------------------------------- graphs

def add_neighbors(sample: Sample, cutoff: float, min_distance: float = 0.1, label: str = "structure") -> Sample:
    """Compute the sample's neighbour list once (it is reused every epoch); DataError if it has none
    (the same reasons, in the same words, as `hipot.graph.build_graph`)."""
    return _with_neighbors([sample], cutoff, min_distance, [label])[0]


def _with_neighbors(samples: Sequence[Sample], cutoff: float, min_distance: float, labels: Sequence[str]
                    ) -> list[Sample]:
    """Neighbour lists of several samples at once (`hipot.neighbors.neighbor_lists`)."""
    try:
        lists = neighbor_lists([s.atoms() for s in samples], cutoff, min_distance, labels=labels)
    except StructureError as e:
        raise DataError(str(e)) from None
    for sample, (i, j, shift, _d) in zip(samples, lists):
        sample.center, sample.neighbor, sample.shift = i, j, shift
    return list(samples)


class InMemoryDataset:
    """Samples held in memory with their neighbour lists."""

    def __init__(self, samples: list[Sample], cutoff: float, min_distance: float = 0.1, chunk: int = 64):
        todo = [k for k, s in enumerate(samples) if s.center is None]
        for start in range(0, len(todo), chunk):
            ks = todo[start:start + chunk]
            _with_neighbors([samples[k] for k in ks], cutoff, min_distance,
                            [samples[k].source or f"frame {k}" for k in ks])
        self.samples = list(samples)
        self.cutoff = cutoff

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def sizes(self) -> np.ndarray:
        return np.array([s.num_atoms for s in self.samples], dtype=np.int64)


class Subset:
    """A view of some indices of a data set."""

    def __init__(self, base: Dataset, indices: Sequence[int]):
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        self._sizes = base.sizes()[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        return self.base[int(self.indices[i])]

    def sizes(self) -> np.ndarray:
        return self._sizes


def collate(samples: Sequence[Sample]) -> tuple[AtomGraph, Labels]:
    """Join samples (with neighbour lists) into one graph (`hipot.graph.graph_from_lists`, CPU,
    float64) and its labels."""
    sizes = [s.num_atoms for s in samples]
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    cat = np.concatenate
    t = torch.from_numpy
    structures = StructureBatch.from_arrays([s.numbers for s in samples], [s.positions for s in samples],
                                            [s.cell for s in samples], [s.pbc for s in samples],
                                            [s.source for s in samples])
    graph = graph_from_lists(structures,
                             t(cat([s.center.astype(np.int64) + o for s, o in zip(samples, ptr)])),
                             t(cat([s.neighbor.astype(np.int64) + o for s, o in zip(samples, ptr)])),
                             t(cat([s.shift for s in samples]).astype(np.float64).reshape(-1, 3)))
    zeros3 = np.zeros((3, 3))
    has_f = np.array([s.forces is not None for s in samples])
    labels = Labels(
        energy=t(np.array([s.energy if np.isfinite(s.energy) else 0.0 for s in samples])),
        has_energy=t(np.array([bool(np.isfinite(s.energy)) for s in samples])),
        forces=t(cat([s.forces if s.forces is not None else np.zeros((s.num_atoms, 3)) for s in samples])),
        has_forces=t(np.repeat(has_f, sizes)),
        stress=t(np.stack([s.stress if s.stress is not None else zeros3 for s in samples])),
        has_stress=t(np.array([s.stress is not None for s in samples])),
        num_atoms=t(np.array(sizes, dtype=np.float64)),
    )
    return graph, labels


def species_of(datasets: Sequence[Dataset], max_frames: int | None = None) -> list[int]:
    """Sorted atomic numbers present in the data sets."""
    found: set[int] = set()
    for ds in datasets:
        if hasattr(ds, "species"):  # a store knows its elements without reading every frame
            found.update(ds.species())
            continue
        for i in _spaced(len(ds), max_frames):
            found.update(np.unique(ds[i].numbers).tolist())
    return sorted(found)


def _spaced(n: int, limit: int | None) -> np.ndarray:
    """Evenly spaced indices, at most `limit` of range(n)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def symbols(numbers: Sequence[int]) -> str:
    return ", ".join(chemical_symbols[z] for z in numbers)


class Concat:
    """Several data sets read as one."""

    def __init__(self, parts: Sequence[Dataset]):
        self.parts = list(parts)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> Sample:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[k][i - int(self.offsets[k])]

    def sizes(self) -> np.ndarray:
        return np.concatenate([p.sizes() for p in self.parts])
