"""What every tensor-product kernel is: a module that executes a ChannelwisePlan, fused with the
sum of messages over each atom's neighbours, under explicit execution options."""
from __future__ import annotations

from torch import Tensor, nn

from ...execution import ExecutionOptions
from ..chunks import sum_over_edge_chunks
from .plan import ChannelwisePlan


class TensorProductKernel(nn.Module):
    """Executes `plan`. Holds no weights: the per-edge weights come from the radial MLP, in the
    plan's flat layout, so every kernel runs the same checkpoint and the state dict does not
    depend on the kernel."""

    name = "base"

    def __init__(self, plan: ChannelwisePlan):
        super().__init__()
        self.plan = plan

    @property
    def irreps_mid(self):
        return self.plan.irreps_mid

    @property
    def weight_numel(self) -> int:
        return self.plan.weight_numel

    def convolve(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                 num_nodes: int) -> dict[int, Tensor]:
        """xs[l1]: (N, mul, 2l1+1) node features; sh: (E, (lmax+1)^2) harmonics of the edge vectors;
        weight: (E, weight_numel). Returns sum over edges (i <- j) of TP(x_j, Y_ij, w_ij) on atom i,
        one (N, mul, 2l3+1) tensor per output l3."""
        raise NotImplementedError

    def forward(self, xs: dict[int, Tensor], sh: Tensor, hidden: Tensor, last: Tensor, center: Tensor,
                neighbor: Tensor, num_nodes: int, options: ExecutionOptions) -> dict[int, Tensor]:
        """The convolution with weights `hidden @ last` (the radial MLP's last hidden layer and last
        matrix). With `options.recompute`, edges go in chunks whose weights and activations are
        recomputed in the backward pass: only `hidden` is kept per edge."""
        if not options.recompute:
            return self.convolve(xs, sh, hidden @ last, center, neighbor, num_nodes)
        ls = sorted(xs)

        def chunk(sh_c: Tensor, hidden_c: Tensor, center_c: Tensor, neighbor_c: Tensor, *x: Tensor):
            out = self.convolve(dict(zip(ls, x)), sh_c, hidden_c @ last, center_c, neighbor_c, num_nodes)
            return tuple(out[l] for l in sorted(out))

        outs = sum_over_edge_chunks(chunk, (sh, hidden, center, neighbor), [xs[l] for l in ls],
                                    options.edge_chunk, True)
        return dict(zip(self.plan.irreps_mid.ls, outs))
