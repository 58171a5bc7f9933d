"""Arguments, checks and helpers shared by the command-line verbs: everything a command can find
wrong before it loads a model or starts work (device, extras, output folders, every input
structure, its size on a CPU), and the small pieces every task verb uses."""
from __future__ import annotations

import argparse
import functools
import inspect
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

from ..execution import RECOMPUTE_EDGES

# A size above which the CPU estimate is printed before starting (seconds per evaluation).
SLOW_EVALUATION_S = 60.0
# CPU cost of one edge (energy, forces and stress), 2 threads, float32: from 0.2-0.3 ms on an idle
# 2-core machine (benchmarks/RESULTS.md section 3) to 2.5 ms on a loaded one (measured for this check).
CPU_S_PER_EDGE = (2e-4, 2.5e-3)
# Peak memory of one evaluation on a CPU: about 200 KiB per edge while per-edge activations are kept,
# about 70 KiB above the recompute threshold (hipot.execution.RECOMPUTE_EDGES), plus ~0.4 GiB.
KIB_PER_EDGE_KEPT, KIB_PER_EDGE_RECOMPUTED = 200.0, 70.0


class CLIError(Exception):
    """A command that cannot run as given: printed as one line `hipot VERB: error: ...`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def add_one_structure_args(p: argparse.ArgumentParser) -> None:
    """The input of the verbs that work on one structure (the first frame unless --index), and the model."""
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--index", default="0", help="which frame (default: the first)")
    add_model_args(p)


def add_summary_args(p: argparse.ArgumentParser, quiet_help: str | None = None) -> None:
    """--json (the summary as a file), --overwrite and -q, last on every task verb."""
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--overwrite", action="store_true",
                   help="write over existing output files (--json, plots, CSV, trajectory) instead of refusing a name "
                        "you gave or numbering a default one (eos.png exists: eos-2.png)")
    p.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """--threads: the CPU threads of PyTorch (`apply_threads`, called by `hipot.cli.main`)."""
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch (default: $OMP_NUM_THREADS if set, else the cores not busy with "
                        "other work, at least 1)")


def add_model_args(p: argparse.ArgumentParser, dispersion: bool = True, model: bool = True) -> None:
    """--model, --device, --dtype, --backend, --threads (and --dispersion): how every verb picks and places its model."""
    if dispersion:
        p.add_argument("--dispersion", default="none", choices=["none", "d3bj"],
                       help="add DFT-D3(BJ) dispersion, PBE parameters (needs pip install 'hipot[d3]'; default: none)")
    if model:  # (`hipot check` takes the model as its argument)
        p.add_argument("--model", default="hienet-v3",
                       help="model name, hipot model folder or official .pth (default: hienet-v3)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default: float32")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "edges", "padded", "cueq"],
                   help="tensor-product kernels: cuEquivariance on a GPU when installed (auto), or force one")
    add_threads_arg(p)


def check_device(device: str):
    """The torch device of --device, or a CLIError saying why it cannot be used (no CUDA, a typo)."""
    from ..device import resolve_device

    try:
        return resolve_device(device)
    except ValueError as e:
        raise CLIError(str(e)) from None


def require_extras(purpose: str, modules: Sequence[str], extra: str = "tasks") -> None:
    """Import the optional packages a verb needs before it does anything else (MissingDependency,
    naming the pip command, when one is missing)."""
    from ..optional import require

    for module in modules:
        require(module, extra, purpose)


def _writable_folder(folder: Path) -> str | None:
    """Why nothing can be written under `folder` (None: it can). The folder may not exist yet: then
    its nearest existing parent must be a writable folder."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".hipot-write-test-"):
            pass
    except OSError as e:
        return f"{probe} is not writable ({e.strerror or e})"
    return None


def check_writable(files: Iterable[str | os.PathLike | None] = (), folders: Iterable[str | os.PathLike | None] = ()
                   ) -> None:
    """Refuse to start when an output file or folder cannot be written, so that no long computation
    ends in a lost result. Nothing is created."""
    for f in files:
        if f is None:
            continue
        p = Path(f)
        if p.is_dir():
            raise CLIError(f"cannot write {p}: it is a folder; give a file name")
        why = _writable_folder(p.parent if str(p.parent) else Path("."))
        if why:
            raise CLIError(f"cannot write {p}: {why}")
    for d in folders:
        if d is None:
            continue
        p = Path(d)
        if p.exists() and not p.is_dir():
            raise CLIError(f"cannot write into {p}: it is a file, not a folder")
        why = _writable_folder(p)
        if why:
            raise CLIError(f"cannot write into {p}: {why}")


def model_species(model: str) -> list[int] | None:
    """The elements --model knows, read from its config without loading weights (None: an ASE
    calculator, which checks for itself)."""
    if str(model).lower().startswith("ase:"):
        return None
    from ..pretrained import model_config

    return list(model_config(model).species)


def check_frames(frames: Sequence, labels: Sequence[str], species: Sequence[int] | None, skip_bad: bool,
                 option: str = "--skip-bad") -> dict[int, str]:
    """All bad input at once, before the model loads: a StructureError listing every bad frame, or
    with `skip_bad` the bad frames (index -> reason) to record instead of computing."""
    from ..tasks.common import bad_input_message, find_bad
    from ..types import StructureError

    bad = find_bad(frames, species, labels)
    if bad and not skip_bad:
        hint = "; nothing was computed" + (f" ({option} skips them and records why in the output)" if option else "")
        raise StructureError(bad_input_message(bad, len(frames), hint=hint))
    return dict(bad)


def available_memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def estimate_cpu_cost(edges: int, threads: int) -> tuple[float, tuple[float, float]]:
    """(peak GiB, (low, high) seconds) of one energy+forces+stress evaluation with `edges` edges on a CPU."""
    per_edge = KIB_PER_EDGE_KEPT if edges <= RECOMPUTE_EDGES["cpu"] else KIB_PER_EDGE_RECOMPUTED
    gib = 0.4 + edges * per_edge / 2**20
    scale = 2.0 / max(threads, 1)
    return gib, (edges * CPU_S_PER_EDGE[0] * scale, edges * CPU_S_PER_EDGE[1] * scale)


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


def warn_if_large(command: str, frames: Sequence, labels: Sequence[str], model: str, device: str,
                  evaluations: int = 1, quiet: bool = False) -> bool:
    """On a CPU, print the estimated memory and time of the largest structure before starting when
    one evaluation of it is slow or may not fit in memory; returns whether it did (the caller then
    keeps a live progress display). `evaluations`: how many times each structure is evaluated."""
    if quiet or str(device).startswith("cuda") or str(model).lower().startswith("ase:"):
        return False
    if str(device) == "auto":
        import torch

        if torch.cuda.is_available():
            return False
    import torch

    from ..graph import neighbor_list
    from ..pretrained import model_config

    cutoff = model_config(model).cutoff
    big = max(range(len(frames)), key=lambda k: len(frames[k]))
    if len(frames[big]) < 200:  # below this one evaluation takes seconds
        return False
    edges = len(neighbor_list(frames[big], cutoff)[0])
    gib, (lo, hi) = estimate_cpu_cost(edges, torch.get_num_threads())
    avail = available_memory_gib()
    too_big = avail is not None and gib > 0.8 * avail
    if hi < SLOW_EVALUATION_S and not too_big:
        return False
    msg = (f"hipot {command}: warning: {labels[big]} has {len(frames[big]):,} atoms and {edges:,} edges: one "
           f"evaluation on this CPU ({torch.get_num_threads()} threads) takes roughly {_duration(lo)} to "
           f"{_duration(hi)} and about {gib:.1f} GiB of memory")
    if evaluations > 1:
        msg += f", up to {evaluations:,} evaluations"
    if too_big:
        msg += f"; only {avail:.1f} GiB are available: it will likely run out of memory"
    print(msg + " (a GPU: --device cuda)", file=sys.stderr, flush=True)
    return True


def run_key(args: argparse.Namespace, files: Sequence[str], **settings) -> str:
    """Identifies a run (inputs and settings) so that a restart reuses only its own partial results."""
    import hashlib
    import json

    h = hashlib.sha256()
    for f in files:
        p = Path(f)
        if p.is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(str(f).encode())
    h.update(json.dumps({"model": str(args.model), "dtype": args.dtype, "dispersion": dispersion_of(args),
                         **settings}, sort_keys=True, default=str).encode())
    return h.hexdigest()


# Output formats: extxyz is the only one that carries every result (energy, forces, stress, per-atom energies).
EXTXYZ = ("extxyz",)


def output_format(path: str, command: str, results_needed: bool) -> str:
    """The ASE format to write `path` in, from its suffix. `results_needed`: the file is the
    command's only record of its results, so only extxyz will do."""
    from ase.io.formats import UnknownFileTypeError, filetype, ioformats

    try:
        fmt = filetype(path, read=False)
    except UnknownFileTypeError:
        fmt = None
    if fmt in EXTXYZ:
        return "extxyz"
    if results_needed:
        raise CLIError(f"{path}: {command} writes extxyz (.extxyz or .xyz), the only format that carries every "
                       "result (energy, forces, stress, per-atom energies)")
    if fmt is None or fmt not in ioformats or not ioformats[fmt].can_write:
        raise CLIError(f"{path}: cannot tell a format ASE writes from the name; use .extxyz (every result), "
                       ".traj, .cif, .vasp, ...")
    return fmt


# ----------------------------------------------------------------- helpers of the task verbs
INPUT_HELP = "structure file ASE reads (extxyz, CIF, POSCAR, ...) or a bundled example: example:Si, example:Cu, " \
             "example:MgO, example:H2O"


@functools.lru_cache(maxsize=None)
def task_defaults(task: str) -> dict:
    """Keyword defaults of the task function `module.function` (the one place they are written)."""
    import importlib

    module, name = task.rsplit(".", 1)
    func = getattr(importlib.import_module(f"hipot.tasks.{module}"), name)
    return {k: p.default for k, p in inspect.signature(func).parameters.items() if p.default is not p.empty}


def task_model(args: argparse.Namespace, device=None):
    """The model of --model: a hipot model (loaded once, on `device` or --device), or 'ase:emt' (ASE's EMT,
    a cheap stand-in)."""
    if args.model.lower() == "ase:emt":
        from ase.calculators.emt import EMT

        return EMT()
    if args.model.lower().startswith("ase:"):
        raise CLIError(f"unknown ASE calculator {args.model!r} (only ase:emt)")
    from ..evaluator import Evaluator

    return Evaluator(args.model, device if device is not None else args.device, args.dtype, backend=args.backend,
                     dispersion=dispersion_of(args))


def dispersion_of(args: argparse.Namespace) -> str:
    """--dispersion ('none' for verbs without it)."""
    return getattr(args, "dispersion", "none")


def model_name(args: argparse.Namespace) -> str:
    """How outputs name the model: 'hienet-v3', 'hienet-v3+D3(BJ)'."""
    from ..dispersion import model_label

    return model_label(str(args.model), dispersion_of(args))


def rank_device(args: argparse.Namespace):
    """This rank's device under torchrun (cuda:LOCAL_RANK), joining the process group; --device otherwise."""
    from datetime import timedelta

    from ..distributed import setup

    return setup(args.device, timeout=timedelta(days=7))[1]


def prepare(args: argparse.Namespace, extras: tuple[str, ...] = (), files=(), folders=()) -> None:
    """The checks every verb makes first: optional packages, --model's name (an unknown ASE
    calculator), --device, and that every output can be written."""
    if extras:
        require_extras(f"hipot {args.command}", extras)
    if args.model.lower().startswith("ase:") and args.model.lower() != "ase:emt":
        raise CLIError(f"unknown ASE calculator {args.model!r} (only ase:emt)")
    if dispersion_of(args) != "none":
        if args.model.lower().startswith("ase:"):
            raise CLIError(f"--dispersion applies to hipot models, not {args.model!r}")
        require_extras(f"--dispersion {dispersion_of(args)}", ("dftd3",), extra="d3")
    check_device(args.device)
    check_writable(list(files) + [getattr(args, "json", None)], folders)


def one_structure(args: argparse.Namespace, evaluations: int = 1):
    """The one structure a single-structure verb works on, checked against the model's elements
    before the model loads."""
    from ..tasks.common import read_labelled

    frames, labels = read_labelled(args.input, args.index)
    if len(frames) != 1:
        raise CLIError(f"{args.input} holds {len(frames)} structures; pick one with --index")
    atoms, label = frames[0], labels[0]
    if getattr(args, "repeat", None):
        atoms = atoms.repeat(args.repeat)
        label += f" repeated {'x'.join(map(str, args.repeat))}"
    check_frames([atoms], [label], model_species(args.model), skip_bad=False, option="")
    warn_if_large(args.command, [atoms], [label], args.model, args.device, evaluations, getattr(args, "quiet", False))
    return atoms


def friendly(func):
    """Errors that are the input's fault (ValueError from the tasks) as one line and exit status 2."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ValueError as e:
            from ..graph import StructureError
            from ..tasks.common import InputFileError

            if isinstance(e, (StructureError, InputFileError)):
                raise
            print(f"hipot {args.command}: error: {e}", file=sys.stderr)
            return 2

    return wrapper


def say(args: argparse.Namespace, msg: str) -> None:
    from ..distributed import world

    if not getattr(args, "quiet", False) and world().is_main:
        print(msg, file=sys.stderr)


def write_summary(args: argparse.Namespace, obj) -> None:
    if args.json:
        from ..tasks.common import write_json

        write_json(args.json, {"model": model_name(args), **obj})
        say(args, f"wrote {args.json}")
