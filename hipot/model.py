"""The HIENet energy model: species embedding -> invariant attention -> equivariant blocks -> readout.

`HIENet` maps the narrow input of every engine (species, edge index, edge vectors, number of
nodes: `hipot.types.PotentialInput`) to per-atom energies and knows nothing of derivatives:
`hipot.derivatives.ForceStressModel` wraps it to give forces, virials and stress.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from e3nn.o3 import spherical_harmonics
from torch import Tensor, nn

from .config import ModelConfig
from .execution import ExecutionOptions
from .nn.equivariant import InteractionBlock
from .nn.invariant import InvariantAttentionLayer
from .nn.irreps import Irreps
from .nn.radial import BesselBasis, PolynomialEnvelope


# Supplies the ghost rows of node features: {l: (num_nodes, mul, 2l+1)} -> {l: (num_nodes +
# num_ghosts, mul, 2l+1)}, the first num_nodes rows unchanged (`hipot.exchange.ExchangeStages`).
# Called on the input of every message-passing layer but the first (whose input, the species
# embedding, every row has), so that a layer's gather reads its neighbours' features and nothing
# downstream of the call sees this rank's rows any other way (the staged gradient relies on it):
# where LAMMPS on several ranks exchanges features.
FeatureExchange = Callable[[dict[int, Tensor]], dict[int, Tensor]]


class HIENet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        n_species = len(c.species)
        index = torch.full((119,), -1, dtype=torch.long)
        index[torch.tensor(c.species)] = torch.arange(n_species)
        self.register_buffer("species_index", index, persistent=False)

        self.embedding = nn.Parameter(torch.randn(n_species, c.invariant_channels))
        self.embedding_dropout = nn.Dropout(c.dropout)
        self.radial_basis = BesselBasis(c.cutoff, c.num_radial, c.trainable_radial)
        self.envelope = PolynomialEnvelope(c.cutoff, c.envelope_p)
        # the invariant layer's own fade when it starts at r_on > 0: the envelope over [r_on, cutoff]
        self.message_fade = (PolynomialEnvelope(c.cutoff - c.smooth_from, c.envelope_p)
                             if c.smooth_invariant and c.smooth_from > 0 else None)
        self.invariant_layers = nn.ModuleList(
            [InvariantAttentionLayer(c.invariant_channels, c.num_radial, c.dropout, c.dropout_attn,
                                     smooth=c.smooth_invariant)
             for _ in range(c.num_invariant_layers)]
        )
        irreps = [Irreps.from_muls({0: c.invariant_channels})] + [Irreps.parse(s) for s in c.hidden_irreps]
        self.blocks = nn.ModuleList(
            [InteractionBlock(a, b, c.sh_lmax, c.num_radial, c.radial_hidden, c.avg_num_neighbors)
             for a, b in zip(irreps[:-1], irreps[1:])]
        )
        n_out = irreps[-1].mul(0)
        self.readout_hidden = nn.Parameter(torch.randn(n_out, c.readout_hidden))
        self.readout_out = nn.Parameter(torch.randn(c.readout_hidden, 1))
        self.readout_dropout = nn.Dropout(c.dropout)
        # Per-element affine map of the atomic energies: fitted to data, not trained.
        self.register_buffer("scale", torch.ones(n_species))
        self.register_buffer("shift", torch.zeros(n_species))

    def set_backend(self, backend: str = "auto") -> str:
        """Choose the kernel that runs the tensor products: 'edges' or 'padded' (plain PyTorch, any
        device; 'torch' picks edges on a GPU, padded on a CPU), 'cueq' (cuEquivariance) or 'auto'
        (cueq on a GPU when installed, else torch). Call after moving the model to its device and
        dtype. Returns the kernel in use."""
        from .nn.tensor_product import kernel_factory, resolve_backend, use_kernel

        device = self.embedding.device
        name = resolve_backend(backend, device)
        if name != self.backend:
            use_kernel(self, kernel_factory(name, device))
        return name

    @property
    def backend(self) -> str:
        """The tensor-product kernel in use ('edges', 'padded' or 'cueq')."""
        return self.blocks[0].tp.name

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    @property
    def num_exchanges(self) -> int:
        """How many times `forward` calls its `exchange` hook: before every layer but the first."""
        return len(self.invariant_layers) + len(self.blocks) - 1

    def exchange_widths(self) -> list[int]:
        """Numbers per node of the features each exchange carries, in order (the inputs of every
        layer but the first)."""
        c = self.config
        widths = [c.invariant_channels] * len(self.invariant_layers) + [b.irreps_in.dim for b in self.blocks]
        return widths[1:]

    def forward(self, numbers: Tensor, center: Tensor, neighbor: Tensor, edge_vec: Tensor,
                num_nodes: int | None = None, options: ExecutionOptions = ExecutionOptions(),
                exchange: FeatureExchange | None = None) -> Tensor:
        """Per-node energies (num_nodes,) from the nodes' atomic numbers (num_nodes + ghosts,), the
        edges (centre, neighbour) and their vectors (E, 3) (cast to the model's dtype here, so that
        gradients come back in the caller's). Node-wise work runs on the num_nodes nodes, except
        what a gather reads; the ghost rows (nodes from num_nodes on, default none) are filled by
        `exchange` before every layer but the first (`num_exchanges` times), and must be absent
        without one."""
        c = self.config
        n = numbers.shape[0] if num_nodes is None else num_nodes
        if exchange is None and numbers.shape[0] != n:
            raise ValueError(f"{numbers.shape[0] - n} ghost rows but no exchange to fill them")
        edge_vec = edge_vec.to(self.embedding.dtype)
        species = self.species_index[numbers]
        r = torch.linalg.norm(edge_vec, dim=-1)
        envelope = self.envelope(r)
        radial = self.radial_basis(r) * envelope.unsqueeze(-1)
        # below r_on the fade is exactly 1, and it joins smoothly there (f - 1 has a p-fold zero at 0)
        fade = envelope if self.message_fade is None else self.message_fade((r - c.smooth_from).clamp(min=0.0))
        sh = spherical_harmonics(list(range(c.sh_lmax + 1)), edge_vec, normalize=True, normalization="component")

        x = self.embedding[species] * (1.0 / math.sqrt(len(c.species)))  # every row, ghosts included
        xs = {0: self.embedding_dropout(x).unsqueeze(-1)}
        for k, layer in enumerate([*self.invariant_layers, *self.blocks]):
            if k > 0 and exchange is not None:
                xs = exchange(xs)
            if isinstance(layer, InvariantAttentionLayer):
                xs = {0: layer(xs[0].squeeze(-1), center, neighbor, radial, fade, options, n).unsqueeze(-1)}
            else:
                xs = layer(xs, sh, radial, center, neighbor, options, n)
        h = xs[0].squeeze(-1) @ (self.readout_hidden * (1.0 / math.sqrt(self.readout_hidden.shape[0])))
        h = self.readout_dropout(h)
        e = (h @ (self.readout_out * (1.0 / math.sqrt(self.readout_out.shape[0])))).squeeze(-1)
        own = species[:n]
        return self.scale[own] * e + self.shift[own]
