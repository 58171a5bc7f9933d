"""Channel-wise ('uvu') tensor product of node features with spherical harmonics.

For every path (l1 of the features, l2 of the harmonics, l3 of the output) allowed by the
triangle rule, each channel u of x_{l1} is coupled with Y_{l2} through the Clebsch-Gordan
coefficients and scaled by its own per-edge weight:

    out_{l3}[e, u, k] = sqrt(2 l3 + 1) * w_path[e, u] * sum_ij C[i, j, k] x_{l1}[e, u, i] Y_{l2}[e, j]

C is e3nn's real, unit-Frobenius-norm Wigner 3j symbol, which together with e3nn's spherical
harmonics fixes the basis; the sqrt(2 l3 + 1) factor is e3nn's 'component' normalisation. The
per-l3 output concatenates the paths' channels in path order, and the flat weight vector holds
one block of mul_{l1} weights per path, in path order. This is the layout of e3nn's
TensorProduct with the same instruction order, so a checkpoint trained with e3nn maps onto it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from e3nn.o3 import wigner_3j
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .irreps import Irreps


@dataclass(frozen=True)
class Path:
    l1: int
    l2: int
    l3: int
    mul: int  # channels of the input (and output) of this path
    weight_offset: int  # start of this path's weights in the flat per-edge weight vector


def uvu_paths(irreps_in: Irreps, sh_lmax: int, irreps_out: Irreps) -> list[Path]:
    """Paths in e3nn's instruction order: input l1, then harmonic l2, then l3 ascending."""
    paths: list[Path] = []
    w_off = 0
    for l1, mul in irreps_in.terms:
        for l2 in range(sh_lmax + 1):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                if irreps_out.mul(l3) == 0:
                    continue
                paths.append(Path(l1, l2, l3, mul, w_off))
                w_off += mul
    return paths


class ChannelwiseTensorProduct(nn.Module):
    """Reference implementation (plain PyTorch, any device) of the 'uvu' product above, fused
    with the sum of messages over each atom's neighbours.

    Paths sharing an input l1 are done together: the harmonics are contracted with all their
    Clebsch-Gordan blocks in one matrix product, Y[e, i, (p, k)] = sum_j Y_all[e, j] C_p[i, j, k].
    Each path then scales the small gathered input x_j (2l1+1 components, mul channels) by its
    weights and contracts it with its columns of Y. Two layouts do the sum over neighbours:
    'edges' (per-edge messages summed by index_add; a GPU's choice) and 'padded' (each atom's
    edges in slots, the sum a batched matrix product; a CPU's choice, several times faster there).
    """

    def __init__(self, irreps_in: Irreps, sh_lmax: int, irreps_out: Irreps):
        super().__init__()
        self.irreps_in = irreps_in
        self.sh_lmax = sh_lmax
        self.paths = uvu_paths(irreps_in, sh_lmax, irreps_out)
        mid: dict[int, int] = {}
        for p in self.paths:
            mid[p.l3] = mid.get(p.l3, 0) + p.mul
        self.irreps_mid = Irreps.from_muls(mid)
        self.weight_numel = sum(p.mul for p in self.paths)
        sh_dim = (sh_lmax + 1) ** 2
        self.cg_tables: list[Tensor] = []  # float64 masters
        self.group_columns: list[list[tuple[int, int]]] = []  # per group: (first column, width) per path
        self._cg_cache: dict[tuple, Tensor] = {}
        self.groups: list[tuple[int, int, int, int]] = []  # (l1, mul, weight offset, number of paths)
        self.layout = "auto"  # 'edges', 'padded' or 'auto' (padded on a CPU): see forward
        self.columns: list[tuple[int, int, int]] = []  # per path: (group, first column, 2 l3 + 1)
        for g, (l1, mul) in enumerate(irreps_in.terms):
            paths = [p for p in self.paths if p.l1 == l1]
            if not paths:
                continue
            cols = sum(2 * p.l3 + 1 for p in paths)
            cg = torch.zeros(sh_dim, 2 * l1 + 1, cols, dtype=torch.float64)
            c0 = 0
            for k, p in enumerate(paths):
                d3 = 2 * p.l3 + 1
                block = wigner_3j(p.l1, p.l2, p.l3, dtype=torch.float64) * math.sqrt(d3)  # (i, j, k)
                cg[p.l2 ** 2 : (p.l2 + 1) ** 2, :, c0 : c0 + d3] = block.permute(1, 0, 2)
                self.columns.append((len(self.groups), c0, d3))
                c0 += d3
            gi = len(self.groups)
            # Kept in float64 (module.to(dtype) would round them): cast to the input's dtype on use.
            self.cg_tables.append(cg.reshape(sh_dim, -1))
            self.group_columns.append([(c, d) for g, c, d in self.columns if g == gi])
            self.groups.append((l1, mul, paths[0].weight_offset, len(paths)))

    def _cg(self, gi: int, like: Tensor) -> Tensor:
        key = (gi, like.dtype, like.device)
        if key not in self._cg_cache:
            self._cg_cache[key] = self.cg_tables[gi].to(device=like.device, dtype=like.dtype)
        return self._cg_cache[key]

    def forward(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                num_nodes: int) -> dict[int, Tensor]:
        """xs[l1]: (N, mul, 2l1+1) node features; sh: (E, (lmax+1)^2) harmonics of the edge vectors;
        weight: (E, weight_numel). Returns sum over edges (i <- j) of TP(x_j, Y_ij, w_ij) on atom i."""
        layout = self.layout
        if layout == "auto":
            # The padded layout needs the largest neighbour count on the host (a sync, and a shape
            # CUDA graphs cannot capture); on a GPU, atomic sums over edges are cheap anyway.
            layout = "padded" if sh.device.type == "cpu" else "edges"
        if layout == "padded":
            return self._forward_padded(xs, sh, weight, center, neighbor, num_nodes)
        return self._forward_edges(xs, sh, weight, center, neighbor, num_nodes)

    def _forward_edges(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor,
                       neighbor: Tensor, num_nodes: int) -> dict[int, Tensor]:
        """Edge by edge: each path's (E, mul, 2l3+1) messages summed onto the atoms by index_add."""
        # split(), not slicing: the backward of a split is one cat, while every slice's backward
        # would fill a zero tensor of the whole weight (or harmonics) width.
        n_edges = sh.shape[0]  # explicit sizes: -1 is ambiguous when there are no edges
        weights = weight.split([n_paths * mul for _, mul, _, n_paths in self.groups], dim=1)
        parts: dict[int, list[Tensor]] = {}
        for gi, (l1, mul, _w_off, _n_paths) in enumerate(self.groups):
            cg = self._cg(gi, sh)
            y = (sh @ cg).view(n_edges, 2 * l1 + 1, cg.shape[1] // (2 * l1 + 1))  # (E, 2l1+1, cols)
            ys = y.split([d3 for _, d3 in self.group_columns[gi]], dim=2)
            x = torch.index_select(xs[l1], 0, neighbor)  # (E, mul, 2l1+1)
            if l1 == 0:
                x = x.squeeze(-1)
            # Scale the small (E, mul, 2l1+1) input by each path's weights, then contract with that
            # path's columns: no (E, mul, cols) copy of the weights is ever made. Each path sums
            # into its own contiguous (N, mul, 2l3+1) tensor (index_add into a strided view is slow).
            for w, y_p in zip(weights[gi].split(mul, dim=1), ys):
                if l1 == 0:  # an outer product: cheaper as a broadcast than as a matrix product
                    part = (x * w).unsqueeze(-1) * y_p
                else:
                    part = torch.bmm(x * w.unsqueeze(-1), y_p)  # (E, mul, 2l3+1)
                out = torch.zeros((num_nodes, mul, y_p.shape[2]), dtype=y.dtype, device=y.device)
                parts.setdefault((y_p.shape[2] - 1) // 2, []).append(out.index_add_(0, center, part))
        return self._by_l3(parts)

    def _forward_padded(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor,
                        neighbor: Tensor, num_nodes: int, last: Tensor | None = None,
                        recompute: bool = False) -> dict[int, Tensor]:
        """Atom by atom: the edges of a run of atoms are laid out as (atoms, K) slots, K the run's
        largest neighbour count, so that each atom's sum over its neighbours and over the input's
        2l1+1 components is one matrix product, (2l3+1, K(2l1+1)) @ (K(2l1+1), mul), batched over
        atoms. No per-edge message tensor is formed, and the products are large enough for a
        CPU's GEMM. Runs group atoms of similar neighbour counts (little padding).

        With `last`, `weight` is the radial MLP's last hidden layer and the weights are
        `weight @ last`; with `recompute`, each run's activations are recomputed in the backward
        pass instead of being kept (inference: memory of a few numbers per edge)."""
        xs_t = [xs[l1].transpose(1, 2) for l1, *_ in self.groups]  # (N, 2l1+1, mul): channels last
        parts: dict[tuple[int, int], list[Tensor]] = {}
        order: list[Tensor] = []
        for atoms, slots, k in atom_runs(center, num_nodes):
            order.append(atoms)
            args = (slots, sh, weight, neighbor, *xs_t) if last is None else (slots, sh, weight, neighbor, last, *xs_t)
            run = partial(self._padded_run, atoms.numel(), k, last is not None)
            outs = checkpoint(run, *args, use_reentrant=False) if recompute else run(*args)
            for key, out in zip(((gi, p) for gi in range(len(self.groups))
                                 for p in range(len(self.group_columns[gi]))), outs):
                parts.setdefault(key, []).append(out)
        # back to the atoms' order
        inverse = torch.empty(num_nodes, dtype=torch.long, device=center.device)
        inverse[torch.cat(order)] = torch.arange(num_nodes, device=center.device)
        by_l3: dict[int, list[Tensor]] = {}
        for (gi, p), runs in parts.items():
            out = torch.cat(runs) if len(runs) > 1 else runs[0]
            d3 = self.group_columns[gi][p][1]
            by_l3.setdefault((d3 - 1) // 2, []).append(torch.index_select(out, 0, inverse))
        return self._by_l3(by_l3)

    def _padded_run(self, n: int, k: int, has_last: bool, slots: Tensor, sh: Tensor, weight: Tensor,
                    neighbor: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        """One run of `n` atoms with `k` slots each: (n, mul, 2l3+1) outputs per group and path."""
        last, xs_t = (rest[0], rest[1:]) if has_last else (None, rest)
        n_edges = sh.shape[0]
        # Empty slots read edge 0's weights and neighbour; their harmonics are zero, which zeroes
        # their contribution and their gradients.
        first = slots.clamp(max=max(n_edges - 1, 0))
        sh_pad = torch.index_select(sh, 0, first).masked_fill((slots == n_edges).unsqueeze(-1), 0.0)
        w_pad = torch.index_select(weight, 0, first)
        if last is not None:
            w_pad = w_pad @ last
        nb_pad = torch.index_select(neighbor, 0, first)
        weights = w_pad.split([n_paths * mul for _, mul, _, n_paths in self.groups], dim=1)
        outs = []
        for gi, (l1, mul, _w_off, _n_paths) in enumerate(self.groups):
            d1 = 2 * l1 + 1
            cg = self._cg(gi, sh)
            y = (sh_pad @ cg).view(n, k, d1, cg.shape[1] // d1)
            x = torch.index_select(xs_t[gi], 0, nb_pad)  # (n K, 2l1+1, mul)
            d3s = [d3 for _, d3 in self.group_columns[gi]]
            for w, y_p in zip(weights[gi].split(mul, dim=1), y.split(d3s, dim=3)):
                a = (x * w.unsqueeze(1)).view(n, k * d1, mul)
                yt = y_p.reshape(n, k * d1, y_p.shape[3]).transpose(1, 2)  # (n, 2l3+1, K(2l1+1))
                outs.append(torch.bmm(yt, a).transpose(1, 2))  # (n, mul, 2l3+1)
        return tuple(outs)

    def convolve_lean(self, xs: dict[int, Tensor], sh: Tensor, hidden: Tensor, last: Tensor, center: Tensor,
                      neighbor: Tensor, num_nodes: int, recompute: bool = False, chunk: int = 1 << 19
                      ) -> dict[int, Tensor]:
        """The product with weights `hidden @ last` (the radial MLP's last layer), for inference.
        With `recompute` on a CPU, atom runs are recomputed in the backward pass, so that no
        per-edge activation but `hidden` is kept (large graphs)."""
        if not recompute:
            return self(xs, sh, hidden @ last, center, neighbor, num_nodes)
        if sh.device.type == "cpu" and self.layout != "edges":
            return self._forward_padded(xs, sh, hidden, center, neighbor, num_nodes, last=last, recompute=True)
        # edges in chunks, each recomputed in the backward pass
        ls = sorted(xs)
        total: dict[int, Tensor] = {}
        for s in range(0, sh.shape[0], chunk):
            e = slice(s, s + chunk)
            part = checkpoint(self._lean_chunk, ls, num_nodes, sh[e], hidden[e], last, center[e], neighbor[e],
                              *(xs[l] for l in ls), use_reentrant=False)
            total = part if not total else {l: total[l] + part[l] for l in total}
        return total

    def _lean_chunk(self, ls: list[int], num_nodes: int, sh: Tensor, hidden: Tensor, last: Tensor, center: Tensor,
                    neighbor: Tensor, *xs: Tensor) -> dict[int, Tensor]:
        return self(dict(zip(ls, xs)), sh, hidden @ last, center, neighbor, num_nodes)

    @staticmethod
    def _by_l3(parts: dict[int, list[Tensor]]) -> dict[int, Tensor]:
        # e3nn's output order: for each l3, the paths' channels in path order (l1 ascending)
        return {l: torch.cat(v, dim=1) if len(v) > 1 else v[0].contiguous() for l, v in sorted(parts.items())}


def atom_runs(center: Tensor, num_nodes: int, max_slots: int = 1 << 15) -> list[tuple[Tensor, Tensor, int]]:
    """Runs of atoms, in decreasing order of neighbour count, with their edges laid out in slots.

    Each run is (atoms (n,), slots (n K,), K): K is the run's largest neighbour count and slot
    (a, k) holds the k-th edge of the run's a-th atom, or E where that atom has fewer edges. A run
    holds at most `max_slots` slots (or one atom), so padding stays small and bounded."""
    n_edges = center.numel()
    device = center.device
    counts = torch.bincount(center, minlength=num_nodes)
    by_count = torch.argsort(counts, descending=True, stable=True)
    edge_order = torch.argsort(center, stable=True)
    first = torch.cumsum(counts, 0) - counts  # first position of each atom's edges in edge_order
    counts_sorted = counts[by_count].tolist()
    runs = []
    start = 0
    while start < num_nodes:
        k = counts_sorted[start]
        n = max(1, min(num_nodes - start, max_slots // max(k, 1)))
        atoms = by_count[start : start + n]
        rank = torch.arange(k, device=device)
        valid = rank < counts[atoms].unsqueeze(1)  # (n, K)
        pos = (first[atoms].unsqueeze(1) + rank).clamp(max=max(n_edges - 1, 0))
        slots = torch.where(valid, edge_order[pos] if n_edges else pos, n_edges).reshape(-1)
        runs.append((atoms, slots, k))
        start += n
    return runs


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


class CuetChannelwiseTensorProduct(nn.Module):
    """The same product, gather and neighbour sum fused in cuEquivariance's kernels.

    Same paths, coefficients, weight layout and output as `ChannelwiseTensorProduct`, so either
    can run the same weights. cuEquivariance's "uniform_1d" CUDA kernel needs every segment of an
    operand to have the same number of channels, which HIENet's irreps (512/128/64/32 channels)
    do not; each input l1 is therefore its own polynomial, in which they do.
    """

    def __init__(self, reference: ChannelwiseTensorProduct, method: str = "uniform_1d"):
        super().__init__()
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        self.paths = reference.paths
        self.irreps_mid = reference.irreps_mid
        self.weight_numel = reference.weight_numel
        self.groups = reference.groups
        self.polys = nn.ModuleList()
        self.vjps = nn.ModuleList()
        # Edges per chunk of the lean convolution. Large: on an H100 chunks of 2^15 edges made a
        # 4,096-atom step 70 % slower than one chunk (benchmarks/RESULTS.md); 2^19 bounds the
        # per-chunk weights and their gradients to about 17 GB.
        self.lean_chunk = 1 << 19
        self.out_dims: list[int] = []
        self.out_slices: list[list[tuple[int, int, int, int]]] = []  # per group: (l3, out channel offset, start, mul)
        mid_offset: dict[int, int] = {}
        for l1, mul, _w_off, _n in reference.groups:
            d = cue.SegmentedTensorProduct.from_subscripts("u,iu,j,ku+ijk")
            d.add_segment(1, (2 * l1 + 1, mul))
            for l2 in range(reference.sh_lmax + 1):
                d.add_segment(2, (2 * l2 + 1,))
            slices = []
            start = 0
            for p in self.paths:
                if p.l1 != l1:
                    continue
                cg = (wigner_3j(p.l1, p.l2, p.l3, dtype=torch.float64) * math.sqrt(2 * p.l3 + 1)).numpy()
                w_seg = d.add_segment(0, (mul,))
                o_seg = d.add_segment(3, (2 * p.l3 + 1, mul))
                d.add_path(w_seg, 0, p.l2, o_seg, c=cg)
                slices.append((p.l3, mid_offset.get(p.l3, 0), start, mul))
                mid_offset[p.l3] = mid_offset.get(p.l3, 0) + mul
                start += (2 * p.l3 + 1) * mul
            d = d.flatten_coefficient_modes()
            poly = cue.SegmentedPolynomial.eval_last_operand(d)
            self.polys.append(cuet.SegmentedPolynomial(poly, method=method))
            # Its vector-Jacobian product, (w, x, Y, d out) -> (dw, dx, dY), for `convolve_lean`.
            vjp, _ = poly.backward([True, True, True], [True])
            self.vjps.append(cuet.SegmentedPolynomial(vjp, method=method))
            self.out_dims.append(start)
            self.out_slices.append(slices)

    def forward(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                num_nodes: int) -> dict[int, Tensor]:
        out_like = torch.empty((num_nodes, 1), device=sh.device, dtype=sh.dtype)
        outs = []
        for poly, (l1, mul, w_off, n_paths) in zip(self.polys, self.groups):
            w = weight[:, w_off : w_off + n_paths * mul]
            [out] = poly([w, self._ir_mul(xs[l1]), sh], input_indices={1: neighbor}, output_shapes={0: out_like},
                         output_indices={0: center})
            outs.append(out)
        return self._assemble(outs, num_nodes)

    def convolve_lean(self, xs: dict[int, Tensor], sh: Tensor, hidden: Tensor, last: Tensor, center: Tensor,
                      neighbor: Tensor, num_nodes: int, recompute: bool = False, chunk: int | None = None
                      ) -> dict[int, Tensor]:
        """The product with weights `hidden @ last` (the radial MLP's last layer), for inference.

        Keeps only `hidden` (64 numbers per edge) for the backward pass instead of the weights
        (thousands per edge): the backward recomputes them, one matrix product, and calls the
        product's vector-Jacobian polynomial directly, so the tensor product itself is not run
        again. Edges go in chunks of `chunk` (default `lean_chunk`), which bounds the per-edge
        weights alive at once.
        No second derivatives (training keeps the ordinary path). `recompute` is not needed here:
        nothing per edge but `hidden` is kept anyway."""
        outs = []
        chunk = chunk or self.lean_chunk
        for poly, vjp, dim, (l1, mul, w_off, n_paths) in zip(self.polys, self.vjps, self.out_dims, self.groups):
            w_last = last[:, w_off : w_off + n_paths * mul]
            outs.append(_LeanConvolution.apply(hidden, w_last, self._ir_mul(xs[l1]), sh, center, neighbor,
                                               num_nodes, dim, poly, vjp, chunk))
        return self._assemble(outs, num_nodes)

    @staticmethod
    def _ir_mul(x: Tensor) -> Tensor:
        """(N, mul, 2l+1) -> (N, (2l+1) mul): cuEquivariance's ir_mul order."""
        return x.transpose(1, 2).reshape(x.shape[0], -1)

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


class _LeanConvolution(torch.autograd.Function):
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


