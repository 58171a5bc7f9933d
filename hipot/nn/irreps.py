"""Irreps of SO(3) and the equivariant linear map between them.

HIENet-V3 is SO(3)-only (trained with parity off), so an irreps set is just a multiplicity per
angular momentum l. Features are kept as one tensor per l, shaped (N, mul, 2l+1), which makes
every linear map one matrix product per l.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

_TERM = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*([eo]?)\s*$")


@dataclass(frozen=True)
class Irreps:
    """Multiplicity per l, with l ascending and each l once."""

    terms: tuple[tuple[int, int], ...]  # ((l, mul), ...)

    @classmethod
    def parse(cls, text: str) -> "Irreps":
        muls: dict[int, int] = {}
        for part in text.split("+"):
            m = _TERM.match(part)
            if not m:
                raise ValueError(f"cannot parse irreps term {part!r} in {text!r} (expected e.g. '128x1e')")
            mul, l, parity = int(m.group(1)), int(m.group(2)), m.group(3)
            if parity == "o":
                raise ValueError(f"odd-parity irreps are not supported ({text!r}): HIENet is SO(3)-only")
            muls[l] = muls.get(l, 0) + mul
        return cls.from_muls(muls)

    @classmethod
    def from_muls(cls, muls: dict[int, int]) -> "Irreps":
        return cls(tuple(sorted((l, m) for l, m in muls.items() if m > 0)))

    @property
    def ls(self) -> list[int]:
        return [l for l, _ in self.terms]

    @property
    def lmax(self) -> int:
        return max(self.ls)

    def mul(self, l: int) -> int:
        return dict(self.terms).get(l, 0)

    @property
    def dim(self) -> int:
        return sum(m * (2 * l + 1) for l, m in self.terms)

    def __str__(self) -> str:
        return "+".join(f"{m}x{l}e" for l, m in self.terms)


class EquivariantLinear(nn.Module):
    """Channel mixing within each l, no bias: y_l = x_l W_l / sqrt(mul_in_l).

    The 1/sqrt(fan-in) factor is e3nn's normalisation; weights are stored unscaled so that
    a standard-normal initialisation keeps activations of unit variance.
    """

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps):
        super().__init__()
        self.irreps_in = irreps_in
        self.irreps_out = irreps_out
        # Outputs with no input of their l are identically zero and left out of the result.
        self.ls = [l for l in irreps_out.ls if irreps_in.mul(l) > 0]
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(irreps_in.mul(l), irreps_out.mul(l))) for l in self.ls]
        )
        self.norms = [1.0 / math.sqrt(irreps_in.mul(l)) for l in self.ls]

    def forward(self, xs: dict[int, Tensor]) -> dict[int, Tensor]:
        out: dict[int, Tensor] = {}
        for l, w, c in zip(self.ls, self.weights, self.norms):
            out[l] = torch.einsum("num,uv->nvm", xs[l], w * c)
        return out
