"""The physics contract (hipot.testing) on the pretrained HIENet-V3, on three cheap structures: a
rattled Si primitive cell, a rattled triclinic SrTiO3 and an ethanol molecule. V3's declared
properties are measured: its mirror deltas stay within what it declares (and fail a declaration
of 0: it is not mirror-symmetric), and the scan across its cutoff finds its energy step."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from conftest import rattled
from hipot import Evaluator, HIPotCalculator
from hipot.check import HIENET_V3
from hipot.engines import calculator_engine, evaluator_engine
from hipot.testing import Declared, Tolerances, assert_contract, check_reflection

pytestmark = pytest.mark.slow  # HIENet-V3 on a CPU: tens of seconds per test on 2 cores


@pytest.fixture(scope="module")
def structures():
    si = rattled(bulk("Si", "diamond", a=5.43), 0.05, seed=2)
    sto = Atoms("SrTiO3", scaled_positions=[[0, 0, 0], [.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]],
                cell=[[3.9, 0.1, 0], [0.2, 3.95, 0.1], [0.1, -0.1, 3.92]], pbc=True)
    sto = rattled(sto, 0.05, seed=4)
    eth = rattled(molecule("CH3CH2OH"), 0.03, seed=5)
    for a, name in ((si, "Si"), (sto, "SrTiO3 triclinic"), (eth, "ethanol")):
        a.info["name"] = name
    return [si, sto, eth]


@pytest.fixture(scope="module")
def v3_float64(v3_path):
    return Evaluator("hienet-v3", device="cpu", dtype="float64")


def test_evaluator_float64(v3_float64, structures):
    report = assert_contract(evaluator_engine(v3_float64), structures, Tolerances.for_dtype("float64"), HIENET_V3,
                             cutoff=5.0)
    # V3 is not mirror-symmetric: the non-centrosymmetric structures change (SrTiO3 2.6e-5, ethanol
    # 3.0e-5 eV/atom measured), within what it declares; a 2-atom cell is its own mirror image.
    deltas = dict(zip([c.structure for c in report.checks if c.name == "reflection"],
                      report.measured("reflection", "dE/atom")))
    assert deltas["Si"] < 1e-12 and 1e-6 < deltas["SrTiO3 triclinic"] < HIENET_V3.reflection_energy
    assert 1e-6 < deltas["ethanol"] < HIENET_V3.reflection_energy
    (scan,) = [c for c in report.checks if c.name == "cutoff scan"]
    assert scan.measured["jump"] > 0.1 and abs(scan.measured["at r"] - 5.0) < 1e-5  # V3's step at 5 A, reported
    # declared 0, the same mirror fails: the contract neither hides nor fails on it by default
    check = check_reflection(evaluator_engine(v3_float64), structures[1], Tolerances.for_dtype("float64"), Declared())
    assert not check.passed


def test_calculator_float32(v3_path, structures):
    """The calculator in float32 on the same structures (finite differences at float32's steps)."""
    calc = HIPotCalculator("hienet-v3", device="cpu", dtype="float32")
    assert_contract(calculator_engine(calc), structures, Tolerances.for_dtype("float32"), HIENET_V3, cutoff=5.0)


def test_dispersion_float64(v3_float64, structures):
    """V3 + D3(BJ): the contract with D3's declared finite-difference disagreement."""
    pytest.importorskip("dftd3")
    from hipot.check import D3

    ev = Evaluator("hienet-v3", device="cpu", dtype="float64", dispersion="d3bj")
    report = assert_contract(evaluator_engine(ev), structures[:2], Tolerances.for_dtype("float64"), HIENET_V3.plus(D3),
                             cutoff=5.0, fd_atoms=1)
    assert np.isfinite(report.measured("stress: finite diff.", "err(h/2)")).all()
