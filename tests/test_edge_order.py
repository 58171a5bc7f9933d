"""The optional interleaved edge order (hipot.edge_order): a permutation in which consecutive edges
have different centres, and which changes no result."""
from __future__ import annotations

import dataclasses

import torch
from ase.build import bulk

from hipot.derivatives import ForceStressModel
from hipot.edge_order import interleaved_order
from hipot.execution import ExecutionOptions
from hipot.graph import build_graph
from conftest import make_tiny, rattled


def grouped_input(model):
    """A crystal's edges grouped by centre, as LAMMPS lists them (the order the kernels dislike)."""
    atoms = rattled(bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 2, 2), 0.1, seed=3)
    inp = build_graph([atoms], model.cutoff, model.species, dtype=torch.float64).potential_input()
    by_center = torch.argsort(inp.center, stable=True)
    return dataclasses.replace(inp, center=inp.center[by_center], neighbor=inp.neighbor[by_center],
                               edge_vec=inp.edge_vec[by_center])


def test_interleaved_order_spreads_centres():
    model = make_tiny()
    inp = grouped_input(model)
    perm = interleaved_order(inp.center, inp.num_nodes)
    assert torch.equal(torch.sort(perm).values, torch.arange(inp.num_edges))  # a permutation
    c = inp.center[perm]
    # every atom has the same number of neighbours here: rounds of all 64 centres, ascending
    assert bool((c[1:] != c[:-1]).all())
    assert torch.equal(c[: inp.num_nodes], torch.arange(inp.num_nodes))
    assert bool((inp.center[1:] == inp.center[:-1]).float().mean() > 0.9)  # the input was grouped


def test_order_changes_no_result():
    model = ForceStressModel(make_tiny())
    inp = grouped_input(model)
    got = model.predict(inp, ExecutionOptions(edge_order="interleaved"), atom_virials=True)
    ref = model.predict(inp, ExecutionOptions(), atom_virials=True)  # the default: as given
    for name in ("energy", "energies", "forces", "virial", "atom_virials"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), atol=1e-12, rtol=0)
