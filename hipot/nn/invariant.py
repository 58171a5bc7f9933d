"""The invariant (ComFormer-style) gated-attention message-passing layer of HIENet."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..execution import ExecutionOptions
from .chunks import sum_over_edge_chunks


def _mlp(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3 * c, c), nn.SiLU(), nn.Linear(c, c))


class InvariantAttentionLayer(nn.Module):
    """Distance-only message passing with per-channel attention and a GRU-like update.

    For the edge (a <- b) with radial features e_ab:
        k'_ab = MLP_k([k_a, k_b, W_e e_ab]),  alpha = q_a * k'_ab / sqrt(C)
        m_ab  = MLP_m([v_a, v_b, W_e e_ab]) * sigmoid(LN_att(alpha))
    then o_a = W_o sum_b m_ab and the node update
        x <- (1 - u) (r x) + u ((1 - u) x + u softplus(LN(o_a))),  r, u = sigmoid(W_{r,u} x).
    The official layer's messages do not vanish at the cutoff; with `smooth=True` each message is
    multiplied by a fade factor of r_ab (`envelope`: the cutoff envelope, or the same function over
    [r_on, r_c], `ModelConfig.smooth_from`) that vanishes there, which makes the energy continuous.
    """

    def __init__(self, channels: int, num_radial: int, dropout: float = 0.0, dropout_attn: float = 0.0,
                 smooth: bool = False):
        super().__init__()
        c = channels
        self.channels = c
        self.smooth = smooth
        self.query = nn.Linear(c, c)
        self.key = nn.Linear(c, c)
        self.value = nn.Linear(c, c)
        self.edge = nn.Linear(num_radial, c)
        self.key_mlp = _mlp(c)
        self.msg_mlp = _mlp(c)
        self.att_norm = nn.LayerNorm(c)
        self.out = nn.Linear(c, c)
        self.out_norm = nn.LayerNorm(c)
        self.reset_gate = nn.Linear(c, c)
        self.update_gate = nn.Linear(c, c)
        self.dropout = nn.Dropout(dropout)
        self.dropout_attn = nn.Dropout(dropout_attn)

    def forward(self, x: Tensor, center: Tensor, neighbor: Tensor, radial: Tensor, envelope: Tensor,
                options: ExecutionOptions = ExecutionOptions(), num_nodes: int | None = None) -> Tensor:
        """x: (nodes, C) features of every node the edges reach; returns those of the first
        `num_nodes` (default all), the centres: the rest (ghost rows) are only gathered from."""
        c = self.channels
        own = x if num_nodes is None else x[:num_nodes]
        q = self.query(own)
        k = self.key(x)
        v = self.value(x)
        n = own.shape[0]
        # The first layers of both edge MLPs act on [node_a, node_b, edge]: a linear map of a
        # concatenation is a sum of maps of its parts, so the node parts are computed per node and
        # gathered, never as (E, 3C) concatenations.
        wk, wm = self.key_mlp[0].weight, self.msg_mlp[0].weight
        k_a, k_b = k[:n] @ wk[:, :c].T, k @ wk[:, c : 2 * c].T
        v_a, v_b = v[:n] @ wm[:, :c].T, v @ wm[:, c : 2 * c].T
        # with options.recompute, each chunk's (E, C) activations are recomputed in the backward
        # pass from its radial features instead of being stored
        (agg,) = sum_over_edge_chunks(self._messages, (radial, envelope, center, neighbor), (q, k_a, k_b, v_a, v_b),
                                      options.edge_chunk, options.recompute)
        return self._update(own, agg)

    def _update(self, x: Tensor, agg: Tensor) -> Tensor:
        o = self.out(agg)
        r = torch.sigmoid(self.reset_gate(x))
        u = torch.sigmoid(self.update_gate(x))
        h = (1 - u) * x + u * torch.nn.functional.softplus(self.out_norm(o))
        return (1 - u) * (r * x) + u * h

    def _messages(self, radial: Tensor, envelope: Tensor, center: Tensor, neighbor: Tensor, q: Tensor,
                  k_a: Tensor, k_b: Tensor, v_a: Tensor, v_b: Tensor) -> tuple[Tensor]:
        """Sum over each atom's neighbours of the gated, attention-weighted messages."""
        c = self.channels
        wk, wm = self.key_mlp[0].weight, self.msg_mlp[0].weight
        if self.training and self.dropout.p > 0:
            # dropout sits between the edge embedding and the MLPs: keep the two maps apart
            e = self.dropout(self.edge(radial))
            ek = e @ wk[:, 2 * c :].T + self.key_mlp[0].bias
            em = e @ wm[:, 2 * c :].T + self.msg_mlp[0].bias
        else:
            # radial -> edge linear -> MLP first layer is one linear map from the radial features
            ek = torch.nn.functional.linear(radial, wk[:, 2 * c :] @ self.edge.weight,
                                            wk[:, 2 * c :] @ self.edge.bias + self.key_mlp[0].bias)
            em = torch.nn.functional.linear(radial, wm[:, 2 * c :] @ self.edge.weight,
                                            wm[:, 2 * c :] @ self.edge.bias + self.msg_mlp[0].bias)
        # index_select, not x[idx]: its backward is an atomic index_add, not a sort-based index_put
        gather = torch.index_select
        hk = gather(k_a, 0, center) + gather(k_b, 0, neighbor) + ek
        hm = gather(v_a, 0, center) + gather(v_b, 0, neighbor) + em
        key_ab = self.key_mlp[2](torch.nn.functional.silu(hk))
        alpha = self.dropout_attn(gather(q, 0, center) * key_ab / math.sqrt(c))
        msg = self.msg_mlp[2](torch.nn.functional.silu(hm)) * torch.sigmoid(self.att_norm(alpha))
        if self.smooth:
            msg = msg * envelope.unsqueeze(-1)
        return (torch.zeros_like(q).index_add_(0, center, msg),)
