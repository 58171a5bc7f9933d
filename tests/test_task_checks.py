"""The tasks say when the model's energy jump at its cutoff spoils a result: eos checks its fit
against the model's own stress (bulk modulus, steps in E(V)), phonons and elastic warn when a
neighbour shell lies within their displacement or strain of a discontinuous cutoff. A tiny
random model with and without `smooth_invariant` is the control pair."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from hipot.evaluator import Evaluator
from hipot.tasks.checks import ResultWarning, energy_steps, shells_near, steps_along
from conftest import make_tiny


def _model(cutoff: float, smooth: bool) -> Evaluator:
    return Evaluator(make_tiny(species=[11, 17, 29], cutoff=cutoff, smooth_invariant=smooth), device="cpu",
                     dtype="float64")


def test_step_detectors_on_known_curves():
    v = np.linspace(10, 12, 11)
    e = 0.1 * (v - 11) ** 2                      # E(V) with P = -dE/dV
    p = -0.2 * (v - 11)
    assert np.max(np.abs(energy_steps(v, e, p))) < 1e-12
    e_jump = e + 0.005 * (v > 11.5)
    steps = energy_steps(v, e_jump, p)
    assert np.argmax(np.abs(steps)) == 7 and abs(steps[7] - 0.005) < 1e-12
    x = np.linspace(2, 4, 41)
    assert np.max(np.abs(steps_along(x, np.cos(x), np.sin(x)))) < 1e-4   # F = -dE/dx, trapezoid error only
    assert shells_near(bulk("Cu", "fcc", a=3.6), 3.6, 0.01) == [3.6]


def test_eos_flags_the_cutoff_step_only_for_a_discontinuous_model():
    from hipot.tasks.eos import eos

    atoms = bulk("Cu", "fcc", a=3.6)
    kw = dict(relax_internal=False, strain=0.2, points=15)   # +-6 % in length: the second shell crosses 4 A
    with pytest.warns(ResultWarning, match="E\\(V\\) steps by"):
        r = eos(atoms, _model(4.0, False), **kw)
    assert max(np.abs(r.energy_steps_mev)) > 1.0 and any("cross the model's 4 A cutoff" in w for w in r.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultWarning)
        r = eos(atoms, _model(4.0, True), **kw)
    assert max(np.abs(r.energy_steps_mev)) < 0.1 and not r.warnings
    assert abs(r.b0 - r.b0_stress) < 0.1 * r.b0


def test_eos_stress_bulk_modulus_agrees_with_the_fit_for_emt():
    from hipot.tasks.eos import eos

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultWarning)
        r = eos(bulk("Cu", "fcc", a=3.6), EMT())
    assert abs(r.b0 - r.b0_stress) < 0.01 * r.b0 and max(np.abs(r.energy_steps_mev)) < 0.05
    assert len(r.pressures) == len(r.volumes) and "b0_stress" in r.to_dict()


def test_phonons_and_elastic_warn_about_a_shell_at_the_cutoff():
    from hipot.tasks.elastic import elastic
    from hipot.tasks.phonons import phonons

    atoms = bulk("Cu", "fcc", a=3.6)   # second shell at 3.600 A
    with pytest.warns(ResultWarning, match="3.600 A lie within 0.01 A"):
        r = phonons(atoms, _model(3.605, False), supercell=[2, 2, 2], relax_first=False, bands=False, t_max=300)
    assert r.warnings and r._band == {} and r.thermal["heat_capacity"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultWarning)
        assert not phonons(atoms, _model(3.605, True), supercell=[2, 2, 2], relax_first=False, bands=False,
                           t_max=300).warnings
        assert not phonons(atoms, _model(3.7, False), supercell=[2, 2, 2], relax_first=False, bands=False,
                           t_max=300).warnings   # the shell is 0.1 A inside: out of the displacements' reach
    with pytest.warns(ResultWarning, match="a strain of 0.01"):
        r = elastic(atoms, _model(3.62, False), relax_first=False, relax_internal=False)
    assert r.warnings


def test_elastic_many_equals_one_by_one():
    from hipot.tasks.elastic import elastic, elastic_many

    m = _model(4.0, True)
    cells = [bulk("Cu", "fcc", a=3.7), bulk("NaCl", "rocksalt", a=5.7)]
    many = elastic_many(cells, m, relax_first=False, relax_internal=False)
    for a, r in zip(cells, many):
        one = elastic(a, m, relax_first=False, relax_internal=False)
        np.testing.assert_allclose(r.c, one.c, atol=1e-9)
        assert r.error is None
