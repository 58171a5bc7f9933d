"""Loss on energy per atom, forces and stress, and the error sums behind the metrics.

Each term is the mean over its components (energies per atom, force components, Voigt stress
components) of a Huber or squared error. The means are taken over the *global* batch: the
trainer passes the component counts summed over all processes, so data-parallel training
gives the same gradient as one process on the combined batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..types import Prediction
from .config import LossConfig
from .data import KBAR_PER_EV_A3, Labels

# Order of the entries of `Loss.sums`: per term (loss, count, |err|, err^2); energy per atom,
# forces, stress (eV/A^3), then total energy (|err|, err^2).
SUM_NAMES = ["e_loss", "e_n", "e_abs", "e_sq", "f_loss", "f_n", "f_abs", "f_sq",
             "s_loss", "s_n", "s_abs", "s_sq", "etot_abs", "etot_sq"]
_VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


@dataclass
class Loss:
    cfg: LossConfig

    def _elementwise(self, diff: Tensor) -> Tensor:
        if self.cfg.kind == "mse":
            return diff * diff
        d = self.cfg.huber_delta
        a = diff.abs()
        return torch.where(a < d, 0.5 * diff * diff, d * (a - 0.5 * d))

    @staticmethod
    def counts(labels: Labels) -> Tensor:
        """Number of components of each term in this batch: (energies, force components, stress components)."""
        return torch.stack([labels.has_energy.sum(), 3 * labels.has_forces.sum(),
                            6 * labels.has_stress.sum()]).to(torch.float64)

    def __call__(self, pred: Prediction, labels: Labels, counts: Tensor, world_size: int = 1
                 ) -> tuple[Tensor, Tensor]:
        """Loss (to backpropagate) and the detached error sums (`SUM_NAMES`) of this batch.
        `counts` are the component counts of the global batch (`counts()` summed over processes);
        `world_size` undoes DDP's averaging of gradients over processes."""
        c = self.cfg
        zero = pred.energy.new_zeros(())
        # energy per atom
        m = labels.has_energy
        de = (pred.energy.to(labels.energy.dtype) - labels.energy)[m]  # float64: see Labels.to
        de_atom = de / labels.num_atoms[m].to(de.dtype)
        e_terms = self._elementwise(de_atom).to(pred.energy.dtype)
        # forces
        mf = labels.has_forces
        df = (pred.forces - labels.forces)[mf] if pred.forces is not None else pred.energy.new_zeros((0, 3))
        f_terms = self._elementwise(df)
        # stress, Voigt components
        ms = labels.has_stress
        if pred.stress is not None and bool(ms.any()):
            ds = (pred.stress - labels.stress)[ms][:, _VOIGT[0], _VOIGT[1]]
        else:
            ds = pred.energy.new_zeros((0, 6))
        unit = KBAR_PER_EV_A3 if c.stress_unit == "kbar" else 1.0
        s_terms = self._elementwise(ds * unit)

        def term(x: Tensor, n: Tensor) -> Tensor:
            return x.sum() / n.clamp(min=1.0).to(x.dtype) if x.numel() else zero

        counts = counts.to(pred.energy.device)
        loss = world_size * (c.energy_weight * term(e_terms, counts[0]) + c.forces_weight * term(f_terms, counts[1])
                             + c.stress_weight * term(s_terms, counts[2]))
        with torch.no_grad():
            local = self.counts(labels).to(pred.energy.device)
            sums = torch.stack([
                e_terms.sum(), local[0], de_atom.abs().sum(), (de_atom ** 2).sum(),
                f_terms.sum(), local[1], df.abs().sum(), (df ** 2).sum(),
                s_terms.sum(), local[2], ds.abs().sum(), (ds ** 2).sum(),
                de.abs().sum(), (de ** 2).sum(),
            ]).detach().to(torch.float64)
        return loss, sums

    def total(self, sums: Tensor) -> float:
        """The loss value of accumulated sums (same weights and normalisation as in training)."""
        s = dict(zip(SUM_NAMES, sums.tolist()))
        c = self.cfg
        return (c.energy_weight * s["e_loss"] / max(s["e_n"], 1) + c.forces_weight * s["f_loss"] / max(s["f_n"], 1)
                + c.stress_weight * s["s_loss"] / max(s["s_n"], 1))


def metrics(sums: Tensor, prefix: str) -> dict[str, float]:
    """MAE and RMSE from accumulated sums: energy meV/atom and meV (total), forces meV/A, stress meV/A^3."""
    s = dict(zip(SUM_NAMES, sums.tolist()))
    out: dict[str, float] = {}
    for key, name, n in (("e", "e_atom", "e_n"), ("f", "f", "f_n"), ("s", "stress", "s_n"), ("etot", "e_total", "e_n")):
        count = s[n]
        if count > 0:
            out[f"{prefix}_{name}_mae"] = 1000 * s[f"{key}_abs"] / count
            out[f"{prefix}_{name}_rmse"] = 1000 * (s[f"{key}_sq"] / count) ** 0.5
        else:
            out[f"{prefix}_{name}_mae"] = out[f"{prefix}_{name}_rmse"] = float("nan")
    return out
