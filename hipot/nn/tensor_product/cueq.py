"""The cuEquivariance kernel: product, gather and neighbour sum fused in NVIDIA's CUDA kernels
(on a CPU, cuEquivariance's plain-PyTorch "naive" method runs the same descriptors: tests).

cuEquivariance's "uniform_1d" CUDA kernel needs every segment of an operand to have the same
number of channels, which HIENet's irreps (512/128/64/32 channels) do not; each input l1 (one
PathGroup) is therefore its own polynomial, in which they do.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...execution import ExecutionOptions
from .base import TensorProductKernel
from .plan import ChannelwisePlan, cg_block


def cuequivariance_available(kernels: bool = True) -> bool:
    """Whether cuEquivariance is installed; with `kernels`, also its CUDA kernels (without them it
    silently falls back to slow plain-PyTorch code)."""
    try:
        import cuequivariance  # noqa: F401
        import cuequivariance_torch  # noqa: F401

        if kernels:
            import cuequivariance_ops_torch  # noqa: F401
    except ImportError:
        return False
    return True


class CueqKernel(TensorProductKernel):
    """The plan as one cuEquivariance polynomial per PathGroup, and each polynomial's
    vector-Jacobian product for the inference path that keeps the radial hidden layer."""

    name = "cueq"

    def __init__(self, plan: ChannelwisePlan, method: str = "uniform_1d"):
        super().__init__(plan)
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        self.method = method
        self.polys = nn.ModuleList()
        self.vjps = nn.ModuleList()
        self.out_dims: list[int] = []
        self.out_slices: list[list[tuple[int, int, int, int]]] = []  # per group: (l3, out channel offset, start, mul)
        mid_offset: dict[int, int] = {}
        for group in plan.groups:
            l1, mul = group.l1, group.mul
            d = cue.SegmentedTensorProduct.from_subscripts("u,iu,j,ku+ijk")
            d.add_segment(1, (2 * l1 + 1, mul))
            for l2 in range(plan.sh_lmax + 1):
                d.add_segment(2, (2 * l2 + 1,))
            slices = []
            start = 0
            for p in group.paths:
                w_seg = d.add_segment(0, (mul,))
                o_seg = d.add_segment(3, (2 * p.l3 + 1, mul))
                d.add_path(w_seg, 0, p.l2, o_seg, c=cg_block(p).numpy())
                slices.append((p.l3, mid_offset.get(p.l3, 0), start, mul))
                mid_offset[p.l3] = mid_offset.get(p.l3, 0) + mul
                start += (2 * p.l3 + 1) * mul
            # the CUDA kernels need one channel mode per segment: the Clebsch-Gordan modes flattened
            # into paths (thousands); the plain-PyTorch method takes the descriptor as it is, which
            # builds minutes faster on a CPU (tests)
            if method != "naive":
                d = d.flatten_coefficient_modes()
            poly = cue.SegmentedPolynomial.eval_last_operand(d)
            self.polys.append(cuet.SegmentedPolynomial(poly, method=method))
            # its vector-Jacobian product, (w, x, Y, d out) -> (dw, dx, dY)
            vjp, _ = poly.backward([True, True, True], [True])
            self.vjps.append(cuet.SegmentedPolynomial(vjp, method=method))
            self.out_dims.append(start)
            self.out_slices.append(slices)
        # cuEquivariance keeps its descriptors' tables as buffers: derived data, not weights, so
        # they stay out of the state dict (which must not depend on the kernel)
        for m in self.modules():
            m._non_persistent_buffers_set.update(m._buffers.keys())

    def convolve(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                 num_nodes: int) -> dict[int, Tensor]:
        if sh.shape[0] == 0:  # cuEquivariance wants at least one edge
            return self._assemble([sh.new_zeros((num_nodes, d)) for d in self.out_dims], num_nodes)
        out_like = torch.empty((num_nodes, 1), device=sh.device, dtype=sh.dtype)
        outs = []
        for poly, group, w in zip(self.polys, self.plan.groups, self.plan.split_weights(weight)):
            [out] = poly([w, _ir_mul(xs[group.l1]), sh], input_indices={1: neighbor}, output_shapes={0: out_like},
                         output_indices={0: center})
            outs.append(out)
        return self._assemble(outs, num_nodes)

    def forward(self, xs: dict[int, Tensor], sh: Tensor, hidden: Tensor, last: Tensor, center: Tensor,
                neighbor: Tensor, num_nodes: int, options: ExecutionOptions) -> dict[int, Tensor]:
        """With `options.keep_radial_hidden`, only `hidden` (64 numbers per edge) is kept for the
        backward pass instead of the weights (thousands per edge): the backward recomputes them,
        one matrix product, and calls the product's vector-Jacobian polynomial directly, so the
        tensor product itself is not run again. Edges go in chunks of `options.edge_chunk`, which
        bounds the per-edge weights alive at once: large, since on an H100 chunks of 2^15 edges
        made a 4,096-atom step 70 % slower than one chunk (benchmarks/RESULTS.md). First
        derivatives only."""
        if not options.keep_radial_hidden:
            return super().forward(xs, sh, hidden, last, center, neighbor, num_nodes, options)
        outs = []
        for poly, vjp, dim, group, w_last in zip(self.polys, self.vjps, self.out_dims, self.plan.groups,
                                                 self.plan.split_weights(last)):
            outs.append(_KeepHiddenConvolution.apply(hidden, w_last, _ir_mul(xs[group.l1]), sh, center, neighbor,
                                                     num_nodes, dim, poly, vjp, options.edge_chunk))
        return self._assemble(outs, num_nodes)

    def _assemble(self, outs: list[Tensor], num_nodes: int) -> dict[int, Tensor]:
        pieces: dict[int, list[tuple[int, Tensor]]] = {}
        for out, slices in zip(outs, self.out_slices):
            for l3, mid_off, start, m in slices:
                block = out[:, start : start + (2 * l3 + 1) * m].view(num_nodes, 2 * l3 + 1, m).transpose(1, 2)
                pieces.setdefault(l3, []).append((mid_off, block))
        result = {}
        for l3 in sorted(pieces):
            blocks = [b for _, b in sorted(pieces[l3], key=lambda t: t[0])]
            result[l3] = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0].contiguous()
        return result


def _ir_mul(x: Tensor) -> Tensor:
    """(N, mul, 2l+1) -> (N, (2l+1) mul): cuEquivariance's ir_mul order."""
    return x.transpose(1, 2).reshape(x.shape[0], -1)


class _KeepHiddenConvolution(torch.autograd.Function):
    """sum_j TP(x_j, Y_ij, hidden_ij @ last) onto atom i, saving `hidden` instead of the weights."""

    @staticmethod
    def forward(ctx, hidden, last, x, sh, center, neighbor, num_nodes, out_dim, poly, vjp, chunk):
        out_like = torch.empty((num_nodes, 1), device=sh.device, dtype=sh.dtype)
        out = None  # built from the chunks' results, no zero-filled start (kernels count at small sizes)
        for s in range(0, sh.shape[0], chunk):
            e = slice(s, s + chunk)
            [part] = poly([hidden[e] @ last, x, sh[e]], input_indices={1: neighbor[e]},
                          output_shapes={0: out_like}, output_indices={0: center[e]})
            out = part if out is None else out + part
        ctx.save_for_backward(hidden, last, x, sh, center, neighbor)
        ctx.vjp, ctx.chunk = vjp, chunk
        return sh.new_zeros((num_nodes, out_dim)) if out is None else out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        hidden, last, x, sh, center, neighbor = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_hidden, grad_sh, grad_x, grad_last = [], [], None, None
        for s in range(0, sh.shape[0], ctx.chunk):
            e = slice(s, s + ctx.chunk)
            w = hidden[e] @ last
            d_w, d_x, d_sh = ctx.vjp([w, x, sh[e], grad_out], input_indices={1: neighbor[e], 3: center[e]},
                                     output_shapes={0: w, 1: x, 2: sh[e]}, output_indices={1: neighbor[e]})
            grad_hidden.append(d_w @ last.T)
            grad_sh.append(d_sh)
            grad_x = d_x if grad_x is None else grad_x + d_x
            if ctx.needs_input_grad[1]:
                g_last = hidden[e].T @ d_w
                grad_last = g_last if grad_last is None else grad_last + g_last
        if grad_x is None:  # no edges
            return torch.zeros_like(hidden), None, torch.zeros_like(x), torch.zeros_like(sh), *([None] * 7)
        grad_hidden = torch.cat(grad_hidden) if len(grad_hidden) > 1 else grad_hidden[0]
        grad_sh = torch.cat(grad_sh) if len(grad_sh) > 1 else grad_sh[0]
        return grad_hidden, grad_last, grad_x, grad_sh, None, None, None, None, None, None, None
