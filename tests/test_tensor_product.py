"""hipot's channel-wise tensor product equals e3nn's TensorProduct with the same layout."""
from __future__ import annotations

import pytest
import torch
from e3nn import o3

from hipot.nn.irreps import EquivariantLinear, Irreps
from hipot.nn.tensor_product import ChannelwiseTensorProduct, uvu_paths


def _flat(xs):
    return torch.cat([xs[l].reshape(xs[l].shape[0], -1) for l in sorted(xs)], dim=1)


def _random_inputs(irr_in: Irreps, lmax: int, weight_numel: int, n: int, e: int = 20):
    """Node features, harmonics of random edge vectors, per-edge weights and random edges (float64)."""
    xs = {l: torch.randn(n, m, 2 * l + 1, dtype=torch.float64) for l, m in irr_in.terms}
    vec = torch.randn(e, 3, dtype=torch.float64)
    sh = o3.spherical_harmonics(list(range(lmax + 1)), vec, normalize=True, normalization="component")
    w = torch.randn(e, weight_numel, dtype=torch.float64)
    return xs, sh, w, torch.randint(0, n, (e,)), torch.randint(0, n, (e,))


@pytest.mark.parametrize("layout", ["edges", "padded"])
def test_matches_e3nn(layout):
    torch.manual_seed(0)
    irr_in, irr_out, lmax = Irreps.parse("5x0e+3x1e+2x2e"), Irreps.parse("4x0e+2x1e+2x2e+1x3e"), 3
    tp = ChannelwiseTensorProduct(irr_in, lmax, irr_out).double()
    tp.layout = layout
    e_in = o3.Irreps(str(irr_in))
    e_sh = o3.Irreps.spherical_harmonics(lmax, p=1)
    instr, mid = [], []
    for p in uvu_paths(irr_in, lmax, irr_out):
        instr.append((irr_in.ls.index(p.l1), p.l2, len(mid), "uvu", True))
        mid.append((p.mul, (p.l3, 1)))
    mid = o3.Irreps(mid)
    mid_sorted, perm, _ = mid.sort()
    instr = [(a, b, perm[c], m, t) for a, b, c, m, t in instr]
    ref = o3.TensorProduct(e_in, e_sh, mid_sorted, instr, shared_weights=False, internal_weights=False).double()
    assert ref.weight_numel == tp.weight_numel
    n = 6
    xs, sh, w, center, neighbor = _random_inputs(irr_in, lmax, tp.weight_numel, n)
    got = _flat(tp(xs, sh, w, center, neighbor, n))
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


def _cueq_pair(seed: int, n: int):
    """The reference product, its cuEquivariance twin (plain-PyTorch method, CPU) and inputs."""
    pytest.importorskip("cuequivariance_torch")
    from hipot.nn.tensor_product import CuetChannelwiseTensorProduct

    torch.manual_seed(seed)
    irr_in, irr_out, lmax = Irreps.parse("5x0e+3x1e+2x2e"), Irreps.parse("4x0e+2x1e+2x2e+1x3e"), 3
    ref = ChannelwiseTensorProduct(irr_in, lmax, irr_out)
    fast = CuetChannelwiseTensorProduct(ref, method="naive")
    return ref, fast, _random_inputs(irr_in, lmax, ref.weight_numel, n)


def test_cuequivariance_path_matches_reference():
    """The cuEquivariance kernels' descriptor, run by its plain-PyTorch method on the CPU."""
    n = 6
    ref, fast, (xs, sh, w, center, neighbor) = _cueq_pair(2, n)
    a, b = ref(xs, sh, w, center, neighbor, n), fast(xs, sh, w, center, neighbor, n)
    for l in a:
        torch.testing.assert_close(b[l], a[l], atol=1e-12, rtol=1e-12)


def _grads(out: dict, inputs: list) -> list:
    probe = sum(((l + 1) * torch.sin(out[l])).sum() for l in out)  # a nonlinear function of every output
    return torch.autograd.grad(probe, inputs)


def test_layouts_agree_with_gradients_and_lonely_atoms():
    """Edge-by-edge and atom-by-atom (padded) sums give the same outputs and gradients, also for
    atoms without neighbours and for a graph without edges."""
    torch.manual_seed(3)
    irr_in, irr_out, lmax = Irreps.parse("4x0e+3x1e+2x2e+1x3e"), Irreps.parse("4x0e+2x1e+2x2e+1x3e"), 3
    tp = ChannelwiseTensorProduct(irr_in, lmax, irr_out).double()
    n = 9
    for n_edges in (25, 0):
        xs, sh, w, center, neighbor = _random_inputs(irr_in, lmax, tp.weight_numel, n, n_edges)
        center = center % 6  # atoms 6, 7, 8 have no neighbours
        inputs = [*xs.values(), sh.requires_grad_(), w.requires_grad_()]
        for t in xs.values():
            t.requires_grad_()
        results = []
        for layout in ("edges", "padded"):
            tp.layout = layout
            out = tp(xs, sh, w, center, neighbor, n)
            results.append((out, _grads(out, inputs) if n_edges else []))
        (a, ga), (b, gb) = results
        for l in a:
            torch.testing.assert_close(b[l], a[l], atol=1e-12, rtol=1e-12)
        for x, y in zip(ga, gb):
            torch.testing.assert_close(y, x, atol=1e-12, rtol=1e-12)


def test_cuequivariance_lean_convolution_matches_reference():
    """convolve_lean (weights recomputed from the radial MLP's last hidden layer in the backward
    pass, edges in chunks) gives the reference's outputs and gradients."""
    n = 6
    ref, fast, (xs, sh, _w, center, neighbor) = _cueq_pair(4, n)
    hidden = torch.randn(sh.shape[0], 5, dtype=torch.float64, requires_grad=True)
    last = torch.randn(5, ref.weight_numel, dtype=torch.float64)
    for t in xs.values():
        t.requires_grad_()
    inputs = [*xs.values(), sh.requires_grad_(), hidden]
    a = ref(xs, sh, hidden @ last, center, neighbor, n)
    b = fast.convolve_lean(xs, sh, hidden, last, center, neighbor, n, chunk=7)
    for l in a:
        torch.testing.assert_close(b[l], a[l], atol=1e-12, rtol=1e-12)
    for x, y in zip(_grads(a, inputs), _grads(b, inputs)):
        torch.testing.assert_close(y, x, atol=1e-12, rtol=1e-12)
