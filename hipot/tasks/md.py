"""Molecular dynamics with ASE's integrators: NVE, NVT (Langevin, Nose-Hoover chain), NPT (MTK,
Berendsen); a trajectory and a CSV log every `interval` steps; restart from its own trajectory."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units

from .common import ModelLike, Result, Tally, as_calculator, atomic_write, check_inputs, progress_bar, resolve_model

ENSEMBLES = {
    "nve": "velocity Verlet",
    "nvt-langevin": "Langevin thermostat",
    "nvt-nhc": "Nose-Hoover chain thermostat",
    "npt-mtk": "isotropic MTK barostat + Nose-Hoover chain (ase IsotropicMTKNPT)",
    "npt-berendsen": "Berendsen thermostat and barostat (ase NPTBerendsen)",
}
LOG_COLUMNS = ["step", "time_ps", "temperature_K", "epot_eV", "ekin_eV", "etot_eV", "pressure_GPa", "volume_A3"]


@dataclass
class MDResult(Result):
    """Summary over every logged step (restarts included). Energies per atom; etot_drift
    (meV/atom/ps, slope of a line fitted to the total energy) and etot_max_deviation (meV/atom) for
    NVE only; pressure (GPa, ideal-gas term included) only for fully periodic cells."""

    ensemble: str
    steps: int
    time_ps: float
    n_atoms: int
    temperature_mean: float
    temperature_std: float
    epot_mean: float
    etot_drift: float | None
    etot_max_deviation: float | None
    pressure_mean: float | None
    trajectory: str
    log: str
    restarted_from: int | None = None
    atoms: Atoms | None = None


def _make_dynamics(atoms: Atoms, ensemble: str, dt: float, temperature: float, pressure: float, friction: float,
                   tdamp: float, pdamp: float, seed: int):
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, dt)
    if ensemble == "nvt-langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, dt, temperature_K=temperature, friction=friction / units.fs, fixcm=False,
                        rng=np.random.default_rng(seed + 1))
    if ensemble == "nvt-nhc":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, dt, temperature_K=temperature, tdamp=tdamp * units.fs)
    if not np.all(atoms.pbc):
        raise ValueError(f"{ensemble} needs a structure periodic in all three directions")
    if ensemble == "npt-mtk":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT

        return IsotropicMTKNPT(atoms, dt, temperature_K=temperature, pressure_au=pressure * units.GPa,
                               tdamp=tdamp * units.fs, pdamp=pdamp * units.fs)
    if ensemble == "npt-berendsen":
        from ase.md.nptberendsen import NPTBerendsen

        return NPTBerendsen(atoms, dt, temperature_K=temperature, pressure_au=pressure * units.GPa,
                            taut=tdamp * units.fs, taup=pdamp * units.fs, compressibility_au=4.57e-5 / units.bar)
    raise ValueError(f"ensemble must be one of {', '.join(ENSEMBLES)}, not {ensemble!r}")


def _read_log(path: Path) -> list[dict[str, float]]:
    rows = []
    if path.is_file():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                try:
                    rows.append({k: (float(v) if v not in ("", None) else float("nan")) for k, v in row.items()})
                except (TypeError, ValueError):
                    break  # a torn last line
    return rows


def _last_frame(path: Path) -> Atoms:
    """The last complete frame of an ASE trajectory (a frame torn by a kill is skipped)."""
    from ase.io import Trajectory

    with Trajectory(str(path)) as traj:
        for k in range(len(traj) - 1, -1, -1):
            try:
                return traj[k]
            except Exception:  # torn frame
                continue
    raise ValueError(f"{path}: no complete frame to restart from")


def md(atoms: Atoms, model: ModelLike = "hienet-v3", *, ensemble: str = "nve", temperature: float = 300.0,
       timestep: float = 1.0, steps: int = 1000, seed: int = 0, pressure: float = 0.0, friction: float = 0.01,
       tdamp: float = 100.0, pdamp: float = 1000.0, interval: int = 10, trajectory: str = "md.traj",
       log: str | None = None, restart: bool = False, device: str = "auto", dtype: str = "float32",
       progress: bool = False, tally: Tally | None = None) -> MDResult:
    """Run `steps` MD steps in total (timestep in fs, temperature in K, pressure in GPa, friction in
    1/fs, tdamp/pdamp in fs). Velocities start Maxwell-Boltzmann at `temperature` (seed), without
    net momentum. Every `interval` steps a frame goes to `trajectory` (ASE .traj) and a row to `log`
    (CSV, default trajectory with .log), and so does the last step. With restart and an existing
    trajectory, the run continues from its last frame (positions, momenta, cell, step) up to `steps`
    in total; thermostat and barostat internal variables start afresh. `tally` follows the steps done (restarts included)."""
    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {', '.join(ENSEMBLES)}, not {ensemble!r}")
    numbers = {"timestep": timestep, "temperature": temperature, "pressure": pressure, "friction": friction,
               "tdamp": tdamp, "pdamp": pdamp}
    if not all(np.isfinite(v) for v in numbers.values()):
        raise ValueError(f"md needs finite numbers, got {numbers}")
    if timestep <= 0 or steps < 0 or interval < 1 or temperature < 0 or friction < 0 or tdamp <= 0 or pdamp <= 0:
        raise ValueError("md needs timestep > 0, steps >= 0, interval >= 1, temperature >= 0 K, friction >= 0, "
                         "tdamp > 0 and pdamp > 0")
    traj_path = Path(trajectory)
    log_path = Path(log) if log else traj_path.with_suffix(".log")
    m = resolve_model(model, device, dtype)
    check_inputs([atoms], m)
    start, restarted_from = 0, None
    if restart and traj_path.is_file() and traj_path.stat().st_size > 0:
        atoms = _last_frame(traj_path)
        start = int(atoms.info.get("md_step", 0))
        restarted_from = start
        # Keep the log rows up to the restart frame (later ones are about to be redone).
        rows = [r for r in _read_log(log_path) if r["step"] <= start]
        atomic_write(log_path, lambda tmp: _write_rows(tmp, rows))
    else:
        atoms = atoms.copy()
        from ase.md import velocitydistribution as vd

        # thermalize_momenta (ase >= 3.29) replaces the deprecated MaxwellBoltzmannDistribution.
        thermalize = getattr(vd, "thermalize_momenta", vd.MaxwellBoltzmannDistribution)
        thermalize(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
        if len(atoms) > 1:  # a single atom has no thermal motion left once its momentum is removed
            vd.Stationary(atoms)
            if not np.any(atoms.pbc):
                vd.ZeroRotation(atoms)
        traj_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(log_path, lambda tmp: _write_rows(tmp, []))
    atoms.calc = as_calculator(m)
    dyn = _make_dynamics(atoms, ensemble, timestep * units.fs, temperature, pressure, friction, tdamp, pdamp, seed)
    dyn.nsteps = start  # observers keep their phase, and ASE skips its step-0 call on a restart

    from ase.io import Trajectory

    traj = Trajectory(str(traj_path), "a" if restarted_from is not None else "w")
    periodic = bool(np.all(atoms.pbc))
    log_fh = open(log_path, "a", newline="")
    writer = csv.writer(log_fh)
    bar = progress_bar(max(steps - start, 0), "md", progress)

    def observe() -> None:
        step = dyn.nsteps
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        if not (np.isfinite(epot) and np.isfinite(ekin) and np.isfinite(atoms.positions).all()):
            # a row or frame of NaN would be what a later --restart continues from
            raise ValueError(f"the simulation became unstable at step {step} (non-finite energy or positions; "
                             "timestep too long or structure far from equilibrium?); the log and trajectory end "
                             "at the last finite step")
        pres = vol = ""
        if periodic:
            pres = f"{-np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3 / units.GPa:.6f}"
            vol = f"{atoms.get_volume():.6f}"
        writer.writerow([step, f"{step * timestep / 1000:.6f}", f"{atoms.get_temperature():.4f}", f"{epot:.8f}",
                         f"{ekin:.8f}", f"{epot + ekin:.8f}", pres, vol])
        log_fh.flush()
        atoms.info["md_step"] = step
        traj.write(atoms)

    if tally is not None:
        tally.total, tally.done, tally.unit = steps, start, "step"

    def tick() -> None:
        if dyn.nsteps > start:  # ASE also calls observers once before the first step
            bar.update(1)
            if tally is not None:
                tally.done = dyn.nsteps

    try:
        dyn.attach(observe, interval=interval)
        dyn.attach(tick, interval=1)
        if steps > start:
            dyn.run(steps - start)
            if dyn.nsteps % interval:  # the last step is logged (and kept for a restart) even off the interval
                observe()
        elif start == 0:
            dyn.run(0)
    finally:
        bar.close()
        traj.close()
        log_fh.close()
    return summarize(log_path, ensemble, len(atoms), str(traj_path), restarted_from, atoms)


def _write_rows(path: Path, rows: list[dict[str, float]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(LOG_COLUMNS)
        for r in rows:
            w.writerow(["" if np.isnan(r[c]) else (int(r[c]) if c == "step" else r[c]) for c in LOG_COLUMNS])


def summarize(log_path: Path, ensemble: str, n_atoms: int, trajectory: str, restarted_from: int | None,
              atoms: Atoms | None = None) -> MDResult:
    """Statistics of a run from its log."""
    rows = _read_log(Path(log_path))
    if not rows:
        raise ValueError(f"{log_path}: no logged steps")
    col = {c: np.array([r[c] for r in rows]) for c in LOG_COLUMNS}
    drift = maxdev = None
    if ensemble == "nve" and len(rows) > 1 and col["time_ps"][-1] > col["time_ps"][0]:
        e = col["etot_eV"] / n_atoms * 1000.0  # meV/atom
        drift = float(np.polyfit(col["time_ps"], e, 1)[0])
        maxdev = float(np.abs(e - e[0]).max())
    p = col["pressure_GPa"]
    return MDResult(ensemble, int(col["step"][-1]), float(col["time_ps"][-1]), n_atoms,
                    float(col["temperature_K"].mean()), float(col["temperature_K"].std()),
                    float(col["epot_eV"].mean() / n_atoms), drift, maxdev,
                    None if np.all(np.isnan(p)) else float(np.nanmean(p)), trajectory, str(log_path),
                    restarted_from, atoms)
