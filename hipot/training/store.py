"""`hipot data build`: a sharded HDF5 store of labelled structures with neighbour lists.

Layout of a store folder:
    index.json        cutoff, label keys, species, frames per shard
    shard_00000.h5 .. one file per `shard_size` frames
Each shard holds the frames' arrays concatenated (atoms, edges) with offset tables (`atom_ptr`,
`edge_ptr`), so one frame is read with a few slice reads: random access, nothing loaded whole.
Files are opened lazily in each process (h5py handles must not cross a fork).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_write, write_json
from .data import DataError, LabelKeys, Sample, add_neighbors, check_sample, frame_file, iter_file

INDEX = "index.json"
STORE_FORMAT = "hipot-store"


def is_store(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


class _ShardWriter:
    """Accumulates frames and writes them as one shard file (atomically: temp file, then rename)."""

    def __init__(self, path: Path):
        self.path = path
        self.frames: list[Sample] = []

    def write(self) -> int:
        import h5py

        fr = self.frames
        n_atoms = np.array([s.num_atoms for s in fr])
        n_edges = np.array([len(s.center) for s in fr])

        def fill(tmp: Path) -> None:
            with h5py.File(tmp, "w") as h:
                h["atom_ptr"] = np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64)
                h["edge_ptr"] = np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64)
                h["numbers"] = np.concatenate([s.numbers for s in fr]).astype(np.int16)
                h["positions"] = np.concatenate([s.positions for s in fr])
                h["cell"] = np.stack([s.cell for s in fr])
                h["pbc"] = np.stack([s.pbc for s in fr])
                h["energy"] = np.array([s.energy for s in fr])
                h["has_forces"] = np.array([s.forces is not None for s in fr])
                h["forces"] = np.concatenate([s.forces if s.forces is not None else np.zeros((s.num_atoms, 3))
                                              for s in fr])
                h["has_stress"] = np.array([s.stress is not None for s in fr])
                h["stress"] = np.stack([s.stress if s.stress is not None else np.zeros((3, 3)) for s in fr])
                h["center"] = np.concatenate([s.center for s in fr]).astype(np.int32)
                h["neighbor"] = np.concatenate([s.neighbor for s in fr]).astype(np.int32)
                h["shift"] = np.concatenate([s.shift for s in fr]).reshape(-1, 3).astype(np.int32)

        atomic_write(self.path, fill)
        return len(fr)


def build_store(inputs: Sequence[str | Path], out: str | Path, cutoff: float, keys: LabelKeys = LabelKeys(),
                index: str = ":", fmt: str | None = None, shard_size: int = 10000,
                require_forces: bool = True, species: Sequence[int] | None = None, max_report: int = 20,
                progress: bool = False) -> Path:
    """Stream frames from `inputs` into a store at `out`, one shard at a time (bounded memory).
    Bad frames are reported together (DataError) and no index is written for a failed build."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / INDEX).exists():
        (out / INDEX).unlink()  # a half-rebuilt store must not look complete
    counts: list[int] = []
    errors: list[str] = []
    n_bad = 0
    found: set[int] = set()
    shard = _ShardWriter(out / "shard_00000.h5")
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(unit="frame", desc="data build")
    for path in inputs:
        for k, sample, problems in iter_file(path, keys, index, fmt):
            problems = problems + check_sample(sample, species, require_forces, problems)
            if not problems:
                try:
                    add_neighbors(sample, cutoff, label="structure")
                except DataError as e:
                    problems.append(str(e).removeprefix("structure: "))
            if problems:
                n_bad += 1
                if len(errors) < max_report:
                    errors.append(f"{frame_file(path, fmt)}:{k}: " + "; ".join(problems))
                continue
            found.update(np.unique(sample.numbers).tolist())
            shard.frames.append(sample)
            if bar is not None:
                bar.update(1)
            if len(shard.frames) >= shard_size:
                counts.append(shard.write())
                shard = _ShardWriter(out / f"shard_{len(counts):05d}.h5")
    if bar is not None:
        bar.close()
    if n_bad:
        more = f"\n... and {n_bad - len(errors)} more" if n_bad > len(errors) else ""
        raise DataError(f"{n_bad} bad frame(s); no store written:\n" + "\n".join(errors) + more)
    if shard.frames:
        counts.append(shard.write())
    if not counts:
        raise DataError(f"no frames in {', '.join(map(str, inputs))}")
    doc = {"format": STORE_FORMAT, "version": 1, "cutoff": float(cutoff), "species": sorted(found),
           "shards": [{"file": f"shard_{k:05d}.h5", "frames": c} for k, c in enumerate(counts)],
           "frames": int(sum(counts)), "sources": [str(p) for p in inputs],
           "keys": {"energy": keys.energy, "forces": keys.forces, "stress": keys.stress,
                    "stress_unit_of_source": keys.stress_unit}}
    write_json(out / INDEX, doc)
    return out


class H5Store:
    """Random access to a store built by `build_store`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        doc = json.loads((self.path / INDEX).read_text())
        if doc.get("format") != STORE_FORMAT:
            raise DataError(f"{self.path}: not a hipot data store")
        self.cutoff = float(doc["cutoff"])
        self._species = list(doc["species"])
        self.files = [self.path / s["file"] for s in doc["shards"]]
        counts = np.array([s["frames"] for s in doc["shards"]], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self._handles: dict[int, object] = {}
        self._pid = os.getpid()
        # the atom count of every frame: small, and the sampler needs it
        import h5py

        sizes = []
        for f in self.files:
            with h5py.File(f, "r") as h:
                sizes.append(np.diff(h["atom_ptr"][:]))
        self._sizes = np.concatenate(sizes).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def sizes(self) -> np.ndarray:
        return self._sizes

    def species(self) -> list[int]:
        return self._species

    def _shard(self, k: int):
        import h5py

        if self._pid != os.getpid():  # forked: the parent's handles are not ours
            self._handles, self._pid = {}, os.getpid()
        if k not in self._handles:
            self._handles[k] = h5py.File(self.files[k], "r")
        return self._handles[k]

    def __getitem__(self, i: int) -> Sample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        j = i - int(self.offsets[k])
        h = self._shard(k)
        a0, a1 = (int(x) for x in h["atom_ptr"][j:j + 2])
        e0, e1 = (int(x) for x in h["edge_ptr"][j:j + 2])
        return Sample(
            numbers=h["numbers"][a0:a1].astype(np.int64), positions=h["positions"][a0:a1],
            cell=h["cell"][j], pbc=h["pbc"][j].astype(bool), energy=float(h["energy"][j]),
            forces=h["forces"][a0:a1] if h["has_forces"][j] else None,
            stress=h["stress"][j] if h["has_stress"][j] else None,
            center=h["center"][e0:e1].astype(np.int64), neighbor=h["neighbor"][e0:e1].astype(np.int64),
            shift=h["shift"][e0:e1].astype(np.float64))

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles = {}
