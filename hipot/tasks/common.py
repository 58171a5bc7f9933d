"""Shared pieces of the simulation tasks: which model evaluates, bundled examples, JSON output."""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from ..calculator import HIPotCalculator
from ..graph import StructureError, check_structure
from ..evaluator import Evaluator
from ..io import atomic_write, held_warnings, jsonable, write_json  # noqa: F401  (tasks import them from here)
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


def as_calculator(model: ModelLike, device: str = "auto", dtype: str = "float32") -> Calculator:
    """An ASE calculator for `model`: a hipot model is loaded once and served by HIPotCalculator
    (sharing the Evaluator, no reload); any other ASE calculator is returned as it is."""
    m = resolve_model(model, device, dtype)
    return HIPotCalculator(model=m) if isinstance(m, Evaluator) else m


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


def check_inputs(structures: Sequence[Atoms], model: Evaluator | Calculator, label: str = "structure",
                 labels: Sequence[str] | None = None) -> None:
    """Fail early (before any work or output) on input the model cannot take. `labels` name the
    structures in messages (default: `label` and the index)."""
    species = model.model.species if isinstance(model, Evaluator) else None
    if labels is None:
        labels = [f"{label} {k}" if len(structures) > 1 else label for k in range(len(structures))]
    for atoms, name in zip(structures, labels):
        check_structure(atoms, species, name)


def find_bad(structures: Sequence[Atoms], species: Sequence[int] | None, labels: Sequence[str] | None = None,
             min_distance: float = 0.1) -> list[tuple[int, str]]:
    """(index, message) of every structure a model with these `species` cannot take: what
    `check_structure` refuses, and atoms closer than `min_distance` (A), to each other or to a
    periodic image of themselves. Cheap (no model, a neighbour list at `min_distance` only), so
    that a long run can check all its input before loading a model or doing any work."""
    from ..graph import neighbor_list

    labels = list(labels) if labels is not None else [f"structure {k}" for k in range(len(structures))]
    bad: list[tuple[int, str]] = []
    for k, (atoms, name) in enumerate(zip(structures, labels)):
        try:  # the graph builder's own checks, the overlap check with a list of min_distance only
            check_structure(atoms, species, name)
            neighbor_list(atoms, max(min_distance, 1e-3), min_distance=min_distance, label=name)
        except StructureError as e:
            bad.append((k, str(e)))
    return bad


def bad_input_message(bad: Sequence[tuple[int, str]], total: int, max_report: int = 20, hint: str = "") -> str:
    """One error for many bad structures: how many, then each reason (the first `max_report`)."""
    lines = [msg for _, msg in bad[:max_report]]
    if len(bad) > max_report:
        lines.append(f"... and {len(bad) - max_report} more")
    return f"{len(bad)} of {total} structure(s) cannot be evaluated{hint}:\n" + "\n".join(lines)


@dataclasses.dataclass
class Tally:
    """How far a long command got (items done of total), for the message an interruption prints."""

    total: int = 0
    done: int = 0
    unit: str = "structure"

    def add(self, n: int = 1) -> None:
        self.done += n


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


class InputFileError(ValueError):
    """An input file that cannot be read as structures: a folder, empty, truncated or garbled,
    or an index past its end. The message names the file."""


def _count_frames(path: str, fmt: str | None = None) -> int:
    import ase.io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the count is for a message; the reader's warnings are not
            return sum(1 for _ in ase.io.iread(path, index=":", format=fmt))
    except Exception:  # the file is broken further on: the count is only for a message
        return -1


def read_labelled(spec: str, index: str = ":", fmt: str | None = None) -> tuple[list[Atoms], list[str]]:
    """Structures from a file ASE reads (or a bundled example, 'example:Si') with a label each
    that names the file and the frame's index in it ('in.extxyz frame 150'), whatever `index`
    selects. Every way a file can fail to read is one InputFileError (FileNotFoundError when
    it is missing)."""
    import ase.io
    from ase.io.formats import string2index

    if spec.startswith("example:"):
        atoms = example(spec.split(":", 1)[1])
        if index not in (":", "0", "-1", 0, -1):
            raise InputFileError(f"{spec} is one structure; --index {index} selects none")
        return [atoms], [spec]

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such file (bundled examples: "
                                f"{', '.join('example:' + n for n in list_examples())})")
    if path.is_dir():
        raise InputFileError(f"{spec} is a folder; give a structure file (extxyz, CIF, POSCAR, ...)")
    try:
        sel = string2index(index) if isinstance(index, str) else index
    except ValueError:
        raise InputFileError(f"--index {index!r} is not a frame number or an ASE slice (e.g. 0, -1, 10:20, ::2)") from None
    try:
        with held_warnings(spec):
            frames = ase.io.read(spec, index=sel, format=fmt)
    except StopIteration:  # ASE's answer to an index past the end
        n = _count_frames(spec, fmt)
        raise InputFileError(f"{spec}: frame {index} is past the end (the file holds {n} frame(s))") from None
    except IndexError as e:
        n = _count_frames(spec, fmt)
        raise InputFileError(f"{spec}: frame {index} is past the end (the file holds {n} frame(s))"
                             if n >= 0 else f"{spec}: cannot read it ({e})") from None
    except Exception as e:  # ASE raises a different exception for every format and every kind of damage
        what = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise InputFileError(f"{spec}: cannot read structures from it ({type(e).__name__}: {what}); "
                             "is it empty, truncated or of another format?") from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        n = _count_frames(spec, fmt)
        raise InputFileError(f"{spec} holds no structures" + (f" at --index {index} (it holds {n} frame(s))"
                                                               if index not in (":", "") and n > 0 else ""))
    # the index of each frame in the file, for messages that point at the right one
    if isinstance(sel, int):
        first = sel if sel >= 0 else sel + _count_frames(spec, fmt)
        positions = [first]
    elif isinstance(sel, slice) and all(v is None or v >= 0 for v in (sel.start, sel.stop, sel.step)):
        positions = list(range(sel.start or 0, (sel.start or 0) + (sel.step or 1) * len(frames), sel.step or 1))
    elif isinstance(sel, slice):
        positions = list(range(_count_frames(spec, fmt)))[sel]
    else:
        positions = list(range(len(frames)))
    if len(positions) != len(frames):
        positions = list(range(len(frames)))
    return frames, [f"{spec} frame {k}" for k in positions]


def read_structures(spec: str, index: str = ":") -> list[Atoms]:
    """Structures from a file ASE reads, or a bundled example as 'example:Si' (see read_labelled)."""
    return read_labelled(spec, index)[0]


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


class _LiveBar:
    """A tqdm bar that also redraws itself every few seconds, so that its clock keeps moving while
    one long evaluation (a large cell on a CPU) runs between two updates."""

    def __init__(self, bar):
        import sys
        import threading

        self.bar = bar
        interval = 2.0 if sys.stderr.isatty() else 30.0  # a log file gets a line per redraw
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.bar.refresh()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.bar.set_postfix_str(s, refresh=refresh)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.close()


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar that redraws itself while work runs between updates, or a no-op stand-in when
    disabled."""
    if enabled:
        from tqdm import tqdm

        unit = "structure" if desc.split()[0] in ("relax", "screen", "predict") else "step"
        return _LiveBar(tqdm(total=total, desc=desc, unit=unit))

    class _Null:
        def update(self, n: int = 1) -> None: ...
        def close(self) -> None: ...
        def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...

    return _Null()
