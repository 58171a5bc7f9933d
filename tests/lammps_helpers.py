"""Running `pair_style hipot` through the `lmp` program on k MPI ranks and reading its results.

Structures go in as LAMMPS data files written here, in LAMMPS's own cell convention (a along x,
b in the xy plane: `lammps_cell`), so positions, forces and stresses compare with ASE's without
a rotation. Results come back at full precision: per-atom values from a sorted dump, global
ones from `print` with %.17g.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers
from ase.geometry import cellpar_to_cell

BIN = Path(sys.executable).parent
NKTV2P = 1.6021765e6  # LAMMPS metal units: bar per eV/A^3


def lammps_cell(atoms: Atoms) -> Atoms:
    """The same crystal with the cell LAMMPS can hold (lower-triangular rows)."""
    out = atoms.copy()
    out.set_cell(cellpar_to_cell(atoms.cell.cellpar()), scale_atoms=True)
    return out


def write_data(atoms: Atoms, path: Path, elements: list[str], pad: float = 10.0) -> None:
    """A LAMMPS data file (atom_style atomic); a non-periodic structure gets a box `pad` larger."""
    pos = atoms.positions
    if atoms.pbc.all():
        c = atoms.cell.array
        assert abs(c[0, 1]) + abs(c[0, 2]) + abs(c[1, 2]) < 1e-12, "use lammps_cell() first"
        lo = np.zeros(3)
        hi = np.diag(c)
        tilt = (c[1, 0], c[2, 0], c[2, 1])
    else:
        lo, hi = pos.min(0) - pad, pos.max(0) + pad
        tilt = None
    types = {el: k + 1 for k, el in enumerate(elements)}
    lines = ["hipot test structure", "", f"{len(atoms)} atoms", f"{len(elements)} atom types", ""]
    for d, ax in enumerate("xyz"):
        lines.append(f"{lo[d]:.17g} {hi[d]:.17g} {ax}lo {ax}hi")
    if tilt is not None:
        lines.append(f"{tilt[0]:.17g} {tilt[1]:.17g} {tilt[2]:.17g} xy xz yz")
    lines += ["", "Masses", ""]
    lines += [f"{types[el]} {atomic_masses[atomic_numbers[el]]:.6f}" for el in elements]
    lines += ["", "Atoms # atomic", ""]
    for i, (sym, p) in enumerate(zip(atoms.get_chemical_symbols(), pos), start=1):
        lines.append(f"{i} {types[sym]} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}")
    Path(path).write_text("\n".join(lines) + "\n")


def input_script(model: str, elements: list[str], periodic: bool, pair_args: str = "", run: str = "run 0",
                 extra: str = "") -> str:
    """Reads data.lmp, evaluates once and writes results.dump and the RESULT line."""
    boundary = "p p p" if periodic else "f f f"
    return f"""units metal
atom_style atomic
atom_modify map array
boundary {boundary}
read_data data.lmp
pair_style hipot {model} {pair_args}
pair_coeff * * {' '.join(elements)}
compute pe all pe/atom
compute sa all stress/atom NULL virial
compute vir all pressure NULL virial
thermo_style custom step pe c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]
thermo_modify format float %.17g
{extra}
dump d all custom 1 results.dump id fx fy fz c_pe c_sa[1] c_sa[2] c_sa[3] c_sa[4] c_sa[5] c_sa[6]
dump_modify d sort id format float %.17g
{run}
print "RESULT $(pe:%.17g) $(c_vir[1]:%.17g) $(c_vir[2]:%.17g) $(c_vir[3]:%.17g) $(c_vir[4]:%.17g) $(c_vir[5]:%.17g) $(c_vir[6]:%.17g) $(vol:%.17g)"
"""


@dataclass
class LammpsResult:
    energy: float
    forces: np.ndarray  # (N, 3), in atom-id order
    energies: np.ndarray  # (N,) per-atom energies
    stress: np.ndarray  # (6,) ASE Voigt order and sign, eV/A^3, from the global virial
    atom_virial_sum: np.ndarray  # (6,) minus the sum of the per-atom virials over V, same convention
    log: str


def run_lmp(workdir: Path, script: str, nprocs: int = 1, timeout: float = 600.0, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    """`mpiexec -n NPROCS lmp -in in.lmp` in `workdir` (the `lmp` of this environment)."""
    workdir = Path(workdir)
    (workdir / "in.lmp").write_text(script)
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")
    e.update(env or {})
    cmd = [str(BIN / "lmp"), "-in", "in.lmp", "-log", "log.lammps"]
    if nprocs > 1:
        cmd = [str(BIN / "mpiexec"), "-n", str(nprocs)] + cmd
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=e)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def read_results(workdir: Path, res: subprocess.CompletedProcess) -> LammpsResult:
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))
    vals = [float(v) for v in line.split()[1:]]
    energy, pv, volume = vals[0], np.array(vals[1:7]), vals[7]
    # LAMMPS pressure (bar): xx yy zz xy xz yz = minus ASE's stress
    stress = -pv[[0, 1, 2, 5, 4, 3]] / NKTV2P
    rows = []
    with open(Path(workdir) / "results.dump") as f:
        lines = f.read().splitlines()
    start = lines.index(next(ln for ln in lines if ln.startswith("ITEM: ATOMS"))) + 1
    for ln in lines[start:]:
        if ln.startswith("ITEM:"):
            break
        rows.append([float(v) for v in ln.split()])
    data = np.array(rows)
    sa = data[:, 5:11].sum(0)  # per-atom stress*volume (bar A^3): minus the per-atom virials
    atom_stress = sa[[0, 1, 2, 5, 4, 3]] / NKTV2P / volume
    return LammpsResult(energy=energy, forces=data[:, 1:4], energies=data[:, 4], stress=stress,
                        atom_virial_sum=atom_stress, log=res.stdout)


def lammps_run(workdir: Path, atoms: Atoms, model: str, elements: list[str], nprocs: int = 1,
               pair_args: str = "", **kw) -> LammpsResult:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_data(atoms, workdir / "data.lmp", elements)
    script = input_script(model, elements, bool(atoms.pbc.all()), pair_args)
    return read_results(workdir, run_lmp(workdir, script, nprocs, **kw))
