"""ASE calculator."""
from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .evaluator import Evaluator
from .structures import MAX_NEIGHBORS
from .model import HIENet


class HIPotCalculator(Calculator):
    """ASE calculator for hipot models: energy, free_energy (= energy), energies (per atom),
    forces and, for cells periodic in all three directions, stress (ASE sign and Voigt order) and
    per-atom stresses (`atoms.get_stresses()`: N x 6, eV/A^3, summing to the stress; computed only
    when asked, with everything else of that step; not with dispersion, whose per-atom virials
    simple-dftd3 does not give).

    model: 'hienet-v3', a hipot model folder, an official .pth file, a HIENet instance, or an
        Evaluator (shared as it is: no model is loaded).
    device: 'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...
    dtype: 'float32' (default) or 'float64'.
    backend: tensor-product kernels, 'auto' (cuEquivariance on a GPU when installed), 'torch', 'cueq'.
    cuda_graphs: replay captured CUDA graphs for structures under 4,096 atoms (default: on a GPU).
    dispersion: None, or 'd3bj' to add DFT-D3(BJ) with PBE parameters to energy, forces and stress
        (hipot.dispersion; needs `pip install 'hipot[d3]'`). `calc.name` then ends in '+D3(BJ)',
        and 'stresses' is not among `implemented_properties`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]

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
        if self.evaluator.dispersion is not None:  # ASE then refuses get_stresses() before any work
            self.implemented_properties = [p for p in self.implemented_properties if p != "stresses"]

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
        for name in ("stress", "stresses"):
            if name in properties and not self.atoms.pbc.all():
                raise PropertyNotImplementedError(
                    f"{name} is defined only for structures periodic in all three directions "
                    f"(pbc={self.atoms.pbc.tolist()})")
        if "stresses" in properties and "stresses" not in self.implemented_properties:
            raise PropertyNotImplementedError(f"no per-atom stresses with dispersion ({self.evaluator.name}): "
                                              "simple-dftd3 gives no per-atom virials")
        # per-atom stresses only when asked (ASE asks for one property at a time); the step that
        # computes them fills every other result too, so nothing asked next evaluates again
        (self.results,) = self.evaluator.evaluate([self.atoms], batch_size=1, max_atoms=None,
                                                  stresses="stresses" in properties)
