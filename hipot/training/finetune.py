"""Starting from a trained model: load it, refit its per-element shifts, freeze chosen layers."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..derivatives import ForceStressModel
from ..execution import ExecutionOptions
from ..model import HIENet
from .data import Dataset, _spaced, collate
from .statistics import composition, fit_element_energies


def load_start_model(name: str, dtype: torch.dtype) -> HIENet:
    """The model to fine-tune ('hienet-v3', a model folder or an official .pth), on the CPU, trainable."""
    from ..pretrained import load_model

    model = load_model(name, device="cpu", dtype=dtype, backend="torch")
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


@torch.no_grad()
def refit_shift(model: HIENet, ds: Dataset, batch_size: int = 8, max_frames: int | None = 2000,
                alpha: float = 0.0) -> np.ndarray:
    """Add to the per-element shifts the least-squares correction that makes the model's energy
    error zero on average per composition (moves the model onto the data's energy reference,
    e.g. another functional or code). Returns the corrections (eV, in model species order)."""
    was_training = model.training
    model.eval()
    dtype = model.embedding.dtype
    device = model.embedding.device
    species = model.species
    idx = _spaced(len(ds), max_frames)
    counts, residuals = [], []
    for k in range(0, len(idx), batch_size):
        samples = [ds[int(i)] for i in idx[k:k + batch_size]]
        graph, labels = collate(samples)
        pred = ForceStressModel(model)(graph.to(device, dtype), ExecutionOptions(), forces=False, stress=False)
        residuals.extend((labels.energy - pred.energy.double().cpu()).tolist())
        counts.extend(composition(s.numbers, species) for s in samples)
    counts_arr = np.array(counts)
    present = counts_arr.sum(axis=0) > 0  # only elements in the data get a correction
    delta = np.zeros(len(species))
    delta[present] = fit_element_energies(counts_arr[:, present], np.array(residuals), alpha)
    model.shift += torch.as_tensor(delta, dtype=model.shift.dtype, device=model.shift.device)
    model.train(was_training)
    return delta


def freeze(model: HIENet, prefixes: Sequence[str]) -> list[str]:
    """Turn off gradients of the parameters whose names start with any prefix; returns their names.
    An unmatched prefix is an error (a typo would otherwise silently train everything)."""
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") or n.startswith(prefix) for n in names):
            raise ValueError(f"freeze: no parameter name starts with {prefix!r} "
                             f"(top-level names: {sorted({n.split('.')[0] for n in names})})")
    frozen = []
    for n, p in model.named_parameters():
        if any(n.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)
            frozen.append(n)
    return frozen
