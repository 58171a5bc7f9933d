"""Simulation tasks through the Python API: a tiny random model (batched path) and ASE's EMT
(the any-ASE-calculator path, with known answers)."""
from __future__ import annotations

from collections import Counter

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.units import GPa

from conftest import make_tiny, rattled
from hipot import HIPotCalculator
from hipot.graph import StructureError
from hipot.tasks.common import example
from hipot.tasks.md import _read_log, md
from hipot.tasks.relax import relax, unconverged_message

SPECIES = [1, 6, 8, 14, 29]


@pytest.fixture(scope="module")
def tiny():
    return make_tiny(species=SPECIES)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_batched_relax_equals_sequential_ase(tiny, optimizer):
    """Lockstep batches (2 at a time, swapped in as others finish) follow exactly the path of ASE's
    optimizer run on each structure alone with HIPotCalculator."""
    structures = [rattled(bulk("Si", "diamond", a=5.5), 0.1, seed=s) for s in range(2)]
    structures += [rattled(bulk("Cu", "fcc", a=3.7) * (2, 1, 1), 0.1, seed=4), molecule("CH4")]
    steps, fmax = 12, 1e-4
    res = relax(structures, tiny, device="cpu", dtype="float64", optimizer=optimizer, fmax=fmax, steps=steps,
                batch_size=2)
    cls = {"FIRE": FIRE, "BFGS": BFGS}[optimizer]
    for s, r in zip(structures, res):
        a = s.copy()
        a.calc = HIPotCalculator(tiny, device="cpu", dtype="float64")
        opt = cls(FrechetCellFilter(a) if a.pbc.all() else a, logfile=None)
        converged = opt.run(fmax=fmax, steps=steps)
        assert (r.steps, r.converged) == (opt.nsteps, converged)
        assert r.steps > 3  # the comparison covers real optimizer steps
        np.testing.assert_allclose(r.atoms.positions, a.positions, atol=1e-9)
        np.testing.assert_allclose(r.atoms.cell.array, a.cell.array, atol=1e-9)
        assert abs(r.energy - a.get_potential_energy()) < 1e-9
        np.testing.assert_allclose(r.atoms.get_forces(), a.get_forces(), atol=1e-9)
    assert res[-1].atoms.cell.volume == 0 and "stress" not in res[-1].atoms.calc.results  # molecule: positions only


def test_cell_filter_forces_are_computed_once_per_step(tiny, monkeypatch):
    """The convergence test and the optimiser's step share one evaluation of the cell filter's
    forces (nine matrix-exponential derivatives each); without the cache it runs about twice per step."""
    calls = []
    raw = FrechetCellFilter.get_forces
    monkeypatch.setattr(FrechetCellFilter, "get_forces", lambda self, *a, **k: calls.append(1) or raw(self, *a, **k))
    steps = 6
    (r,) = relax([rattled(bulk("Si", "diamond", a=5.5), 0.1, seed=0)], tiny, device="cpu", dtype="float64",
                 fmax=1e-6, steps=steps)
    assert r.steps == steps
    assert len(calls) == steps + 1   # one per evaluation: the start and after each step


def test_relax_converges_and_keeps_space_group():
    from hipot.tasks.screen import candidates, spacegroup

    l12 = next(a for a in candidates(["Cu", "Au"], "fcc", 4) if a.info.get("prototype") == "L1_2")
    start = l12.copy()
    start.set_cell(start.cell.array * 1.03, scale_atoms=True)
    (r,) = relax([start], EMT(), fmax=0.01, steps=300, symmetry=True)
    assert r.converged and r.fmax < 0.01
    assert spacegroup(r.atoms, 1e-4)[0] == spacegroup(start, 1e-5)[0] == 221
    assert r.atoms.get_volume() < start.get_volume()  # the cell relaxed too
    assert np.abs(r.atoms.get_forces()).max() < 0.01


def test_relax_reports_non_convergence(tiny):
    res = relax([rattled(bulk("Cu", "fcc", a=3.61) * (2, 2, 1), 0.2, seed=1)], EMT(), steps=2, fmax=1e-4)
    assert not res[0].converged and res[0].steps == 2
    msg = unconverged_message(res, 1e-4, 2)
    assert "1 of 1 structure(s) did not converge" in msg and "within 2 steps" in msg
    with pytest.raises(StructureError, match="not supported"):
        relax([bulk("Au")], tiny, device="cpu", dtype="float64")
    with pytest.raises(ValueError, match="optimizer"):
        relax([bulk("Cu")], EMT(), optimizer="SD")


def test_birch_murnaghan_fit_recovers_parameters():
    from hipot.tasks.eos import birch_murnaghan, fit_birch_murnaghan

    e0, v0, b0, bp = -3.7, 16.5, 95.0 * GPa, 4.6
    v = v0 * np.linspace(0.94, 1.06, 11)
    got = fit_birch_murnaghan(v, birch_murnaghan(v, e0, v0, b0, bp))
    np.testing.assert_allclose(got[:4], [e0, v0, b0, bp], rtol=1e-8)
    assert got[4] < 1e-10


def test_eos_emt_copper(tmp_path):
    from ase.eos import EquationOfState

    from hipot.tasks.eos import eos

    r = eos(bulk("Cu", "fcc", a=3.5), EMT())  # relaxed first: the input is 3 % off
    ref_v0, _, ref_b = EquationOfState(r.volumes, r.energies, eos="birchmurnaghan").fit()
    assert abs(r.v0 - ref_v0) < 1e-6 and abs(r.b0 - ref_b / GPa) < 1e-3
    assert 130 < r.b0 < 140 and 3 < r.b0_prime < 6  # EMT copper: ~134 GPa
    assert min(r.volumes) < r.v0 < max(r.volumes) and len(r.volumes) == 11
    assert r.plot(str(tmp_path / "eos.png")) and (tmp_path / "eos.png").stat().st_size > 10_000
    with pytest.raises(StructureError, match="periodic in all three"):
        eos(example("H2O"), EMT())


def test_elastic_emt_copper_is_cubic():
    from hipot.tasks.elastic import elastic, vrh

    r = elastic(bulk("Cu", "fcc", a=3.6, cubic=True), EMT())
    c = r.c
    np.testing.assert_allclose(c, c.T, atol=1e-9)
    assert r.asymmetry < 0.5
    c11, c12, c44 = c[0, 0], c[0, 1], c[3, 3]
    np.testing.assert_allclose(np.diag(c)[:3], c11, atol=0.05)
    np.testing.assert_allclose([c[0, 2], c[1, 2]], c12, atol=0.05)
    np.testing.assert_allclose(np.diag(c)[3:], c44, atol=0.05)
    off = c.copy()
    off[:3, :3] = 0
    off[[3, 4, 5], [3, 4, 5]] = 0
    assert np.abs(off).max() < 0.05
    assert 165 < c11 < 180 and 108 < c12 < 122 and 85 < c44 < 95  # EMT Cu: ~173, ~116, ~90 GPa
    assert abs(r.k_vrh - (c11 + 2 * c12) / 3) < 1e-6  # cubic: Voigt = Reuss bulk modulus
    assert r.g_reuss <= r.g_vrh <= r.g_voigt and r.stable
    m = vrh(c)
    assert abs(m["g_vrh"] - r.g_vrh) < 1e-9


def test_phonons_emt_copper(tmp_path):
    from hipot.tasks.phonons import phonons

    r = phonons(bulk("Cu", "fcc", a=3.6), EMT(), supercell_length=7.0)
    assert not r.has_imaginary and r.min_frequency > -0.01
    assert r.supercell_matrix == [4, 4, 4]
    assert np.abs(r.gamma_frequencies).max() < 0.01  # acoustic sum rule
    assert 7 < r.max_frequency < 9  # EMT copper tops out near 8 THz
    # Degeneracies symmetry demands: two transverse modes at X and L, one longitudinal above them.
    prim = r._phonon.primitive.cell
    from ase import Atoms

    special = Atoms(cell=prim, pbc=True).cell.bandpath(npoints=0).special_points
    r._phonon.run_qpoints([special["X"], special["L"]])
    for f in np.asarray(r._phonon.qpoints.frequencies):
        f = np.sort(f)
        assert abs(f[0] - f[1]) < 1e-3 and f[2] - f[1] > 1.0
    r.plot(str(tmp_path / "ph.png"))
    r.write_thermal_csv(str(tmp_path / "t.csv"))
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0].startswith("temperature_K,free_energy") and len(rows) == 102
    cv_1000 = float(rows[-1].split(",")[3])
    assert 24.0 < cv_1000 < 3 * 8.3145  # approaches Dulong-Petit, 3R per mole of atoms


def test_md_nve_conserves_energy_and_restarts(tmp_path):
    from ase.io import read

    from hipot.tasks.md import md

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    full = md(atoms, EMT(), steps=100, timestep=2.0, temperature=500, interval=10, trajectory=str(tmp_path / "a.traj"))
    assert full.steps == 100 and abs(full.etot_drift) < 1.0 and full.etot_max_deviation < 1.0  # meV/atom(/ps)
    assert 100 < full.temperature_mean < 500 and full.pressure_mean is not None
    # Interrupted at 50 steps, then restarted with the same command: same end point as one run.
    md(atoms, EMT(), steps=50, timestep=2.0, temperature=500, interval=10, trajectory=str(tmp_path / "b.traj"))
    again = md(atoms, EMT(), steps=100, timestep=2.0, temperature=500, interval=10,
               trajectory=str(tmp_path / "b.traj"), restart=True)
    assert again.restarted_from == 50 and again.steps == 100
    a, b = read(tmp_path / "a.traj", ":"), read(tmp_path / "b.traj", ":")
    assert len(a) == len(b) == 11
    np.testing.assert_allclose(b[-1].positions, a[-1].positions, atol=1e-10)
    np.testing.assert_allclose(b[-1].get_momenta(), a[-1].get_momenta(), atol=1e-10)
    assert (tmp_path / "b.log").read_text().count("\n") == 12  # header + 11 rows, none doubled
    # A run whose length is not a multiple of the interval still logs and keeps its last step.
    odd = md(atoms, EMT(), steps=15, timestep=2.0, temperature=500, interval=10, trajectory=str(tmp_path / "c.traj"))
    assert odd.steps == 15 and read(tmp_path / "c.traj", -1).info["md_step"] == 15
    assert md(atoms, EMT(), steps=25, timestep=2.0, temperature=500, interval=10, trajectory=str(tmp_path / "c.traj"),
              restart=True).restarted_from == 15


def test_cell_relaxation_has_a_stress_criterion(tmp_path):
    """The filter's cell gradient is the virial per atom, so at fmax 0.05 a cell stopped at
    -0.6 GPa here (HIENet-V3: Si -0.3 GPa); by default the relaxation goes on until every stress
    component is below smax = 0.01 GPa, and reports it (issue 26, item 7)."""
    import json

    from hipot.cli import main

    strained = bulk("Cu", "fcc", a=3.75) * (2, 1, 1)
    loose = relax([strained], EMT(), smax=None)[0]
    assert loose.converged and abs(loose.atoms.get_stress()).max() / GPa > 0.1
    (r,) = relax([strained], EMT())
    stress = abs(r.atoms.get_stress()).max() / GPa
    assert r.converged and r.smax == pytest.approx(stress) and stress < 0.01 and r.fmax < 0.05
    assert relax([molecule("H2O")], EMT())[0].smax is None  # no cell to relax
    ase.io.write(tmp_path / "cu.extxyz", strained)
    out, summary = tmp_path / "out.extxyz", tmp_path / "r.json"
    assert main(["relax", str(tmp_path / "cu.extxyz"), "-o", str(out), "--model", "ase:emt", "--smax", "0.001",
                 "--json", str(summary), "-q"]) == 0
    (s,) = json.loads(summary.read_text())["structures"]
    assert s["converged"] and s["smax"] < 0.001 and ase.io.read(out).info["relax_smax"] == s["smax"]


def test_stress_criterion_reads_only_the_components_the_cell_may_relax():
    """With the shear held (the kappa protocol's cell mask) the shear stress cannot relax, so the
    stress criterion must not wait for it: the relaxation converges on the free components."""
    sheared = bulk("Cu", "fcc", a=3.7, cubic=True)
    sheared.set_cell(sheared.cell.array @ (np.eye(3) + [[0, 0.03, 0], [0.03, 0, 0], [0, 0, 0]]), scale_atoms=True)
    (r,) = relax([sheared], EMT(), steps=300, cell_mask=[1, 1, 1, 0, 0, 0])
    stress = r.atoms.get_stress() / GPa
    assert r.converged and abs(stress[:3]).max() < 0.01
    assert abs(stress[5]) > 0.05   # the held shear stays: the control that the mask was in force


def test_md_never_logs_a_non_finite_step(tmp_path):
    """A negative temperature is refused before anything is written, and a run whose energy turns
    NaN stops with an error, its log and trajectory ending at the last finite step: a later
    --restart must not continue from NaN (issue 26, item 3)."""
    from ase.calculators.emt import EMT

    class Breaks(EMT):
        calls = 0

        def calculate(self, *a, **kw):
            super().calculate(*a, **kw)
            Breaks.calls += 1
            if Breaks.calls > 6:
                self.results["energy"] = float("nan")

    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    traj = tmp_path / "md.traj"
    with pytest.raises(ValueError, match="temperature >= 0"):
        md(atoms, EMT(), temperature=-100, steps=5, trajectory=str(traj))
    assert not traj.exists() and not traj.with_suffix(".log").exists()
    with pytest.raises(ValueError, match="unstable at step"):
        md(atoms, Breaks(), temperature=300, steps=20, interval=1, trajectory=str(traj))
    rows = _read_log(traj.with_suffix(".log"))
    assert rows and all(np.isfinite(list(r.values())).all() for r in rows)
    frames = ase.io.read(traj, ":")
    assert len(frames) == len(rows) and all(np.isfinite(f.get_potential_energy()) for f in frames)


@pytest.mark.parametrize("ensemble", ["nvt-langevin", "nvt-nhc", "npt-mtk", "npt-berendsen"])
def test_md_other_ensembles_run(tmp_path, ensemble):
    from hipot.tasks.md import md

    r = md(bulk("Cu", "fcc", a=3.61, cubic=True), EMT(), ensemble=ensemble, steps=20, interval=5,
           trajectory=str(tmp_path / "m.traj"))
    assert r.steps == 20 and r.etot_drift is None and np.isfinite(r.temperature_mean)


def test_md_with_hipot_model_on_molecule(tiny, tmp_path):
    from hipot.tasks.md import md

    r = md(molecule("CH4"), tiny, steps=10, interval=5, timestep=0.25, device="cpu", dtype="float64",
           trajectory=str(tmp_path / "m.traj"))
    assert r.pressure_mean is None and r.etot_max_deviation < 5.0


def test_enumeration_counts():
    """Symmetry-distinct binary orderings per cell size: fcc and bcc 2, 2, 6, 19 (Hart & Forcade 2008),
    hcp 3 for 2 sites and 10 for 4; no two equivalent (checked against pymatgen's StructureMatcher)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    from hipot.tasks.enumerate import build, enumerate_orderings, hnf_of, hnfs

    assert [len(hnfs(n)) for n in (1, 2, 3, 4)] == [1, 7, 13, 35]
    for h in hnfs(4):
        assert (hnf_of(h) == h).all() and (hnf_of(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]) @ h) == h).all()
    for lattice, expected in (("fcc", {1: 2, 2: 2, 3: 6, 4: 19}), ("bcc", {1: 2, 2: 2, 3: 6, 4: 19}),
                              ("hcp", {2: 3, 4: 10})):
        found = enumerate_orderings(["Cu", "Au"], lattice, 4)
        assert dict(Counter(o["n_atoms"] for o in found)) == expected, lattice
    found = enumerate_orderings(["Cu", "Au"], "fcc", 4)
    structures = [AseAtomsAdaptor.get_structure(build(o, ["Cu", "Au"], "fcc", 3.8)) for o in found]
    groups = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=True).group_structures(structures)
    assert len(groups) == len(structures) == 29


@pytest.mark.slow
def test_screen_emt_copper_gold(tmp_path):
    from hipot.tasks.screen import screen

    r = screen(["Cu", "Au"], "fcc", 2, EMT(), fmax=0.01)
    assert r.n_candidates == 4 and r.n_converged == 4
    protos = {row["prototype"]: row for row in r.rows}
    assert set(protos) == {"A1", "L1_0", "L1_1"}
    assert protos["L1_0"]["on_hull"] and protos["L1_0"]["formation_energy_eV_per_atom"] < 0
    assert not protos["L1_1"]["on_hull"] and protos["L1_1"]["e_above_hull_eV_per_atom"] > 0
    assert sorted(r.hull) == ["fcc-1-1", "fcc-1-2", "fcc-2-2"]
    for row in r.rows:
        if row["prototype"] == "A1":
            assert abs(row["formation_energy_eV_per_atom"]) < 1e-12
    assert [row["rank"] for row in r.rows] == [1, 2, 3, 4]
    r.write_csv(str(tmp_path / "s.csv"))
    r.plot(str(tmp_path / "h.png"))
    assert (tmp_path / "s.csv").read_text().count("\n") == 5
    assert set(r.to_dict()) >= {"elements", "lattice", "hull", "rows", "references"}


def test_screen_candidates_round_trip_through_extxyz(tmp_path):
    """Candidates written by `hipot screen` read back with the same ids and prototypes (--candidates)."""
    import ase.io

    from hipot.tasks.screen import candidates

    cands = candidates(["Cu", "Au"], "fcc", 3)
    ase.io.write(tmp_path / "c.extxyz", cands)
    back = ase.io.read(tmp_path / "c.extxyz", ":")
    assert [a.info["id"] for a in back] == [a.info["id"] for a in cands]
    assert [a.info.get("prototype", "") for a in back] == [a.info.get("prototype", "") for a in cands]
    assert Counter(a.info.get("prototype", "") for a in cands) == Counter({"": 6, "A1": 2, "L1_0": 1, "L1_1": 1})
