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

import torch
from e3nn.o3 import wigner_3j
from torch import Tensor, nn

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
    Each path then scales the small gathered input x_j (E, mul, 2l1+1) by its weights, contracts it
    with its columns of Y and sums the result straight onto the atoms; per-edge tensors of the
    whole output width are never formed.
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
        summed: list[Tensor] = []
        for gi, (l1, mul, w_off, n_paths) in enumerate(self.groups):
            cg = self._cg(gi, sh)
            n_edges = sh.shape[0]  # explicit sizes: -1 is ambiguous when there are no edges
            y = (sh @ cg).view(n_edges, 2 * l1 + 1, cg.shape[1] // (2 * l1 + 1))  # (E, 2l1+1, cols)
            x = torch.index_select(xs[l1], 0, neighbor)  # (E, mul, 2l1+1)
            w = weight[:, w_off : w_off + n_paths * mul].view(n_edges, n_paths, mul)
            # Scale the small (E, mul, 2l1+1) input by each path's weights, then contract with
            # that path's columns: no (E, mul, cols) copy of the weights is ever made.
            out = torch.zeros((num_nodes, mul, y.shape[2]), dtype=y.dtype, device=y.device)
            for k, (c0, d3) in enumerate(self.group_columns[gi]):
                if l1 == 0:  # an outer product: cheaper as a broadcast than as a matrix product
                    part = (x[:, :, 0] * w[:, k, :]).unsqueeze(-1) * y[:, 0, c0 : c0 + d3].unsqueeze(1)
                else:
                    part = torch.bmm(x * w[:, k, :, None], y[:, :, c0 : c0 + d3])  # (E, mul, 2l3+1)
                out[:, :, c0 : c0 + d3].index_add_(0, center, part)
            summed.append(out)
        parts: dict[int, list[Tensor]] = {}
        for p, (gi, c0, d3) in zip(self.paths, self.columns):
            parts.setdefault(p.l3, []).append(summed[gi][:, :, c0 : c0 + d3])
        return {l: torch.cat(parts[l], dim=1) if len(parts[l]) > 1 else parts[l][0] for l in sorted(parts)}


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
            self.out_slices.append(slices)

    def forward(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                num_nodes: int) -> dict[int, Tensor]:
        out_like = torch.empty((num_nodes, 1), device=sh.device, dtype=sh.dtype)
        pieces: dict[int, list[tuple[int, Tensor]]] = {}
        for poly, slices, (l1, mul, w_off, n_paths) in zip(self.polys, self.out_slices, self.groups):
            x = xs[l1].transpose(1, 2).reshape(num_nodes, -1)  # (2l1+1, mul) blocks: cuEquivariance's ir_mul
            w = weight[:, w_off : w_off + n_paths * mul]
            [out] = poly([w, x, sh], input_indices={1: neighbor}, output_shapes={0: out_like},
                         output_indices={0: center})
            for l3, mid_off, start, m in slices:
                block = out[:, start : start + (2 * l3 + 1) * m].view(num_nodes, 2 * l3 + 1, m).transpose(1, 2)
                pieces.setdefault(l3, []).append((mid_off, block))
        result = {}
        for l3 in sorted(pieces):
            blocks = [b for _, b in sorted(pieces[l3], key=lambda t: t[0])]
            result[l3] = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0].contiguous()
        return result
