"""ASE calculator."""
from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .evaluator import Evaluator
from .structures import MAX_NEIGHBORS
from .model import HIENet


class HIPotCalculator(Calculator):
    """ASE calculator for hipot models: energy, free_energy (= energy), energies (per atom),
    forces and, for cells periodic in all three directions, stress (ASE sign and Voigt order).

    model: 'hienet-v3', a hipot model folder, an official .pth file, a HIENet instance, or an
        Evaluator (shared as it is: no model is loaded).
    device: 'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...
    dtype: 'float32' (default) or 'float64'.
    backend: tensor-product kernels, 'auto' (cuEquivariance on a GPU when installed), 'torch', 'cueq'.
    cuda_graphs: replay captured CUDA graphs for structures under 4,096 atoms (default: on a GPU).
    dispersion: None, or 'd3bj' to add DFT-D3(BJ) with PBE parameters to energy, forces and stress
        (hipot.dispersion; needs `pip install 'hipot[d3]'`). `calc.name` then ends in '+D3(BJ)'.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model: str | HIENet | Evaluator = "hienet-v3", device: str | torch.device = "auto",
                 dtype: str | torch.dtype = "float32", min_distance: float = 0.1, backend: str = "auto",
                 cuda_graphs: bool | None = None, dispersion: str | None = None,
                 max_neighbors: float = MAX_NEIGHBORS, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, Evaluator):
            if dispersion is not None:
                raise ValueError("pass dispersion to the Evaluator itself (an Evaluator carries its own)")
            self.evaluator = model
        else:
            self.evaluator = Evaluator(model, device, dtype, min_distance, backend, cuda_graphs,
                                       dispersion=dispersion, max_neighbors=max_neighbors)

    def _get_name(self) -> str:
        """What `calc.name` says: the model, and '+D3(BJ)' when dispersion is added."""
        return self.evaluator.name

    @property
    def model(self) -> HIENet:
        return self.evaluator.model

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        # Refused before evaluating: ASE asks again after an energy call (the results then lack
        # a stress), and a second evaluation only to raise would double the cost.
        if "stress" in properties and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress is defined only for structures periodic in all three directions "
                f"(pbc={self.atoms.pbc.tolist()})")
        (self.results,) = self.evaluator.evaluate([self.atoms], batch_size=1, max_atoms=None)
