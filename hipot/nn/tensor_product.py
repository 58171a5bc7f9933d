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
    out_offset: int  # start of this path's channels within the l3 output


def uvu_paths(irreps_in: Irreps, sh_lmax: int, irreps_out: Irreps) -> list[Path]:
    """Paths in e3nn's instruction order: input l1, then harmonic l2, then l3 ascending."""
    paths: list[Path] = []
    w_off = 0
    out_off: dict[int, int] = {}
    for l1, mul in irreps_in.terms:
        for l2 in range(sh_lmax + 1):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                if irreps_out.mul(l3) == 0:
                    continue
                paths.append(Path(l1, l2, l3, mul, w_off, out_off.get(l3, 0)))
                w_off += mul
                out_off[l3] = out_off.get(l3, 0) + mul
    return paths


class ChannelwiseTensorProduct(nn.Module):
    """Reference implementation (plain PyTorch, any device) of the 'uvu' product above."""

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
        for k, p in enumerate(self.paths):
            cg = wigner_3j(p.l1, p.l2, p.l3, dtype=torch.float64) * math.sqrt(2 * p.l3 + 1)
            self.register_buffer(f"cg_{k}", cg.to(torch.get_default_dtype()), persistent=False)

    def forward(self, xs: dict[int, Tensor], sh: list[Tensor], weight: Tensor) -> dict[int, Tensor]:
        """xs[l1]: (E, mul, 2l1+1) features of the sending atoms; sh[l2]: (E, 2l2+1); weight: (E, numel)."""
        parts: dict[int, list[Tensor]] = {}
        for k, p in enumerate(self.paths):
            cg = getattr(self, f"cg_{k}")
            y = torch.einsum("ej,ijk->eik", sh[p.l2], cg)  # (E, 2l1+1, 2l3+1)
            out = torch.einsum("eui,eik->euk", xs[p.l1], y)
            w = weight[:, p.weight_offset : p.weight_offset + p.mul]
            parts.setdefault(p.l3, []).append(out * w.unsqueeze(-1))
        return {l: torch.cat(parts[l], dim=1) if len(parts[l]) > 1 else parts[l][0] for l in sorted(parts)}
