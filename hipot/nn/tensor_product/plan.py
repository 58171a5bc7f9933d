"""The plan of a channel-wise ('uvu') tensor product, apart from any kernel that executes it.

For every path (l1 of the features, l2 of the harmonics, l3 of the output) allowed by the
triangle rule, each channel u of x_{l1} is coupled with Y_{l2} through the Clebsch-Gordan
coefficients and scaled by its own per-edge weight:

    out_{l3}[e, u, k] = sqrt(2 l3 + 1) * w_path[e, u] * sum_ij C[i, j, k] x_{l1}[e, u, i] Y_{l2}[e, j]

C is e3nn's real, unit-Frobenius-norm Wigner 3j symbol, which together with e3nn's spherical
harmonics fixes the basis; the sqrt(2 l3 + 1) factor is e3nn's 'component' normalisation. The
per-l3 output concatenates the paths' channels in path order, and the flat weight vector holds
one block of mul_{l1} weights per path, in path order. This is the layout of e3nn's
TensorProduct with the same instruction order, so a checkpoint trained with e3nn maps onto it.

Every kernel (`edges`, `padded`, `cueq`) executes the same plan with the same weight layout; the
coefficients are computed here once, in float64, and shared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from e3nn.o3 import wigner_3j
from torch import Tensor

from ..irreps import Irreps


@dataclass(frozen=True)
class Path:
    l1: int
    l2: int
    l3: int
    mul: int  # channels of the input (and output) of this path
    weight_offset: int  # start of this path's weights in the flat per-edge weight vector


@dataclass(frozen=True)
class PathGroup:
    """The paths that share an input l1: kernels contract the harmonics with all their
    Clebsch-Gordan blocks at once."""

    l1: int
    mul: int
    weight_offset: int  # first weight of the group's first path
    paths: tuple[Path, ...]

    @property
    def num_weights(self) -> int:
        return self.mul * len(self.paths)

    @property
    def widths(self) -> list[int]:
        """2 l3 + 1 of each path: its columns in the group's coefficient table."""
        return [2 * p.l3 + 1 for p in self.paths]


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


def cg_block(p: Path) -> Tensor:
    """(2l1+1, 2l2+1, 2l3+1) coefficients of one path, normalisation included (float64)."""
    return wigner_3j(p.l1, p.l2, p.l3, dtype=torch.float64) * math.sqrt(2 * p.l3 + 1)


class ChannelwisePlan:
    """Paths, groups, output irreps and the coefficient tables of one channel-wise product.

    A plain object, not a module: kernels hold it, and its float64 tables are cast to a kernel's
    inputs on use (cached per dtype and device), so no `.to(dtype)` ever rounds them."""

    def __init__(self, irreps_in: Irreps, sh_lmax: int, irreps_out: Irreps):
        self.irreps_in = irreps_in
        self.sh_lmax = sh_lmax
        self.paths = uvu_paths(irreps_in, sh_lmax, irreps_out)
        mid: dict[int, int] = {}
        for p in self.paths:
            mid[p.l3] = mid.get(p.l3, 0) + p.mul
        self.irreps_mid = Irreps.from_muls(mid)
        self.weight_numel = sum(p.mul for p in self.paths)
        self.groups = [PathGroup(l1, mul, ps[0].weight_offset, tuple(ps))
                       for l1, mul in irreps_in.terms if (ps := [p for p in self.paths if p.l1 == l1])]
        sh_dim = (sh_lmax + 1) ** 2
        # per group: Y[e, i, (p, k)] = sum_j Y_all[e, j] C_p[i, j, k] as one (sh_dim, (2l1+1) cols) matrix
        self._tables: list[Tensor] = []
        for g in self.groups:
            cg = torch.zeros(sh_dim, 2 * g.l1 + 1, sum(g.widths), dtype=torch.float64)
            c0 = 0
            for p, d3 in zip(g.paths, g.widths):
                cg[p.l2 ** 2 : (p.l2 + 1) ** 2, :, c0 : c0 + d3] = cg_block(p).permute(1, 0, 2)
                c0 += d3
            self._tables.append(cg.reshape(sh_dim, -1))
        self._cast: dict[tuple, Tensor] = {}

    def harmonics_table(self, group: int, like: Tensor) -> Tensor:
        """The group's (sh_dim, (2l1+1) * sum of widths) table in `like`'s dtype and device."""
        key = (group, like.dtype, like.device)
        if key not in self._cast:
            self._cast[key] = self._tables[group].to(device=like.device, dtype=like.dtype)
        return self._cast[key]

    def split_weights(self, weight: Tensor) -> list[Tensor]:
        """The flat (E, weight_numel) weights as one (E, mul * paths) block per group. split(),
        not slicing: the backward of a split is one cat, while every slice's backward would fill
        a zero tensor of the whole weight width."""
        return list(weight.split([g.num_weights for g in self.groups], dim=1))

    @staticmethod
    def by_l3(parts: dict[int, list[Tensor]]) -> dict[int, Tensor]:
        """e3nn's output order: for each l3, the paths' channels in path order (l1 ascending)."""
        return {l: torch.cat(v, dim=1) if len(v) > 1 else v[0].contiguous() for l, v in sorted(parts.items())}
