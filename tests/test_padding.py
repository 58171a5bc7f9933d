"""Padding used by CUDA-graph replay changes no result (checked on the CPU)."""
from __future__ import annotations

import torch

from hipot.cuda_graphs import bucket, pad_graph, unpad
from hipot.derivatives import ForceStressModel
from hipot.graph import build_graph
from conftest import make_tiny


def test_bucket():
    for n in [1, 7, 8, 9, 15, 16, 17, 100, 1000, 12345]:
        b = bucket(n)
        assert b >= n and b <= max(8, n * 1.125 + 1)


def test_padded_graph_same_results(nacl, molecule):
    model = ForceStressModel(make_tiny())
    g = build_graph([nacl, molecule], model.cutoff, model.species).to(dtype=torch.float64)
    ref = model(g)
    e = int(g.center.numel())
    padded = pad_graph(g, g.num_atoms + 5, e + 37, g.num_graphs + 2)
    got = unpad(model(padded), g.num_atoms, g.num_graphs)
    torch.testing.assert_close(got.energy, ref.energy, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.energies, ref.energies, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.forces, ref.forces, atol=1e-12, rtol=0)
    torch.testing.assert_close(got.stress, ref.stress, atol=1e-12, rtol=0)
