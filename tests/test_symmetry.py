"""Invariances and equivariances of E, F and stress (tiny random model, float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from scipy.spatial.transform import Rotation

from hipot import predict
from conftest import make_tiny, rattled


def evaluate(model, structures):
    return predict(structures, model=model, device="cpu", dtype="float64", batch_size=8)


def rotated(atoms: Atoms, R: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.positions = atoms.positions @ R.T
    out.cell = atoms.cell.array @ R.T
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_rotation(tiny, nacl, molecule, seed):
    R = Rotation.random(random_state=seed).as_matrix()
    for atoms in (nacl, molecule):
        r0, r1 = evaluate(tiny, [atoms, rotated(atoms, R)])
        assert abs(r0["energy"] - r1["energy"]) < 1e-10 * max(1, abs(r0["energy"]))
        np.testing.assert_allclose(r1["forces"], r0["forces"] @ R.T, atol=1e-10)
        np.testing.assert_allclose(r1["energies"], r0["energies"], atol=1e-10)
        if atoms.pbc.all():
            from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

            s0 = voigt_6_to_full_3x3_stress(r0["stress"])
            np.testing.assert_allclose(r1["stress"], full_3x3_to_voigt_6_stress(R @ s0 @ R.T), atol=1e-12)


def test_translation_and_wrapping(tiny, nacl):
    moved = nacl.copy()
    moved.positions += np.array([3.3, -1.2, 7.7])
    wrapped = moved.copy()
    wrapped.wrap()
    r0, r1, r2 = evaluate(tiny, [nacl, moved, wrapped])
    for r in (r1, r2):
        assert abs(r["energy"] - r0["energy"]) < 1e-10
        np.testing.assert_allclose(r["forces"], r0["forces"], atol=1e-10)
        np.testing.assert_allclose(r["stress"], r0["stress"], atol=1e-12)


def test_periodic_image_shift(tiny, nacl):
    """Moving one atom by a lattice vector changes nothing."""
    shifted = nacl.copy()
    shifted.positions[0] += nacl.cell.array[1] - 2 * nacl.cell.array[2]
    r0, r1 = evaluate(tiny, [nacl, shifted])
    assert abs(r0["energy"] - r1["energy"]) < 1e-10
    np.testing.assert_allclose(r1["forces"], r0["forces"], atol=1e-10)


def test_permutation(tiny, nacl, molecule):
    for atoms in (nacl, molecule):
        perm = np.random.default_rng(0).permutation(len(atoms))
        r0, r1 = evaluate(tiny, [atoms, atoms[perm]])
        assert abs(r0["energy"] - r1["energy"]) < 1e-10
        np.testing.assert_allclose(r1["forces"], r0["forces"][perm], atol=1e-10)
        np.testing.assert_allclose(r1["energies"], r0["energies"][perm], atol=1e-10)


def test_supercell_extensive(tiny, nacl):
    big = nacl * (2, 2, 2)
    r0, r1 = evaluate(tiny, [nacl, big])
    assert abs(r1["energy"] - 8 * r0["energy"]) < 1e-9 * len(big)
    np.testing.assert_allclose(r1["stress"], r0["stress"], atol=1e-11)
    np.testing.assert_allclose(r1["forces"][: len(nacl)], r0["forces"], atol=1e-10)


def test_batched_equals_single(tiny, nacl, si_cubic, molecule):
    structures = [nacl, molecule, si_cubic, rattled(nacl, 0.05, seed=5)]
    batched = evaluate(tiny, structures)
    for atoms, rb in zip(structures, batched):
        (rs,) = evaluate(tiny, [atoms])
        assert abs(rs["energy"] - rb["energy"]) < 1e-10
        np.testing.assert_allclose(rs["forces"], rb["forces"], atol=1e-10)
        if "stress" in rs:
            np.testing.assert_allclose(rs["stress"], rb["stress"], atol=1e-12)


def test_float32_close_to_float64(nacl):
    m64 = make_tiny()
    m32 = make_tiny(dtype=torch.float32)
    (r64,) = predict([nacl], model=m64, device="cpu", dtype="float64")
    (r32,) = predict([nacl], model=m32, device="cpu", dtype="float32")
    assert abs(r64["energy"] - r32["energy"]) < 1e-4 * max(1.0, abs(r64["energy"]))
    np.testing.assert_allclose(r32["forces"], r64["forces"], atol=1e-3)
