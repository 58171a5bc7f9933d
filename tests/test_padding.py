"""Padding used by CUDA-graph replay changes no result (checked on the CPU)."""
from __future__ import annotations

import torch

from hipot.cuda_graphs import bucket, pad_input, unpad
from hipot.derivatives import ForceStressModel
from hipot.graph import build_graph
from conftest import make_tiny


def test_bucket():
    for n in [1, 7, 8, 9, 15, 16, 17, 100, 1000, 12345]:
        b = bucket(n)
        assert b >= n and b <= max(8, n * 1.125 + 1)


def test_padded_input_same_results(nacl, molecule):
    model = ForceStressModel(make_tiny())
    g = build_graph([nacl, molecule], model.cutoff, model.species).to(dtype=torch.float64)
    inp = g.potential_input()
    ref = model.predict(inp, atom_virials=True)
    padded = pad_input(inp, g.num_atoms + 5, inp.num_edges + 37, g.num_graphs + 2)
    out = model.predict(padded, atom_virials=True)
    assert out.energy[-1].abs() > 1e-3  # the padding structure has an energy, which unpad drops
    got = unpad(out, g.num_atoms, g.num_graphs)
    for name in ("energy", "energies", "forces", "virial", "atom_virials"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), atol=1e-12, rtol=0)


def test_capture_serves_drifting_neighbour_counts(nacl):
    """A capture made for one step serves the next steps of an MD run whose edge count drifts by
    a few per cent either way, but not a structure of a quite different size."""
    from dataclasses import replace

    from hipot.cuda_graphs import capacity, fits

    model = make_tiny()
    inp = build_graph([nacl * (3, 3, 3)], model.cutoff, model.species).potential_input()
    sizes = capacity(inp)
    assert fits(sizes, inp)
    e = inp.num_edges
    for drift in (0.97, 1.0, 1.02):
        k = int(e * drift)
        assert fits(sizes, replace(inp, center=inp.center[:1].repeat(k), neighbor=inp.neighbor[:1].repeat(k),
                                   edge_vec=inp.edge_vec[:1].repeat(k, 1)))
    half = replace(inp, center=inp.center[: e // 2], neighbor=inp.neighbor[: e // 2], edge_vec=inp.edge_vec[: e // 2])
    more = replace(inp, center=inp.center.repeat(2), neighbor=inp.neighbor.repeat(2), edge_vec=inp.edge_vec.repeat(2, 1))
    assert not fits(sizes, half) and not fits(sizes, more)
    assert fits(capacity(more), more) and fits(capacity(half), half)
