"""The physics contract (hipot.testing) on every in-process engine of a tiny random model: the ASE
calculator in float64 and float32, the batched Evaluator on a mixed batch (crystal, slab,
molecule together), DFT-D3 on and off; and the negative controls: engines broken on purpose
(forces with the wrong sign, a stress without its volume division, ...) are caught.
torch-sim: tests/test_torchsim.py (Python >= 3.12); LAMMPS: tests/test_lammps_contract.py (the
compiled plugin) and tests/test_lammps_driver_contract.py (the driver in process); HIENet-V3:
tests/test_contract_v3.py."""
from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from conftest import make_tiny, rattled
from hipot import Evaluator, HIPotCalculator
from hipot.check import D3, contract_structures, declared_for
from hipot.engines import calculator_engine, evaluator_engine
from hipot.testing import (Declared, Tolerances, assert_contract, check_cutoff_scan, check_forces_fd,
                           check_per_atom_sums, check_reflection, run_contract)

# The tiny random model is SO(3)-only like HIENet-V3, with small mirror deltas (~1e-8 eV/atom,
# 3e-7 eV/A: its weights are small), and its invariant layer is not smooth: it declares both.
TINY = Declared(reflection_energy=1e-6, reflection_forces=1e-5, reflection_stress=1e-6, cutoff_jump=None,
                why_reflection="tiny model: SO(3)-only", why_cutoff="tiny model: invariant layer not smooth")


@pytest.fixture(scope="module")
def tiny():
    return make_tiny()


@pytest.fixture(scope="module")
def structures(tiny):
    """SiO crystal (triclinic, rattled), the same as a slab, a 4-atom molecule; rattled triclinic NaCl."""
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    nacl.set_cell(nacl.cell.array + np.array([[0.1, 0.0, 0.05], [0.0, 0.2, 0.0], [0.1, 0.0, -0.1]]), scale_atoms=True)
    nacl = rattled(nacl, 0.1, seed=1)
    nacl.info["name"] = "NaCl triclinic"
    return contract_structures(tiny.species) + [nacl]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_calculator(tiny, structures, dtype):
    report = assert_contract(calculator_engine(HIPotCalculator(tiny, device="cpu", dtype=dtype)), structures,
                             Tolerances.for_dtype(dtype), TINY, cutoff=tiny.cutoff)
    assert {c.name for c in report.checks} >= {"forces: finite diff.", "stress: finite diff.", "rotation",
                                               "reflection", "basis (left-handed)", "translation", "permutation",
                                               "supercell", "per-atom sums", "batch = single", "cutoff scan"}
    if dtype == "float64":  # the finite differences converge as h^2 (error ratio 4 between h and h/2)
        ratios = [c.measured["ratio"] for c in report.checks if "finite" in c.name]
        assert all(3.5 < r < 4.5 for r in ratios), ratios
    _per_atom_checked(report, structures, {"ΣE_i-E"}, {"Σσ_i-σ"})  # get_stresses(); ASE has no per-atom virials


def _per_atom_checked(report, structures, every: set[str], periodic: set[str]) -> None:
    """The per-atom sums measured what the engine gives: `every` on each structure, `periodic` on
    those periodic in 3D (a missing key would pass the check silently)."""
    sums = {c.structure: c for c in report.checks if c.name == "per-atom sums"}
    assert len(sums) == len(structures)
    for atoms in structures:
        c = sums[atoms.info["name"]]
        assert set(c.measured) >= every | (periodic if atoms.pbc.all() else set()), c


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evaluator_mixed_batches(tiny, structures, dtype):
    """Crystals, a slab and a molecule in the same batches; batch = single compares each with itself alone."""
    report = assert_contract(evaluator_engine(Evaluator(tiny, device="cpu", dtype=dtype)), structures,
                             Tolerances.for_dtype(dtype), TINY, cutoff=tiny.cutoff)
    _per_atom_checked(report, structures, {"ΣE_i-E", "ΣW_i-W"}, {"Σσ_i-σ"})


def test_dispersion(tiny, structures):
    """D3 on: the same contract, with D3's declared finite-difference disagreement (its hard
    cutoffs; docs/tasks.md#dispersion); the per-atom energies include D3's."""
    pytest.importorskip("dftd3")
    engine = evaluator_engine(Evaluator(tiny, device="cpu", dtype="float64", dispersion="d3bj"))
    report = assert_contract(engine, structures, Tolerances.for_dtype("float64"), TINY.plus(D3), cutoff=tiny.cutoff)
    assert max(report.measured("stress: finite diff.", "err(h/2)")) < 1e-4
    # what D3 lacks (simple-dftd3 has no per-atom virials) is not given, and the report says so
    _per_atom_checked(report, structures, {"ΣE_i-E"}, set())
    periodic = {a.info["name"]: a.pbc.all() for a in structures}
    assert all(c.note == ("not given: stresses, virials" if periodic[c.structure] else "not given: virials")
               for c in report.checks if c.name == "per-atom sums")
    assert not run_contract(engine, structures[-1:], Tolerances.for_dtype("float64"), TINY).passed  # undeclared


def test_declarations_of_a_model_file(tiny, tmp_path):
    from hipot.checkpoint import save_model

    save_model(tiny, tmp_path / "tiny")
    d = declared_for(str(tmp_path / "tiny"))
    assert d.reflection_energy is None and d.cutoff_jump is None and "SO(3)-only" in d.why_reflection
    assert declared_for(make_tiny(smooth_invariant=True)).cutoff_jump == 0.0
    assert declared_for("hienet-v3", "d3bj").energy_steps == D3.energy_steps


def test_smooth_model_has_no_jump_at_the_cutoff():
    """The scan across the cutoff finds the tiny model's jump; the smooth variant has none."""
    tol = Tolerances.for_dtype("float64")
    for smooth, passes in ((False, False), (True, True)):
        model = make_tiny(smooth_invariant=smooth)
        check = check_cutoff_scan(evaluator_engine(Evaluator(model, device="cpu", dtype="float64")), (11, 17),
                                  model.cutoff, tol, Declared())
        assert check.passed is passes, check
        assert abs(check.measured["at r"] - model.cutoff) < 1e-5 or smooth
        assert check.measured["E(r>rc)-E(apart)"] < 1e-10  # no interaction beyond the cutoff either way


# ---------------------------------------------------------------- negative controls
def _broken(engine, how):
    def run(batch):
        out = []
        for atoms, r in zip(batch, engine(batch)):
            r = {k: np.array(v, dtype=float) if k != "energy" else v for k, v in r.items()}
            how(atoms, r)
            out.append(r)
        return out
    return run


def _wrong_sign(atoms, r):
    r["forces"] *= -1


def _stress_times_volume(atoms, r):  # the stress without its volume division: dE/d(strain)
    if "stress" in r:
        r["stress"] *= abs(atoms.get_volume())


def _per_atom_off(atoms, r):
    r["energies"] += 0.01


def _stresses_without_volume(atoms, r):  # per-atom stresses as dE/d(strain) split over atoms
    if "stresses" in r:
        r["stresses"] *= abs(atoms.get_volume())


def _stresses_wrong_sign(atoms, r):  # LAMMPS's compute stress/atom sign, or virials / V
    if "stresses" in r:
        r["stresses"] *= -1


def _virials_wrong_sign(atoms, r):  # ASE's sign instead of LAMMPS's
    r["virials"] *= -1


def _not_extensive(atoms, r):  # a constant added to every energy
    r["energy"] += 1.0
    r["energies"] += 1.0 / len(atoms)


@pytest.mark.parametrize("how,caught_by", [
    (_wrong_sign, {"forces: finite diff.", "per-atom sums"}),  # the molecule: virials vs sum r (x) F
    (_stress_times_volume, {"stress: finite diff.", "supercell", "per-atom sums"}),
    (_per_atom_off, {"per-atom sums"}),
    (_stresses_without_volume, {"per-atom sums"}),
    (_stresses_wrong_sign, {"per-atom sums"}),
    (_virials_wrong_sign, {"per-atom sums"}),
    (_not_extensive, {"supercell", "cutoff scan"}),
])
def test_broken_engines_are_caught(tiny, structures, how, caught_by):
    engine = _broken(evaluator_engine(Evaluator(tiny, device="cpu", dtype="float64")), how)
    report = run_contract(engine, structures[:1] + structures[2:3], Tolerances.for_dtype("float64"), TINY,
                          cutoff=tiny.cutoff)
    assert not report.passed
    assert {c.name for c in report.failures} == caught_by, str(report)
    with pytest.raises(AssertionError, match="contract check"):
        assert_contract(engine, structures[:1], Tolerances.for_dtype("float64"), TINY, cutoff=tiny.cutoff)


def test_slab_virials_wrong_sign_caught(tiny, structures):
    """A slab has no stress: its per-atom virials are checked along the non-periodic direction,
    against sum_i r_i (x) F_i there; the wrong sign fails, in float32 too (whose allowance,
    10 force tolerances times 1 A, is 3x below this small model's slab virial)."""
    slab = structures[1]
    assert not slab.pbc.all() and slab.pbc.any()
    for dtype in ("float64", "float32"):
        engine, tol = evaluator_engine(Evaluator(tiny, device="cpu", dtype=dtype)), Tolerances.for_dtype(dtype)
        good, bad = check_per_atom_sums(engine, slab, tol), check_per_atom_sums(_broken(engine, _virials_wrong_sign),
                                                                             slab, tol)
        assert good.passed and "ΣW_i-W" in good.measured and not bad.passed, (good, bad)
        assert bad.measured["ΣW_i-W"] > (1e3 if dtype == "float64" else 2) * bad.allowed["ΣW_i-W"]


def test_wrong_sign_caught_in_float32(tiny, structures):
    """The float32 noise floor of the finite differences stays far below a sign error (here on
    forces of a few eV/A, a strongly compressed cell)."""
    squeezed = structures[-1].copy()
    squeezed.set_cell(squeezed.cell.array * 0.8, scale_atoms=True)
    engine = evaluator_engine(Evaluator(tiny, device="cpu", dtype="float32"))
    tol = Tolerances.for_dtype("float32")
    good, bad = check_forces_fd(engine, squeezed, tol), check_forces_fd(_broken(engine, _wrong_sign), squeezed, tol)
    assert good.passed and not bad.passed and bad.measured["err(h/2)"] > 10 * bad.measured["noise"], (good, bad)


def test_undeclared_mirror_breaking_is_caught(tiny, structures):
    """A model that is not mirror-symmetric fails the reflection check unless it declares it: here
    an engine whose energy depends on the handedness of its input."""
    def chiral(atoms, r):
        p = atoms.positions - atoms.positions.mean(0)
        r["energy"] += 1e-3 * float(np.sum(p[:, 0] * p[:, 1] * p[:, 2]))

    engine = _broken(evaluator_engine(Evaluator(tiny, device="cpu", dtype="float64")), chiral)
    tol = Tolerances.for_dtype("float64")
    mol = structures[2]
    assert not check_reflection(engine, mol, tol, TINY).passed
    declared = Declared(reflection_energy=1.0, reflection_forces=None, reflection_stress=None)
    assert check_reflection(engine, mol, tol, declared).passed


def test_check_verb(tiny, tmp_path, capsys, monkeypatch):
    """`hipot check MODEL`: the report per engine and exit 0; a declaration the model breaks (a
    reflection tolerance of 0 for an SO(3)-only model) is exit 1 naming the failed check; bad
    options are exit 2 before the model loads."""
    import json

    from hipot.checkpoint import save_model
    from hipot.cli import main

    save_model(tiny, tmp_path / "tiny")
    cmd = ["check", str(tmp_path / "tiny"), "--device", "cpu"]
    assert main(cmd + ["--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr()
    assert "PASS  stress: finite diff." in out.out and "passes the contract through calculator, evaluator" in out.err
    summary = json.loads((tmp_path / "c.json").read_text())
    assert summary["passed"] and {c["name"] for c in summary["engines"]["evaluator"]} >= {"reflection", "cutoff scan"}
    assert main(cmd + ["--engines", "evaluator", "--reflection-tolerance", "0", "--no-fd", "-q"]) == 1
    out = capsys.readouterr()
    assert "FAIL  reflection" in out.out and "contract fails through evaluator" in out.err
    assert "PASS" not in out.out  # -q: the failures only

    def refuse(*a, **kw):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(Evaluator, "__init__", refuse)
    assert main(cmd + ["--engines", "lammps"]) == 2
    assert "--engines: unknown lammps" in capsys.readouterr().err
