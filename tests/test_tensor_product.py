"""The channel-wise tensor product: every kernel equals e3nn's TensorProduct with the same
layout, and the kernels agree with each other in outputs and gradients, under every execution
option, so they can be swapped on the same weights."""
from __future__ import annotations

import copy

import pytest
import torch
from e3nn import o3

from hipot.derivatives import ForceStressModel
from hipot.execution import ExecutionOptions
from hipot.graph import build_graph
from hipot.nn.irreps import EquivariantLinear, Irreps
from hipot.nn.tensor_product import ChannelwisePlan, EdgeKernel, PaddedKernel, atom_runs, uvu_paths
from conftest import make_tiny

IRR_IN, IRR_OUT, LMAX = Irreps.parse("5x0e+3x1e+2x2e"), Irreps.parse("4x0e+2x1e+2x2e+1x3e"), 3


def _kernels(plan: ChannelwisePlan) -> dict:
    out = {"edges": EdgeKernel(plan), "padded": PaddedKernel(plan)}
    try:
        from hipot.nn.tensor_product import CueqKernel

        out["cueq"] = CueqKernel(plan, method="naive")
    except ImportError:
        pass
    return out


def _flat(xs):
    return torch.cat([xs[l].reshape(xs[l].shape[0], -1) for l in sorted(xs)], dim=1)


def _random_inputs(irr_in: Irreps, lmax: int, weight_numel: int, n: int, e: int = 20):
    """Node features, harmonics of random edge vectors, per-edge weights and random edges (float64)."""
    xs = {l: torch.randn(n, m, 2 * l + 1, dtype=torch.float64) for l, m in irr_in.terms}
    vec = torch.randn(e, 3, dtype=torch.float64)
    sh = o3.spherical_harmonics(list(range(lmax + 1)), vec, normalize=True, normalization="component")
    w = torch.randn(e, weight_numel, dtype=torch.float64)
    return xs, sh, w, torch.randint(0, n, (e,)), torch.randint(0, n, (e,))


def _e3nn_reference(irr_in: Irreps, lmax: int, irr_out: Irreps):
    e_in = o3.Irreps(str(irr_in))
    e_sh = o3.Irreps.spherical_harmonics(lmax, p=1)
    instr, mid = [], []
    for p in uvu_paths(irr_in, lmax, irr_out):
        instr.append((irr_in.ls.index(p.l1), p.l2, len(mid), "uvu", True))
        mid.append((p.mul, (p.l3, 1)))
    mid_sorted, perm, _ = o3.Irreps(mid).sort()
    instr = [(a, b, perm[c], m, t) for a, b, c, m, t in instr]
    return o3.TensorProduct(e_in, e_sh, mid_sorted, instr, shared_weights=False, internal_weights=False).double()


@pytest.mark.parametrize("kernel", ["edges", "padded", "cueq"])
def test_matches_e3nn(kernel):
    torch.manual_seed(0)
    plan = ChannelwisePlan(IRR_IN, LMAX, IRR_OUT)
    kernels = _kernels(plan)
    if kernel not in kernels:
        pytest.skip("cuequivariance-torch is not installed")
    ref = _e3nn_reference(IRR_IN, LMAX, IRR_OUT)
    assert ref.weight_numel == plan.weight_numel
    n = 6
    xs, sh, w, center, neighbor = _random_inputs(IRR_IN, LMAX, plan.weight_numel, n)
    got = _flat(kernels[kernel].convolve(xs, sh, w, center, neighbor, n))
    msg = ref(_flat(xs)[neighbor], sh, w)
    want = torch.zeros(n, msg.shape[1], dtype=torch.float64).index_add_(0, center, msg)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # e3nn keeps its 3j in float32


def test_linear_matches_e3nn():
    torch.manual_seed(1)
    irr_in, irr_out = Irreps.parse("6x0e+3x1e+2x2e"), Irreps.parse("4x0e+5x1e+1x2e")
    lin = EquivariantLinear(irr_in, irr_out).double()
    ref = o3.Linear(o3.Irreps(str(irr_in)), o3.Irreps(str(irr_out))).double()
    with torch.no_grad():
        ref.weight.copy_(torch.cat([w.reshape(-1) for w in lin.weights]))
    xs = {l: torch.randn(7, m, 2 * l + 1, dtype=torch.float64) for l, m in irr_in.terms}
    torch.testing.assert_close(_flat(lin(xs)), ref(_flat(xs)), atol=1e-12, rtol=1e-12)


def _grads(out: dict, inputs: list) -> list:
    probe = sum(((l + 1) * torch.sin(out[l])).sum() for l in out)  # a nonlinear function of every output
    return torch.autograd.grad(probe, inputs)


OPTIONS = [ExecutionOptions(), ExecutionOptions(recompute=True, edge_chunk=7),
           ExecutionOptions.inference(), ExecutionOptions.inference(recompute=True, edge_chunk=7)]


@pytest.mark.slow
@pytest.mark.parametrize("n_edges", [25, 0])
def test_kernels_agree_under_every_option(n_edges):
    """All kernels, under every execution option, give the edge kernel's outputs and gradients
    (features, harmonics, radial hidden layer and last matrix), also for atoms without neighbours
    and for a graph without edges."""
    torch.manual_seed(3)
    irr_in = Irreps.parse("4x0e+3x1e+2x2e+1x3e")
    plan = ChannelwisePlan(irr_in, LMAX, IRR_OUT)
    kernels = _kernels(plan)
    n = 9
    xs, sh, _w, center, neighbor = _random_inputs(irr_in, LMAX, plan.weight_numel, n, n_edges)
    center = center % 6  # atoms 6, 7, 8 have no neighbours
    hidden = torch.randn(n_edges, 5, dtype=torch.float64, requires_grad=True)
    last = torch.randn(5, plan.weight_numel, dtype=torch.float64, requires_grad=True)
    for t in xs.values():
        t.requires_grad_()
    inputs = [*xs.values(), sh.requires_grad_(), hidden, last]
    ref = kernels["edges"](xs, sh, hidden, last, center, neighbor, n, ExecutionOptions())
    ref_grads = _grads(ref, inputs) if n_edges else []
    for name, kernel in kernels.items():
        for options in OPTIONS:
            out = kernel(xs, sh, hidden, last, center, neighbor, n, options)
            assert sorted(out) == sorted(ref)
            for l in ref:
                torch.testing.assert_close(out[l], ref[l], atol=1e-12, rtol=1e-12, msg=f"{name} {options}")
            if n_edges:
                for a, b in zip(ref_grads, _grads(out, inputs)):
                    torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12, msg=f"{name} {options}")
            assert all(float(out[l][6:].detach().abs().max()) == 0 for l in out)  # lonely atoms get nothing


def test_atom_runs_skip_atoms_without_edges():
    """Atoms without edges (LAMMPS's ghosts) are in no run: a few local atoms among many ghosts
    cost runs for the local atoms only."""
    center = torch.tensor([0, 0, 1, 2, 2, 2])
    runs = atom_runs(center, num_nodes=10_000)
    assert sorted(int(a) for atoms, _, _ in runs for a in atoms) == [0, 1, 2]
    assert sum(slots.numel() for _, slots, _ in runs) <= 3 * 3
    plan = ChannelwisePlan(IRR_IN, LMAX, IRR_OUT)
    for n_nodes in (0, 4):  # no atoms at all (an empty LAMMPS rank); atoms but no edges
        xs = {l: torch.randn(n_nodes, m, 2 * l + 1) for l, m in IRR_IN.terms}
        empty = torch.zeros(0, dtype=torch.long)
        out = PaddedKernel(plan).convolve(xs, torch.zeros(0, (LMAX + 1) ** 2), torch.zeros(0, plan.weight_numel),
                                          empty, empty, n_nodes)
        assert {l: t.shape for l, t in out.items()} == {l: (n_nodes, m, 2 * l + 1) for l, m in plan.irreps_mid.terms}


@pytest.mark.slow
def test_swapping_kernels_keeps_model_and_state_dict(nacl):
    """Swapped in one place, kernels are real submodules: the state dict does not change, deepcopy
    and .to() carry them, and energies, forces, stress and the training loss's parameter gradients
    are the same with every kernel."""
    net = make_tiny()
    keys = set(net.state_dict())
    g = build_graph([nacl], net.cutoff, net.species).to(dtype=torch.float64)
    results = {}
    for name in ("edges", "padded", "cueq"):
        try:
            assert net.set_backend(name) == name
        except RuntimeError:
            continue  # cuequivariance not installed
        assert set(net.state_dict()) == keys
        twin = copy.deepcopy(net).float().double()
        assert twin.backend == name
        net.zero_grad()
        pred = ForceStressModel(net)(g, ExecutionOptions.training())
        (pred.energy.sum() + pred.forces.pow(2).sum() + pred.stress.pow(2).sum()).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        frozen = ForceStressModel(twin)(g, ExecutionOptions.inference())
        results[name] = (pred, grads, frozen)
    ref_pred, ref_grads, _ = results["edges"]
    for name, (pred, grads, frozen) in results.items():
        for f in ("energy", "forces", "stress"):
            torch.testing.assert_close(getattr(pred, f), getattr(ref_pred, f), atol=1e-10, rtol=0)
            torch.testing.assert_close(getattr(frozen, f), getattr(ref_pred, f), atol=1e-5, rtol=0)  # float32 trip
        for a, b in zip(ref_grads, grads):
            torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-9, msg=name)
