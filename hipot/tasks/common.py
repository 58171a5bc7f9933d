"""Shared pieces of the simulation tasks: which model evaluates, bundled examples, JSON output."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..calculator import HIPotCalculator
from ..graph import StructureError, check_structure
from ..evaluator import Evaluator
from ..io import atomic_write, jsonable, write_json  # noqa: F401  (tasks import them from here)
from ..model import HIENet

# What every task accepts as `model`: a name or folder, a HIENet, an Evaluator, or any ASE calculator.
ModelLike = Union[str, os.PathLike, HIENet, Evaluator, Calculator]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def resolve_model(model: ModelLike, device: str = "auto", dtype: str = "float32",
                  backend: str = "auto") -> Evaluator | Calculator:
    """An Evaluator for hipot models (batched), or the ASE calculator itself for anything else.
    A HIPotCalculator is unwrapped to its Evaluator so that it batches too."""
    if isinstance(model, Evaluator):
        return model
    if isinstance(model, HIPotCalculator):
        return model.evaluator
    if isinstance(model, Calculator):
        return model
    return Evaluator(model, device, dtype, backend=backend)


class EvaluatorCalculator(Calculator):
    """An ASE calculator over an existing Evaluator (no model reload); used by the per-structure tasks."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, evaluator: Evaluator, **kwargs):
        super().__init__(**kwargs)
        self.evaluator = evaluator

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties or ["energy"], system_changes)
        periodic = bool(np.all(self.atoms.pbc))
        (self.results,) = self.evaluator.evaluate([self.atoms], batch_size=1, max_atoms=None, stress=periodic)


def as_calculator(model: ModelLike, device: str = "auto", dtype: str = "float32") -> Calculator:
    """An ASE calculator for `model` (a hipot model is loaded once and wrapped)."""
    m = resolve_model(model, device, dtype)
    return EvaluatorCalculator(m) if isinstance(m, Evaluator) else m


def evaluate_many(structures: Sequence[Atoms], model: Evaluator | Calculator, batch_size: int = 64,
                  max_atoms: int | None = 4096, progress: bool = False) -> list[dict[str, Any]]:
    """Energy, forces (and stress for fully periodic cells) of many structures: batched through an
    Evaluator, one by one through an ASE calculator."""
    if isinstance(model, Evaluator):
        return model.evaluate(structures, batch_size=batch_size, max_atoms=max_atoms, progress=progress)
    out = []
    for atoms in structures:
        a = atoms.copy()
        a.calc = model
        res: dict[str, Any] = {"energy": float(a.get_potential_energy()), "forces": a.get_forces().copy()}
        if np.all(a.pbc):
            res["stress"] = a.get_stress().copy()
        out.append(res)
    return out


def check_inputs(structures: Sequence[Atoms], model: Evaluator | Calculator, label: str = "structure") -> None:
    """Fail early (before any work or output) on input the model cannot take."""
    species = model.model.species if isinstance(model, Evaluator) else None
    for k, atoms in enumerate(structures):
        check_structure(atoms, species, f"{label} {k}" if len(structures) > 1 else label)


def require_periodic(atoms: Atoms, task: str) -> None:
    """Bulk-only tasks (eos, elastic, phonons) need a cell periodic in all three directions."""
    if len(atoms) == 0:
        raise StructureError(f"{task}: empty structure (no atoms)")
    if not np.all(atoms.pbc) or abs(atoms.cell.volume) < 1e-6:
        raise StructureError(f"{task}: needs a bulk structure periodic in all three directions with a cell "
                             f"(got pbc={np.asarray(atoms.pbc).tolist()}, volume {abs(atoms.cell.volume):.3g} A^3); "
                             "molecules and slabs have no volume to strain")


def list_examples() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.iterdir() if p.suffix in (".cif", ".extxyz"))


def example(name: str) -> Atoms:
    """A bundled structure: 'Si' (diamond), 'Cu' (fcc), 'MgO' (rocksalt), 'H2O' (molecule in a box)."""
    for suffix in (".extxyz", ".cif"):
        path = EXAMPLES / f"{name}{suffix}"
        if path.is_file():
            import ase.io

            atoms = ase.io.read(path)
            atoms.info.pop("spacegroup_kinds", None)
            atoms.info.setdefault("name", name)
            return atoms
    raise FileNotFoundError(f"no bundled example {name!r}; available: {', '.join(list_examples())}")


def read_structures(spec: str, index: str = ":") -> list[Atoms]:
    """Structures from a file ASE reads, or a bundled example as 'example:Si'."""
    if spec.startswith("example:"):
        return [example(spec.split(":", 1)[1])]
    import ase.io

    if not Path(spec).exists():
        raise FileNotFoundError(f"{spec}: no such file (bundled examples: "
                                f"{', '.join('example:' + n for n in list_examples())})")
    frames = ase.io.read(spec, index=index)
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise StructureError(f"{spec} holds no structures")
    return frames


class Result:
    """Mixin for result dataclasses: to_dict() gives the JSON summary (no Atoms, arrays as lists)."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Atoms) or f.name == "atoms" or f.name.startswith("_"):
                continue
            out[f.name] = jsonable(v)
        return out


def pyplot():
    """matplotlib.pyplot on a non-interactive backend (tasks only write files)."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure atomically (format from the final suffix) and close it."""
    import matplotlib.pyplot as plt

    fmt = Path(path).suffix.lstrip(".") or "png"
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight"))
    plt.close(fig)
    return out


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar, or a no-op stand-in when disabled."""
    if enabled:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="structure" if desc in ("relax", "screen") else "step")

    class _Null:
        def update(self, n: int = 1) -> None: ...
        def close(self) -> None: ...
        def set_postfix_str(self, s: str) -> None: ...

    return _Null()
