"""Peer models for benchmarks/speed.py, each through its own package's ASE calculator, with its
e3nn path and its cuEquivariance path:

- SevenNet-0 (`sevenn`, weights in its wheel), 0.84 M parameters, cutoff 5 A.
- A MACE of MACE-MP-0-medium shape (`mace-torch`): 128x0e+128x1o hidden, l_max 3, correlation 3,
  two interactions, cutoff 6 A, 89 elements, random weights (speed does not depend on them).

Each runner has the interface speed.py times: graph(atoms) -> the model's input on the device,
step(graph) -> one energy+forces+stress evaluation, end_to_end(atoms) -> (E, F, Voigt stress)
through the calculator (its own CPU neighbour list included), edges(graph).
"""
from __future__ import annotations

import numpy as np
import torch


class SevenNetRunner:
    def __init__(self, device: torch.device, cueq: bool):
        from sevenn.calculator import SevenNetCalculator

        self.calc = SevenNetCalculator(model="7net-0", device=str(device), enable_cueq=cueq)
        self.device = device
        self.name = f"SevenNet-0 ({'cueq' if cueq else 'e3nn'})"

    def graph(self, atoms):
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.calc.cutoff, with_shift=False))
        return data.to(self.device)

    def step(self, data):
        return self.calc.model(data.clone())  # the model writes its outputs into the data it is given

    def end_to_end(self, atoms):
        self.calc.calculate(atoms.copy(), ["energy", "forces", "stress"])
        r = self.calc.results
        return r["energy"], np.asarray(r["forces"]), np.asarray(r["stress"])

    def edges(self, data) -> int:
        import sevenn._keys as KEY

        return int(data[KEY.EDGE_IDX].shape[1])


def mace_mp0_medium_shape(seed: int = 0) -> torch.nn.Module:
    """ScaleShiftMACE with MACE-MP-0 medium's sizes and random weights."""
    from e3nn import o3
    from mace import modules

    torch.manual_seed(seed)
    z = list(range(1, 90))
    return modules.ScaleShiftMACE(
        r_max=6.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        num_interactions=2, num_elements=len(z), hidden_irreps=o3.Irreps("128x0e+128x1o"),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(z)), avg_num_neighbors=61.96,
        atomic_numbers=z, correlation=3, gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
        atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    ).float()


class MaceRunner:
    def __init__(self, device: torch.device, cueq: bool):
        from mace.calculators import MACECalculator

        self.calc = MACECalculator(models=[mace_mp0_medium_shape()], device=str(device), default_dtype="float32",
                                   enable_cueq=cueq)
        self.model = self.calc.models[0]
        self.device = device
        self.name = f"MACE-MP-0-medium shape ({'cueq' if cueq else 'e3nn'})"

    def graph(self, atoms):
        return self.calc._atoms_to_batch(atoms).to(self.device)

    def step(self, batch):
        return self.model(batch.to_dict(), compute_stress=True, training=False)

    def end_to_end(self, atoms):
        self.calc.calculate(atoms.copy(), ["energy", "forces", "stress"])
        r = self.calc.results
        return r["energy"], np.asarray(r["forces"]), np.asarray(r["stress"])

    def edges(self, batch) -> int:
        return int(batch["edge_index"].shape[1])


def make_peer(name: str, device: torch.device):
    """'sevennet', 'sevennet+cueq', 'mace', 'mace+cueq'."""
    base, _, variant = name.partition("+")
    cls = {"sevennet": SevenNetRunner, "mace": MaceRunner}[base]
    return cls(device, cueq=variant == "cueq")
