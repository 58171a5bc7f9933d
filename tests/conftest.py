"""Shared fixtures: a tiny random HIENet (float64), the official HIENet-V3 weights, structures."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from hipot import HIENet, ModelConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden" / "hienet_v3_reference.extxyz"


def tiny_config(**kw) -> ModelConfig:
    base = dict(species=[1, 6, 8, 11, 14, 17, 29], cutoff=4.0, num_radial=4, invariant_channels=8,
                hidden_irreps=["8x0e+4x1e+4x2e", "8x0e+4x1e+2x2e+2x3e", "8x0e"], radial_hidden=[8],
                avg_num_neighbors=10.0, readout_hidden=8, dropout=0.0, dropout_attn=0.0)
    base.update(kw)
    return ModelConfig(**base)


def make_tiny(seed: int = 0, dtype=torch.float64, **kw) -> HIENet:
    torch.manual_seed(seed)
    model = HIENet(tiny_config(**kw))
    with torch.no_grad():
        model.scale.uniform_(0.5, 1.5)
        model.shift.uniform_(-3, -1)
        for layer in model.invariant_layers:  # non-trivial layer norms
            for ln in (layer.att_norm, layer.out_norm):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.2, 0.2)
    return model.to(dtype).eval()


@pytest.fixture(scope="session")
def tiny() -> HIENet:
    return make_tiny()


@pytest.fixture(scope="session")
def v3_path() -> Path:
    """The converted official HIENet-V3 model (downloaded once per cache)."""
    from hipot.pretrained import fetch

    try:
        return fetch("hienet-v3")
    except Exception as e:  # no network and no cache
        if os.environ.get("HIPOT_REQUIRE_WEIGHTS") == "1":
            raise
        pytest.skip(f"HIENet-V3 weights unavailable: {e}")


def rattled(atoms: Atoms, sigma: float = 0.1, seed: int = 0) -> Atoms:
    atoms = atoms.copy()
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=sigma, size=atoms.positions.shape)
    return atoms


@pytest.fixture
def nacl() -> Atoms:
    """A small triclinic-ish, rattled rocksalt cell."""
    a = bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1)
    a.set_cell(a.cell.array + np.array([[0.1, 0.0, 0.05], [0.0, 0.2, 0.0], [0.1, 0.0, -0.1]]), scale_atoms=True)
    return rattled(a, 0.1, seed=1)


@pytest.fixture
def si_cubic() -> Atoms:
    return rattled(bulk("Si", "diamond", a=5.43, cubic=True), 0.05, seed=2)


@pytest.fixture
def molecule() -> Atoms:
    return Atoms("CH2OH", positions=[[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.4, -0.6, 1.2], [0.2, -1.4, 1.5]])
