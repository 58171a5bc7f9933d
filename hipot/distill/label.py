"""The teacher's energies, forces and stresses as training labels (REF_energy, REF_forces,
REF_stress), written in parts so that an interrupted labelling continues where it stopped."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase import Atoms

from ..evaluator import Evaluator
from ..io import atomic_write
from ..types import StructureError
from .workers import Teacher


def evaluate_safely(evaluator: Evaluator, structures: list[Atoms], batch_size: int,
                    stress: bool = True) -> list[dict | None]:
    """Teacher results; None for structures the model refuses (e.g. atoms run into each other)."""
    return evaluate_fitting(evaluator, structures, batch_size, stress)[0]


def evaluate_fitting(evaluator: Evaluator, structures: list[Atoms], batch_size: int,
                     stress: bool = True) -> tuple[list[dict | None], int]:
    """`evaluate_safely`, and the batch size that fitted: a call that runs out of device memory
    is made again with half the batch (down to one structure). Teacher workers share one GPU,
    each with a fixed share of its memory (`workers._init`), and a batch of large, dense cells
    can need more than a share (measured on an H100: a worker of eight stopped at 8.9 GiB in MD)."""
    while True:
        try:
            return _evaluate_or_refuse(evaluator, structures, batch_size, stress), batch_size
        except torch.OutOfMemoryError:
            if min(batch_size, len(structures)) <= 1:
                raise
        # outside the handler: the exception's frames no longer hold the failed batch's tensors;
        # halved from the largest batch actually tried (a call with fewer structures than batch_size)
        batch_size = min(batch_size, len(structures)) // 2
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"teacher: out of device memory; batches of {batch_size} structures from now on",
              file=sys.stderr, flush=True)


def _evaluate_or_refuse(evaluator: Evaluator, structures: list[Atoms], batch_size: int,
                        stress: bool) -> list[dict | None]:
    try:
        return evaluator.evaluate(structures, batch_size=batch_size, stress=stress)
    except StructureError:
        out: list[dict | None] = []
        for a in structures:
            try:
                out.append(evaluator.evaluate([a], stress=stress)[0])
            except StructureError:
                out.append(None)
        return out


def label(structures: Sequence[Atoms], teacher: Evaluator, max_force: float = 50.0,
          batch_size: int = 64) -> list[Atoms]:
    """Copies carrying the teacher's energy, forces and (3D-periodic cells) stress as REF_*; those
    the teacher refuses, or with a force above `max_force` eV/A (unphysical), are dropped."""
    out = []
    for a, r in zip(structures, evaluate_safely(teacher, list(structures), batch_size)):
        if r is None or not np.all(np.isfinite(r["forces"])) or np.abs(r["forces"]).max(initial=0.0) > max_force:
            continue
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
        b.info.update({k: v for k, v in a.info.items() if k in ("source", "kind", "temperature")})
        b.info["REF_energy"] = float(r["energy"])
        b.arrays["REF_forces"] = np.asarray(r["forces"])
        if "stress" in r:
            b.info["REF_stress"] = np.asarray(r["stress"])
        out.append(b)
    return out


def write_extxyz(path: str | Path, frames: Sequence[Atoms]) -> Path:
    import ase.io

    return atomic_write(path, lambda tmp: ase.io.write(tmp, list(frames), format="extxyz"))


def _label_part(teacher: Evaluator, chunk: list[Atoms], path: Path, max_force: float, batch_size: int) -> int:
    """Label one part (in a worker) and write it to `path`; returns the number of structures given."""
    write_extxyz(path, label(chunk, teacher, max_force, batch_size))
    return len(chunk)


def label_in_parts(structures: Sequence[Atoms], teacher: Teacher, folder: str | Path, part_size: int = 2000,
                   max_force: float = 50.0, batch_size: int = 64, progress: bool = False) -> tuple[list[Path], int]:
    """Label `structures` in consecutive parts of `part_size` (jobs spread over the teacher's
    workers), each written atomically as FOLDER/part-NNNN.extxyz; parts already on disk are kept
    (the list must be the same as in the interrupted run, which a fixed seed makes it). Returns the
    non-empty parts and the number of labelled structures."""
    folder = Path(folder)
    paths = [folder / f"part-{p:04d}.extxyz" for p in range(0, (len(structures) + part_size - 1) // part_size)]
    jobs = [(list(structures[k * part_size:(k + 1) * part_size]), path, max_force, batch_size)
            for k, path in enumerate(paths) if not path.exists()]
    teacher.run(_label_part, jobs, "teacher labels" if progress else None)
    parts, count = [], 0
    for path in paths:
        n = _count_frames(path)
        if n:
            parts.append(path)
            count += n
    return parts, count


def _count_frames(path: Path) -> int:
    if path.stat().st_size == 0:
        return 0
    import ase.io

    return sum(1 for _ in ase.io.iread(path, ":", format="extxyz"))
