"""The HIENet model: species embedding -> invariant attention -> equivariant blocks -> readout.

`HIENet.atomic_energies` maps edge vectors to per-atom energies; `HIENet.forward` adds the
exact derivatives (forces, stress) through `hipot.derivatives`.
"""
from __future__ import annotations

import math

import torch
from e3nn.o3 import spherical_harmonics
from torch import Tensor, nn

from .config import ModelConfig
from .derivatives import Prediction, derivatives
from .graph import AtomGraph
from .nn.equivariant import InteractionBlock
from .nn.invariant import InvariantAttentionLayer
from .nn.irreps import Irreps
from .nn.radial import BesselBasis, PolynomialEnvelope


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
        self.backend = "torch"

    def set_backend(self, backend: str = "auto") -> str:
        """Choose how the tensor products run: 'torch' (plain PyTorch, any device), 'cueq'
        (cuEquivariance CUDA kernels) or 'auto' (cueq on a GPU when installed, else torch).
        Call after moving the model to its device and dtype. Returns the backend in use."""
        from .nn.tensor_product import CuetChannelwiseTensorProduct, cuequivariance_available

        device = self.embedding.device
        if backend == "auto":
            backend = "cueq" if device.type == "cuda" and cuequivariance_available() else "torch"
        if backend == "torch":
            for block in self.blocks:
                block.set_kernel(None)
        elif backend == "cueq":
            if not cuequivariance_available(kernels=device.type == "cuda"):
                raise RuntimeError("backend 'cueq' needs cuequivariance, cuequivariance-torch and, on a GPU, "
                                   "cuequivariance-ops-torch (pip install 'hipot[gpu]')")
            method = "uniform_1d" if device.type == "cuda" else "naive"
            for block in self.blocks:
                block.set_kernel(CuetChannelwiseTensorProduct(block.tp, method=method).to(device=device, dtype=self.embedding.dtype))
        else:
            raise ValueError(f"backend must be 'auto', 'torch' or 'cueq', not {backend!r}")
        self.backend = backend
        return backend

    def set_recompute(self, on: bool) -> None:
        """Recompute per-edge activations (the tensor-product weights of each block, the invariant
        layer's messages) in the backward pass instead of storing them: several times less memory
        per edge for about a fifth more time (large cells)."""
        for layer in [*self.invariant_layers, *self.blocks]:
            layer.recompute = on

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    @property
    def species(self) -> list[int]:
        return list(self.config.species)

    def atomic_energies(self, graph: AtomGraph, edge_vec: Tensor) -> Tensor:
        """Per-atom energies (N,) from the graph's topology and the edge vectors."""
        c = self.config
        species = self.species_index[graph.numbers]
        center, neighbor = graph.center, graph.neighbor
        r = torch.linalg.norm(edge_vec, dim=-1)
        envelope = self.envelope(r)
        radial = self.radial_basis(r) * envelope.unsqueeze(-1)
        sh = spherical_harmonics(list(range(c.sh_lmax + 1)), edge_vec, normalize=True, normalization="component")

        x = self.embedding[species] * (1.0 / math.sqrt(len(c.species)))
        x = self.embedding_dropout(x)
        for layer in self.invariant_layers:
            x = layer(x, center, neighbor, radial, envelope)
        xs = {0: x.unsqueeze(-1)}
        for block in self.blocks:
            xs = block(xs, sh, radial, center, neighbor)
        h = xs[0].squeeze(-1) @ (self.readout_hidden * (1.0 / math.sqrt(self.readout_hidden.shape[0])))
        h = self.readout_dropout(h)
        e = (h @ (self.readout_out * (1.0 / math.sqrt(self.readout_out.shape[0])))).squeeze(-1)
        return self.scale[species] * e + self.shift[species]

    def forward(self, graph: AtomGraph, forces: bool = True, stress: bool = True,
                training: bool = False) -> Prediction:
        """Energies, and forces and stress by autograd; `training` keeps the graph for a loss."""
        return derivatives(self, graph, forces=forces, stress=stress, create_graph=training)
