"""The one way every engine runs a model: a `PotentialInput` under its device's execution policy.

The evaluator (ASE calculator, `hipot md`, torch-sim) and LAMMPS's driver both call `Potential`:
the options come from one policy (`hipot.execution.ExecutionPolicy`: recompute threshold, edge
chunk), steps the policy replays go through captured CUDA graphs (`hipot.cuda_graphs`), the others
through `ForceStressModel.predict`; either way with the same edge order, kernels and options,
whoever built the input.
"""
from __future__ import annotations

from .cuda_graphs import GraphedPotential
from .derivatives import ForceStressModel, Marks
from .exchange import GhostExchange
from .execution import ExecutionOptions, ExecutionPolicy
from .types import PotentialInput, Prediction


class Potential:
    """A ForceStressModel and the policy it runs under."""

    def __init__(self, model: ForceStressModel, policy: ExecutionPolicy):
        self.model, self.policy = model, policy
        self.graphed = GraphedPotential(model) if policy.cuda_graphs else None

    def options(self, inp: PotentialInput, create_graph: bool = False) -> ExecutionOptions:
        return self.policy.options(inp.num_edges, create_graph)

    def __call__(self, inp: PotentialInput, forces: bool = True, virial: bool = True, atom_virials: bool = False,
                 create_graph: bool = False, exchange: GhostExchange | None = None,
                 marks: Marks | None = None) -> Prediction:
        """`ForceStressModel.predict` of the input (see there), replayed as a CUDA graph where the
        policy says so and nothing is exchanged (a replay is one part for `marks`: 'forward')."""
        options = self.options(inp, create_graph)
        if self.graphed is not None and exchange is None and self.policy.replays(inp.num_nodes, create_graph):
            pred = self.graphed(inp, options, forces, virial, atom_virials)
            if marks is not None:
                marks("forward")
            return pred
        return self.model.predict(inp, options, forces, virial, atom_virials, exchange, marks)
