"""NequIP-style equivariant interaction block of HIENet: linear self-connection, channel-wise
tensor-product convolution with radial weights, and a gated nonlinearity."""
from __future__ import annotations

from torch import Tensor, nn

from ..execution import ExecutionOptions
from .chunks import sum_over_edge_chunks
from .irreps import EquivariantLinear, Irreps
from .radial import RadialMLP, normalized_silu
from .tensor_product import ChannelwiseTensorProduct


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
    """x -> gate(W_2 conv(W_1 x) / avg_neighbors + W_sc x)."""

    def __init__(self, irreps_in: Irreps, irreps_out: Irreps, sh_lmax: int, num_radial: int,
                 radial_hidden: list[int], avg_num_neighbors: float):
        super().__init__()
        self.irreps_in = irreps_in
        self.irreps_out = irreps_out
        gate_in = gate_input_irreps(irreps_out)
        self.self_connection = EquivariantLinear(irreps_in, gate_in)
        self.linear_1 = EquivariantLinear(irreps_in, irreps_in)
        self.tp = ChannelwiseTensorProduct(irreps_in, sh_lmax, irreps_out)
        self.radial = RadialMLP([num_radial, *radial_hidden, self.tp.weight_numel])
        self.linear_2 = EquivariantLinear(self.tp.irreps_mid, gate_in)
        self.gate = Gate(irreps_out)
        self.inv_avg_neighbors = 1.0 / avg_num_neighbors
        self.set_kernel(None)

    def set_kernel(self, kernel: nn.Module | None) -> None:
        """Run the convolution with another implementation of `self.tp` (None: the reference).
        Kept out of the module tree: a kernel holds no weights and must not enter the state dict."""
        object.__setattr__(self, "_kernel", kernel)

    def _convolve_dict(self, h: dict[int, Tensor], sh: Tensor, radial: Tensor, center: Tensor,
                       neighbor: Tensor, options: ExecutionOptions) -> dict[int, Tensor]:
        tp = self._kernel if self._kernel is not None else self.tp
        last = self.radial.last()
        if options.keep_radial_hidden:
            # the kernel keeps the radial MLP's last hidden layer for the backward pass, not the
            # per-edge weights
            return tp.convolve_lean(h, sh, self.radial.hidden(radial), last, center, neighbor, h[0].shape[0],
                                    recompute=options.recompute, chunk=options.edge_chunk)
        return tp(h, sh, self.radial.hidden(radial) @ last, center, neighbor, h[0].shape[0])

    def _convolve(self, radial: Tensor, sh: Tensor, center: Tensor, neighbor: Tensor, *hs: Tensor) -> tuple:
        agg = self._convolve_dict(dict(zip(sorted(self.irreps_in.ls), hs)), sh, radial, center, neighbor,
                                  ExecutionOptions())
        return tuple(agg[l] for l in sorted(agg))

    def forward(self, xs: dict[int, Tensor], sh: Tensor, radial: Tensor, center: Tensor, neighbor: Tensor,
                options: ExecutionOptions = ExecutionOptions()) -> dict[int, Tensor]:
        sc = self.self_connection(xs)
        h = self.linear_1(xs)
        if options.recompute and not options.keep_radial_hidden:
            # Keep only the radial features per edge for the backward pass, not the per-edge
            # tensor-product weights (thousands per edge): they are recomputed there, chunk by chunk.
            outs = sum_over_edge_chunks(self._convolve, (radial, sh, center, neighbor), [h[l] for l in sorted(h)],
                                        options.edge_chunk, True)
            agg = dict(zip(sorted(self.tp.irreps_mid.ls), outs))
        else:
            agg = self._convolve_dict(h, sh, radial, center, neighbor, options)
        h = self.linear_2({l: t * self.inv_avg_neighbors for l, t in agg.items()})
        h = {l: h[l] + sc[l] if l in sc else h[l] for l in h}
        return self.gate(h)
