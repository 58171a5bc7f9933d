"""The edge-by-edge kernel in plain PyTorch: per-edge messages summed onto atoms by index_add.
Any device; the choice on a GPU without cuEquivariance (no host syncs, CUDA-graph friendly)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import TensorProductKernel


class EdgeKernel(TensorProductKernel):
    """Paths sharing an input l1 are done together: the harmonics are contracted with all their
    Clebsch-Gordan blocks in one matrix product, Y[e, i, (p, k)] = sum_j Y_all[e, j] C_p[i, j, k].
    Each path then scales the small gathered input x_j (2l1+1 components, mul channels) by its
    weights and contracts it with its columns of Y: no (E, mul, cols) copy of the weights is made."""

    name = "edges"

    def convolve(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                 num_nodes: int) -> dict[int, Tensor]:
        plan = self.plan
        n_edges = sh.shape[0]  # explicit sizes: -1 is ambiguous when there are no edges
        parts: dict[int, list[Tensor]] = {}
        for gi, (group, weights) in enumerate(zip(plan.groups, plan.split_weights(weight))):
            l1, mul = group.l1, group.mul
            cg = plan.harmonics_table(gi, sh)
            y = (sh @ cg).view(n_edges, 2 * l1 + 1, cg.shape[1] // (2 * l1 + 1))  # (E, 2l1+1, cols)
            x = torch.index_select(xs[l1], 0, neighbor)  # (E, mul, 2l1+1)
            if l1 == 0:
                x = x.squeeze(-1)
            # Each path sums into its own contiguous (N, mul, 2l3+1) tensor (index_add into a
            # strided view is slow).
            for w, y_p in zip(weights.split(mul, dim=1), y.split(group.widths, dim=2)):
                if l1 == 0:  # an outer product: cheaper as a broadcast than as a matrix product
                    part = (x * w).unsqueeze(-1) * y_p
                else:
                    part = torch.bmm(x * w.unsqueeze(-1), y_p)  # (E, mul, 2l3+1)
                out = torch.zeros((num_nodes, mul, y_p.shape[2]), dtype=y.dtype, device=y.device)
                parts.setdefault((y_p.shape[2] - 1) // 2, []).append(out.index_add_(0, center, part))
        return plan.by_l3(parts)
