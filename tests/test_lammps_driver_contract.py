"""The physics contract (hipot.testing) on `pair_style hipot`'s driver in process, without LAMMPS
or a compiler: tests/fake_lammps.py's DriverEngine steps the driver on 1 rank and on 2 simulated
ranks splitting each structure (a crystal, the same as a slab, a molecule, the dimers of the
cutoff scan), through its public entry points. On 2 ranks the checks that move atoms, change the
basis or repeat the cell (translation, basis, supercell, rotation of a molecule) also change how
the ranks split the structure, so they hold the exchange between ranks to the contract too.
Negative controls: a driver whose ghost rows are not exchanged, or whose rank's forces are
dropped, is caught. The compiled plugin: tests/test_lammps_contract.py."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny
from fake_lammps import DriverEngine
from hipot.check import contract_structures
from hipot.checkpoint import save_model
from hipot.testing import Declared, Tolerances, assert_contract, run_contract

# As tests/test_contract.py: the tiny model is SO(3)-only (small mirror deltas) and, unless made
# smooth, its invariant layer does not fade out at the cutoff (the scan reports its jump).
TINY = Declared(reflection_energy=1e-6, reflection_forces=1e-5, reflection_stress=1e-6, cutoff_jump=None,
                why_reflection="tiny model: SO(3)-only", why_cutoff="tiny model: invariant layer not smooth")
# smooth_invariant=True: the scan across the cutoff is checked, a jump of 0 declared
SMOOTH = Declared(reflection_energy=1e-6, reflection_forces=1e-5, reflection_stress=1e-6, cutoff_jump=0.0,
                  why_reflection="tiny model: SO(3)-only")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    """The tiny random model and its smooth variant, saved as `pair_style hipot` reads them."""
    root = tmp_path_factory.mktemp("driver-contract")
    out = {}
    for name, smooth in (("tiny", False), ("smooth", True)):
        save_model(make_tiny(smooth_invariant=smooth), root / name)
        out[name] = str(root / name)
    return out


@pytest.fixture(scope="module")
def structures():
    """A rattled triclinic SiO crystal, the same as a slab (periodic in x, y), a 4-atom molecule."""
    return contract_structures(make_tiny().species)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the simulated ranks are threads already
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("nranks, model, dtype", [(1, "tiny", "float64"), (2, "tiny", "float64"),
                                                  (2, "smooth", "float64"), (2, "tiny", "float32")])
def test_driver_passes_the_contract(models, structures, nranks, model, dtype):
    """Every check on the crystal, slab and molecule; per-atom energies and virials sum as they
    must on each; on 2 ranks rows really crossed between them (float32: as pairs in float64
    slots); the smooth model's scan across the cutoff is checked (a jump of 0 declared), the other's
    finds its jump at the cutoff."""
    engine = DriverEngine(models[model], nranks, ("device", "cpu", "dtype", dtype, "timing", "yes"))
    smooth = model == "smooth"
    report = assert_contract(engine, structures, Tolerances.for_dtype(dtype), SMOOTH if smooth else TINY,
                             cutoff=engine.cutoff)
    assert {c.name for c in report.checks} >= {"forces: finite diff.", "stress: finite diff.", "rotation",
                                               "reflection", "basis (left-handed)", "translation", "permutation",
                                               "supercell", "per-atom sums", "cutoff scan"}
    sums = {c.structure: c for c in report.checks if c.name == "per-atom sums"}
    assert len(sums) == len(structures)
    assert all({"ΣE_i-E", "ΣW_i-W"} <= set(c.measured) for c in sums.values()), sums  # a missing key passes silently
    if dtype == "float64":  # the finite differences converge as h^2 (error ratio 4 between h and h/2)
        ratios = report.measured("forces: finite diff.", "ratio") + report.measured("stress: finite diff.", "ratio")
        assert len(ratios) == 4 and all(3.5 < r < 4.5 for r in ratios), ratios
    (jump,) = report.measured("cutoff scan", "jump")
    (at,) = report.measured("cutoff scan", "at r")
    assert jump < 1e-8 if smooth else (jump > 1e-3 and abs(at - engine.cutoff) < 1e-5)
    for driver in engine.drivers:  # the timing counts: mean ghost rows a step received
        names, values = driver.timing()
        counts = dict(zip(names.split(), values))
        assert counts["steps"] == engine.steps > 100
        assert (counts["exchanged_rows"] > 0.5) if nranks > 1 else counts["exchanged_rows"] == 0


# what catches each broken driver, on the crystal and the molecule (exact, so that a check that
# stops catching one is noticed)
CAUGHT = {
    # ghost rows zeroed by the forward communication: forces are not the energy's gradient, and
    # the energy depends on how the ranks split the structure
    "exchange": {"forces: finite diff.", "stress: finite diff.", "rotation", "translation", "basis (left-handed)",
                 "supercell"},
    # `exchange no` (the driver's debugging keyword): the forces are the exact gradient of a wrong
    # energy, so the finite differences pass; the energy still depends on the split
    "keyword": {"rotation", "translation", "basis (left-handed)", "supercell"},
    # the last rank's forces (its atoms' and its ghost rows') never reach the atoms
    "forces": {"forces: finite diff.", "rotation", "reflection", "translation", "basis (left-handed)", "supercell",
               "per-atom sums"},
}


@pytest.mark.parametrize("broken", sorted(CAUGHT))
def test_broken_driver_is_caught(models, structures, broken):
    """Negative controls on 2 ranks, float64: each broken driver fails the contract, by the checks
    CAUGHT names."""
    args = ("device", "cpu", "dtype", "float64") + (("exchange", "no") if broken == "keyword" else ())
    engine = DriverEngine(models["tiny"], 2, args, broken=None if broken == "keyword" else broken)
    report = run_contract(engine, [structures[0], structures[2]], Tolerances.for_dtype("float64"), TINY,
                          cutoff=engine.cutoff, fd_atoms=1)
    assert not report.passed
    assert {c.name for c in report.failures} == CAUGHT[broken], str(report)
    # each caught by a wide margin, not by round-off
    margins = {c.name + " " + c.structure: _margin(c) for c in report.failures}
    assert min(margins.values()) > 100, margins


def _margin(check) -> float:
    """How far a failed check is beyond what it allows: its worst measured / allowed ratio; for
    a finite difference (which passes on its h^2 convergence) its error over the noise floor."""
    if "noise" in check.measured:
        return check.measured["err(h/2)"] / check.measured["noise"]
    return max(v / check.allowed[k] for k, v in check.measured.items() if check.allowed.get(k))
