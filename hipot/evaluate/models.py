"""The models under test: a hipot model (batched on the device) and peers through their own ASE
calculators (one structure at a time), with single points and relaxation for both."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms

# Peer name -> (package, how to build its calculator). Weights ship inside the wheels.
PEER_PACKAGES = {"sevennet-0": "sevenn", "chgnet": "chgnet"}

# Model cutoffs (A) for the diatomic cutoff scan; peers' values are from their papers/configs.
PEER_CUTOFFS = {"sevennet-0": 5.0, "chgnet": 5.0}


class PeerUnavailable(RuntimeError):
    """A peer's package is not installed (or its weights could not be loaded)."""


@dataclass
class ModelHandle:
    """A model under test. `evaluator` is set for hipot models, `calc` for ASE-calculator peers."""
    name: str
    kind: str                      # "hipot" or "peer"
    calc: Any = None               # ASE calculator (peers, and hipot's own for one-off use)
    evaluator: Any = None          # hipot.evaluator.Evaluator
    cutoff: float | None = None
    version: str = ""
    energy_includes_mp2020: bool = False   # CHGNet predicts MP2020-corrected energies
    notes: list[str] = field(default_factory=list)

    @property
    def batched(self) -> bool:
        return self.evaluator is not None

    def relax_target(self):
        """What hipot.tasks.relax takes as `model`: the Evaluator (batched) or the calculator."""
        return self.evaluator if self.evaluator is not None else self.calc


def _torch_device(device: str) -> str:
    from ..device import resolve_device

    return str(resolve_device(device))


def load_hipot(model: str, device: str = "auto", dtype: str = "float32", backend: str = "auto",
               name: str | None = None) -> ModelHandle:
    from .. import __version__
    from ..calculator import HIPotCalculator
    from ..evaluator import Evaluator

    ev = Evaluator(model, device, dtype, backend=backend)
    calc = HIPotCalculator(ev.model, device=ev.device, dtype=ev.dtype, backend=backend)
    label = name or (model if isinstance(model, str) else "hipot-model")
    return ModelHandle(label, "hipot", calc=calc, evaluator=ev, cutoff=float(ev.model.cutoff),
                       version=f"hipot {__version__}")


def load_peer(name: str, device: str = "auto") -> ModelHandle:
    """SevenNet-0 (sevenn) or CHGNet 0.3.0 (chgnet) through the package's own ASE calculator."""
    dev = _torch_device(device)
    if name not in PEER_PACKAGES:
        raise PeerUnavailable(f"unknown peer {name!r} (known: {', '.join(PEER_PACKAGES)})")
    pkg = PEER_PACKAGES[name]
    try:
        if name == "sevennet-0":
            import sevenn
            from sevenn.calculator import SevenNetCalculator

            calc = SevenNetCalculator("7net-0", device=dev)
            return ModelHandle(name, "peer", calc=calc, cutoff=PEER_CUTOFFS[name],
                               version=f"sevenn {getattr(sevenn, '__version__', '?')}, checkpoint 7net-0 (SevenNet-0 11Jul2024)")
        import chgnet
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        model = CHGNet.load(model_name="0.3.0", use_device=dev, verbose=False)
        calc = CHGNetCalculator(model=model, use_device=dev)
        return ModelHandle(name, "peer", calc=calc, cutoff=PEER_CUTOFFS[name], energy_includes_mp2020=True,
                           version=f"chgnet {getattr(chgnet, '__version__', '?')}, weights 0.3.0")
    except ImportError as e:
        raise PeerUnavailable(f"peer {name} needs the `{pkg}` package (pip install {pkg}, or hipot[peers]): {e}") from e


# ---------------------------------------------------------------- single points

def single_points(handle: ModelHandle, structures: Sequence[Atoms], stress: bool = False,
                  batch_size: int = 64, progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Energy, forces (and stress) of each structure: batched for hipot, one by one for peers."""
    structures = list(structures)
    if handle.evaluator is not None:
        out = []
        step = max(batch_size * 8, 1)
        for start in range(0, len(structures), step):
            chunk = structures[start:start + step]
            out.extend(handle.evaluator.evaluate(chunk, batch_size=batch_size, max_atoms=4096, stress=stress))
            if progress:
                progress(len(out))
        return out
    out = []
    props = ["energy", "forces"] + (["stress"] if stress else [])
    for k, atoms in enumerate(structures):
        a = atoms.copy()
        try:
            a.calc = handle.calc  # some calculators check the elements here (SevenNet's set_atoms)
            res = {"energy": float(a.get_potential_energy()), "forces": np.array(a.get_forces())}
            if "stress" in props:
                res["stress"] = np.array(a.get_stress())
        except Exception as e:  # noqa: BLE001 (e.g. an element the peer does not know): a missing value
            res = {"energy": float("nan"), "forces": np.full((len(a), 3), np.nan), "error": f"{type(e).__name__}: {e}"}
            if "stress" in props:
                res["stress"] = np.full(6, np.nan)
        out.append(res)
        if progress and (k + 1) % 20 == 0:
            progress(k + 1)
        if (k + 1) % 250 == 0:   # one structure at a time can take minutes: show that it moves
            from .common import log
            log(f"{handle.name}: {k + 1}/{len(structures)} single points")
    return out


# ---------------------------------------------------------------- relaxation

@dataclass
class Relaxed:
    atoms: Atoms       # relaxed copy
    energy: float      # eV
    fmax: float        # eV/A, largest residual force (cell filter forces included when the cell relaxes)
    steps: int
    converged: bool
    stress: np.ndarray | None = None   # ASE Voigt, eV/A^3 (at the final geometry)
    error: str | None = None


def relax_structures(handle: ModelHandle, structures: Sequence[Atoms], *, fmax: float = 0.05, steps: int = 500,
                     relax_cell: bool = True, batch_size: int = 64, progress: bool = False) -> list[Relaxed]:
    """FIRE (+ FrechetCellFilter when relax_cell) to fmax, at most `steps` steps, for every structure,
    through hipot.tasks.relax: batched on the device for a hipot model, one at a time for a peer's
    calculator (the same ASE optimizer trajectory either way)."""
    from ..tasks.relax import relax

    # forces only (smax=None): the benchmark's published protocol, the same for every model
    kw: dict[str, Any] = dict(optimizer="FIRE", fmax=fmax, smax=None, steps=steps, relax_cell=relax_cell,
                              progress=progress)
    if handle.batched:
        kw.update(batch_size=batch_size, max_atoms=4096)
    out = []
    for r in relax(list(structures), model=handle.relax_target(), **kw):
        if getattr(r, "error", None):  # a structure the model failed on: keep the slot, mark it failed
            out.append(Relaxed(r.atoms, float("nan"), float("nan"), int(r.steps), False, None, str(r.error)))
            continue
        try:
            stress = np.array(r.atoms.get_stress()) if np.all(r.atoms.pbc) else None
        except Exception:  # the relaxed copy need not carry a stress
            stress = None
        out.append(Relaxed(r.atoms, float(r.energy), float(r.fmax), int(r.steps), bool(r.converged), stress))
    return out
