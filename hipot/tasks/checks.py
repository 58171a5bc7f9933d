"""Checks of a task's result against what can spoil it: a model whose energy is not continuous
at its cutoff (HIENet-V3's invariant layer: a neighbour shell that crosses the cutoff under a
task's displacements or strains makes a step in the energy and changes the forces), and energy
steps that the model's own stress does not account for. Each check returns a message (or None);
`note` records it on the result and issues it as a `ResultWarning`."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from ase import Atoms


class ResultWarning(UserWarning):
    """A task's result may be spoilt (the model's energy jump at its cutoff, a bad fit)."""


def model_cutoff(model) -> tuple[float | None, bool]:
    """(cutoff in A, whether the energy is continuous there) of a hipot model; (None, True) for a
    model hipot cannot look into (an ASE calculator: nothing is claimed about it)."""
    net = getattr(model, "model", None)  # an Evaluator
    config = getattr(net, "config", None)
    if config is None:
        return None, True
    return float(net.cutoff), bool(getattr(config, "smooth_invariant", False))


def shells_near(atoms: Atoms, radius: float, margin: float) -> list[float]:
    """Distinct pair distances (to 1e-3 A) of the structure within `margin` of `radius`."""
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, radius + margin, self_interaction=False)
    d = d[d >= radius - margin]
    return sorted(set(np.round(d, 3).tolist()))


def cutoff_crossing(atoms: Atoms, model, margin: float, what: str) -> str | None:
    """A message when a neighbour shell of `atoms` lies within `margin` A of the cutoff of a model
    whose energy is not continuous there (so `what` moves it across the cutoff), else None."""
    cutoff, smooth = model_cutoff(model)
    if cutoff is None or smooth or margin <= 0:
        return None
    near = shells_near(atoms, cutoff, margin)
    if not near:
        return None
    shown = ", ".join(f"{d:.3f}" for d in near[:4]) + (", ..." if len(near) > 4 else "")
    return (f"neighbour shell(s) at {shown} A lie within {margin:.3g} A of the model's {cutoff:g} A cutoff, "
            f"which {what} can move them across; this model's energy is not continuous there "
            "(smooth_invariant off), so the result may carry that jump (a smooth model, `hipot distill`, has none)")


def energy_steps(volumes: Sequence[float], energies: Sequence[float], pressures: Sequence[float]) -> np.ndarray:
    """Per interval of an E(V) curve (per atom, eV and A^3; pressure in eV/A^3): the change of
    energy that the pressure does not account for, dE + (P_i + P_i+1)/2 dV (trapezoid rule).
    A continuous model gives round-off and O(dV^3) terms; a discontinuous one its jumps."""
    v, e, p = (np.asarray(x, float) for x in (volumes, energies, pressures))
    order = np.argsort(v)
    v, e, p = v[order], e[order], p[order]
    return np.diff(e) + 0.5 * (p[1:] + p[:-1]) * np.diff(v)


def steps_along(x: Sequence[float], energy: Sequence[float], force: Sequence[float]) -> np.ndarray:
    """The same along a path x (e.g. a bond length) with the generalised force F = -dE/dx:
    dE + (F_i + F_i+1)/2 dx per interval."""
    x, e, f = (np.asarray(a, float) for a in (x, energy, force))
    return np.diff(e) + 0.5 * (f[1:] + f[:-1]) * np.diff(x)


def note(result, message: str | None, stacklevel: int = 3) -> None:
    """Record `message` in result.warnings and issue it as a ResultWarning (None: nothing)."""
    if not message:
        return
    result.warnings.append(message)
    warnings.warn(message, ResultWarning, stacklevel=stacklevel)
