"""Teacher-driven Langevin dynamics of many structures at once: every step evaluates all running
structures in one batched teacher call, so a GPU integrates a thousand small cells about as fast
as one. The state is written every snapshot interval, so an interrupted run continues from there.

Integrator: BAOAB (Leimkuhler and Matthews) with friction gamma per fs; per-structure temperature.
`md_in_groups` splits many runs into fixed groups that the teacher's worker processes integrate
side by side.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms, units

from ..evaluator import Evaluator
from ..io import atomic_write
from .label import evaluate_fitting
from .workers import Teacher

STATE = "state.npz"
SNAPSHOTS = "snapshots.extxyz"


def _initial_velocities(atoms: Atoms, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Maxwell-Boltzmann velocities at `temperature` K (ASE units), without net momentum."""
    m = atoms.get_masses()[:, None]
    v = rng.normal(size=(len(atoms), 3)) * np.sqrt(units.kB * temperature / m)
    v -= (m * v).sum(0) / m.sum()
    return v


class _State:
    """Positions, velocities and forces of every run (atoms concatenated), which runs still go,
    the step reached and the random generator's state."""

    def __init__(self, starts: Sequence[Atoms], temperatures: Sequence[float], rng: np.random.Generator):
        self.offsets = np.concatenate([[0], np.cumsum([len(a) for a in starts])])
        self.positions = np.concatenate([a.positions for a in starts])
        self.velocities = np.concatenate([_initial_velocities(a, t, rng) for a, t in zip(starts, temperatures)])
        self.forces = np.zeros_like(self.positions)
        self.alive = np.ones(len(starts), dtype=bool)
        self.step = 0
        self.rng = rng

    def save(self, path: Path) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, positions=self.positions, velocities=self.velocities, forces=self.forces,
                         alive=self.alive, step=self.step, rng=json.dumps(self.rng.bit_generator.state))

        atomic_write(path, write)

    def load(self, path: Path) -> None:
        with np.load(path) as z:
            if z["positions"].shape != self.positions.shape:
                raise ValueError(f"{path} belongs to another set of MD runs")
            self.positions, self.velocities, self.forces = z["positions"], z["velocities"], z["forces"]
            self.alive, self.step = z["alive"], int(z["step"])
            self.rng.bit_generator.state = json.loads(str(z["rng"]))

    def rows(self, k: int) -> slice:
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))


def _forces(teacher: Evaluator, frames: list[Atoms], batch_size: int,
            max_force: float) -> tuple[list[np.ndarray | None], int]:
    """The teacher's forces on each frame; None where the teacher refuses it or a force exceeds
    `max_force` (the run has left physical ground and stops there). Also the batch size that fitted
    in device memory (`label.evaluate_fitting`), which the next steps keep."""
    out = []
    results, batch_size = evaluate_fitting(teacher, frames, batch_size, stress=False)
    for r in results:
        f = None if r is None else np.asarray(r["forces"], dtype=float)
        out.append(f if f is not None and np.all(np.isfinite(f)) and np.abs(f).max(initial=0.0) <= max_force
                   else None)
    return out, batch_size


def batched_langevin(starts: Sequence[Atoms], temperatures: Sequence[float], teacher: Evaluator,
                     folder: str | Path, steps: int, every: int, timestep_fs: float = 2.0,
                     friction_per_fs: float = 0.02, seed: int = 0, batch_size: int = 64,
                     max_force: float = 50.0, progress: bool = False) -> list[Atoms]:
    """Langevin MD of every structure of `starts` at its own temperature (K), all advanced together;
    a snapshot of each running structure every `every` steps (the start is not one). A structure
    whose forces the teacher refuses or finds unphysical stops there and keeps its snapshots.
    FOLDER keeps the state and the snapshots so far; the same call continues an interrupted run
    (a finished one is read back). Returns the snapshots (info: kind='md', temperature, md_step)."""
    import ase.io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state_path, snap_path = folder / STATE, folder / SNAPSHOTS
    every = max(1, min(every, steps))
    state = _State(starts, temperatures, np.random.default_rng(seed))
    snaps: list[Atoms] = []
    if state_path.exists():
        state.load(state_path)
        snaps = ase.io.read(snap_path, ":", format="extxyz") if snap_path.exists() and snap_path.stat().st_size else []
        # a kill between the snapshot and the state write: the interval is redone, so drop its snapshots
        snaps = [a for a in snaps if int(a.info["md_step"]) <= state.step]
    counts = np.diff(state.offsets)
    temps = np.asarray(temperatures, dtype=float)
    mass = np.concatenate([a.get_masses() for a in starts])[:, None]       # one row per atom of every run
    sigma = np.sqrt(units.kB * np.repeat(temps, counts)[:, None] / mass)   # thermal velocity of each row
    dt = timestep_fs * units.fs
    c1 = np.exp(-friction_per_fs * timestep_fs)
    c2 = np.sqrt(1.0 - c1 * c1)

    def frame(k: int) -> Atoms:
        a = starts[k]
        return Atoms(a.numbers, state.positions[state.rows(k)], cell=a.cell, pbc=a.pbc)

    fitting = [batch_size]   # shrinks if a batch runs out of device memory, for the rest of the run

    def evaluate(ks: list[int]) -> None:
        forces, fitting[0] = _forces(teacher, [frame(k) for k in ks], fitting[0], max_force)
        for k, f in zip(ks, forces):
            if f is None:
                state.alive[k] = False
            else:
                state.forces[state.rows(k)] = f

    bar = None
    if progress and state.step < steps:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=state.step, desc=f"teacher MD ({len(starts)} runs at once)", unit="step")
    if state.step == 0:
        evaluate(list(range(len(starts))))
    while state.step < steps and state.alive.any():
        live = np.repeat(state.alive, counts)   # the rows of the running structures
        # B A O A: half kick, half drift, thermostat, half drift
        v = state.velocities[live] + 0.5 * dt * state.forces[live] / mass[live]
        x = state.positions[live] + 0.5 * dt * v
        v = c1 * v + c2 * sigma[live] * state.rng.normal(size=v.shape)
        state.positions[live] = x + 0.5 * dt * v
        state.velocities[live] = v
        evaluate([int(k) for k in np.flatnonzero(state.alive)])
        live = np.repeat(state.alive, counts)   # B: the second half kick, where the new forces exist
        state.velocities[live] += 0.5 * dt * state.forces[live] / mass[live]
        state.step += 1
        if state.step % every == 0 or state.step == steps:
            for k in np.flatnonzero(state.alive):
                a = frame(int(k))
                a.wrap()
                a.info.update({kk: v for kk, v in starts[k].info.items() if kk == "source"})
                a.info.update({"kind": "md", "temperature": float(temps[k]), "md_step": state.step})
                snaps.append(a)
            # snapshots first: a kill between the two writes redoes at most this interval
            atomic_write(snap_path, lambda tmp: ase.io.write(tmp, snaps, format="extxyz"))
            state.save(state_path)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return snaps


def _md_group(teacher: Evaluator, starts: list[Atoms], temperatures: list[float], folder: Path, steps: int,
              every: int, timestep_fs: float, friction_per_fs: float, seed: int, batch_size: int,
              max_force: float) -> list[Atoms]:
    return batched_langevin(starts, temperatures, teacher, folder, steps, every, timestep_fs, friction_per_fs, seed,
                            batch_size, max_force)


def md_in_groups(starts: Sequence[Atoms], temperatures: Sequence[float], teacher: Teacher, folder: str | Path,
                 steps: int, every: int, timestep_fs: float = 2.0, friction_per_fs: float = 0.02, seed: int = 0,
                 batch_size: int = 64, max_force: float = 50.0, group_size: int = 128,
                 progress: bool = False) -> list[Atoms]:
    """`batched_langevin` of consecutive groups of `group_size` runs (FOLDER/gNNNN, seeds seed + k),
    the groups spread over the teacher's workers; the snapshots of all groups in run order. The
    groups depend on the data alone, not on the number of workers."""
    folder = Path(folder)
    jobs = [(list(starts[s:s + group_size]), [float(t) for t in temperatures[s:s + group_size]],
             folder / f"g{k:04d}", steps, every, timestep_fs, friction_per_fs, seed + k, batch_size, max_force)
            for k, s in enumerate(range(0, len(starts), group_size))]
    results = teacher.run(_md_group, jobs, f"teacher MD ({teacher.workers} workers, runs)" if progress else None)
    return [a for snaps in results for a in snaps]
