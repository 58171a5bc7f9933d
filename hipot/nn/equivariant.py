"""NequIP-style equivariant interaction block of HIENet: linear self-connection, channel-wise
tensor-product convolution with radial weights, and a gated nonlinearity."""
from __future__ import annotations

from torch import Tensor, nn

from ..execution import ExecutionOptions
from .irreps import EquivariantLinear, Irreps
from .radial import RadialMLP, normalized_silu
from .tensor_product import ChannelwisePlan, EdgeKernel


def gate_input_irreps(irreps_out: Irreps) -> Irreps:
    """Scalars, then one gate scalar per gated (l > 0) channel, then the gated channels."""
    gates = sum(m for l, m in irreps_out.terms if l > 0)
    muls = dict(irreps_out.terms)
    muls[0] = muls.get(0, 0) + gates
    return Irreps.from_muls(muls)


class Gate(nn.Module):
    """x_0 -> silu(x_0); x_l -> x_l * silu(g_l) for l > 0, both SiLUs normalised to unit 2nd moment.

    The l = 0 input holds [scalars, gates for l=1, gates for l=2, ...] in that order.
    """

    def __init__(self, irreps_out: Irreps):
        super().__init__()
        self.irreps_out = irreps_out
        self.num_scalars = irreps_out.mul(0)
        self.gated = [(l, m) for l, m in irreps_out.terms if l > 0]

    def forward(self, xs: dict[int, Tensor]) -> dict[int, Tensor]:
        x0 = xs[0].squeeze(-1)
        out: dict[int, Tensor] = {}
        if self.num_scalars:
            out[0] = normalized_silu(x0[:, : self.num_scalars]).unsqueeze(-1)
        start = self.num_scalars
        for l, m in self.gated:
            g = normalized_silu(x0[:, start : start + m])
            out[l] = xs[l] * g.unsqueeze(-1)
            start += m
        return out


class InteractionBlock(nn.Module):
    """x -> gate(W_2 conv(W_1 x) / avg_neighbors + W_sc x).

    `tp` is the convolution's tensor-product kernel, a submodule that executes the block's plan;
    `hipot.nn.tensor_product.use_kernel` swaps it (edges by default)."""

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps, sh_lmax: int, num_radial: int,
                 radial_hidden: list[int], avg_num_neighbors: float):
        super().__init__()
        self.irreps_in = irreps_in
        self.irreps_out = irreps_out
        gate_in = gate_input_irreps(irreps_out)
        plan = ChannelwisePlan(irreps_in, sh_lmax, irreps_out)
        self.self_connection = EquivariantLinear(irreps_in, gate_in)
        self.linear_1 = EquivariantLinear(irreps_in, irreps_in)
        self.tp = EdgeKernel(plan)
        self.radial = RadialMLP([num_radial, *radial_hidden, plan.weight_numel])
        self.linear_2 = EquivariantLinear(plan.irreps_mid, gate_in)
        self.gate = Gate(irreps_out)
        self.inv_avg_neighbors = 1.0 / avg_num_neighbors

    def forward(self, xs: dict[int, Tensor], sh: Tensor, radial: Tensor, center: Tensor, neighbor: Tensor,
                options: ExecutionOptions = ExecutionOptions(), num_nodes: int | None = None) -> dict[int, Tensor]:
        """xs: features of every node the edges reach; returns those of the first `num_nodes`
        (default all), the centres: the rest (ghost rows) only feed the convolution's gather."""
        n = xs[0].shape[0] if num_nodes is None else num_nodes
        own = xs if n == xs[0].shape[0] else {l: t[:n] for l, t in xs.items()}
        sc = self.self_connection(own)
        h = self.linear_1(xs)
        agg = self.tp(h, sh, self.radial.hidden(radial), self.radial.last(), center, neighbor, n, options)
        h = self.linear_2({l: t * self.inv_avg_neighbors for l, t in agg.items()})
        h = {l: h[l] + sc[l] if l in sc else h[l] for l in h}
        return self.gate(h)
