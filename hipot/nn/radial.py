"""Radial basis and the smooth cutoff envelope."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


class BesselBasis(nn.Module):
    """B_n(r) = (2 / r_c) sin(w_n r) / r, with w_n initialised to n pi / r_c (trainable in HIENet)."""

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = True):
        super().__init__()
        self.prefactor = 2.0 / cutoff
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / cutoff
        self.freqs = nn.Parameter(freqs, requires_grad=trainable)

    def forward(self, r: Tensor) -> Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.freqs * r) / r


class PolynomialEnvelope(nn.Module):
    """f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = r / r_c.

    Goes to zero at r_c with p-1 continuous derivatives (DimeNet's envelope). Values past r_c
    are set to zero so that the function is usable outside the neighbour list's guarantee.
    Evaluated as (1 - x)^3 q(x): the expanded sum cancels to ~1e-7 noise in float32 near r_c,
    which a smooth model would turn into a small jump there.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = cutoff
        self.p = p
        coeffs = np.zeros(p + 3)  # ascending powers of x
        coeffs[0] = 1.0
        coeffs[p] = -(p + 1.0) * (p + 2.0) / 2.0
        coeffs[p + 1] = p * (p + 2.0)
        coeffs[p + 2] = -p * (p + 1.0) / 2.0
        q, rem = np.polynomial.polynomial.polydiv(coeffs, [1.0, -3.0, 3.0, -1.0])  # / (1 - x)^3
        assert np.allclose(rem, 0.0), "the envelope has a triple zero at x = 1"
        self.q = [float(c) for c in q]

    def forward(self, r: Tensor) -> Tensor:
        x = r / self.cutoff
        u = 1.0 - x
        qx = torch.full_like(x, self.q[-1])
        for c in reversed(self.q[:-1]):  # Horner
            qx = qx * x + c
        f = u * u * u * qx
        return torch.where(x < 1.0, f, torch.zeros_like(f))


class RadialMLP(nn.Module):
    """Bias-free MLP with e3nn's normalisation: h <- act(h W / sqrt(fan_in)), last layer linear.

    `act` is SiLU rescaled to unit second moment under a standard normal input (e3nn's
    normalize2mom), the convention the official weights were trained with.
    """

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.norms = [1.0 / math.sqrt(a) for a in sizes[:-1]]

    def forward(self, x: Tensor) -> Tensor:
        return self.hidden(x) @ self.last()

    def hidden(self, x: Tensor) -> Tensor:
        """The activations that enter the last (linear) layer."""
        for w, c in zip(self.weights[:-1], self.norms[:-1]):
            x = normalized_silu(x @ (w * c))
        return x

    def last(self) -> Tensor:
        """The last layer's matrix, normalisation included."""
        return self.weights[-1] * self.norms[-1]


# e3nn.math.normalize2mom(silu).cst: 1 / sqrt(E[silu(z)^2]) for z ~ N(0, 1), estimated by e3nn
# from 10^6 samples with seed 0. The exact value of that estimate is what the weights expect.
SILU_2MOM = 1.6791767923989418


def normalized_silu(x: Tensor) -> Tensor:
    return torch.nn.functional.silu(x) * SILU_2MOM
