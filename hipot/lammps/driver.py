"""The Python side of `pair_style hipot`: one `Driver` per LAMMPS pair style, called each step.

LAMMPS (pair_hipot.cpp) hands over, per MPI rank, the edges of its local atoms (full neighbour
list, vectors x_j - x_i in double precision) and the graph's nodes: its local atoms, then one
ghost row per atom of another rank that some local atom has as a neighbour. A ghost atom that is a
periodic image of a local atom is no node: its edges go to the local atom, with the image's vector
(on one rank every ghost is such an image, so the graph is the same as the ASE calculator's).
The step is `hipot.potential.Potential`, as for every engine: the same edge order, kernels,
execution policy and CUDA-graph replay as the evaluator. On several ranks the ghost rows' node
features come from their owners right before each gather (LAMMPS forward communication) and their
gradients go back (reverse communication), in stages (`hipot.exchange`); every rank calls each
communication in the same order, from the thread that runs LAMMPS, whatever its atoms. The
result is the gradient of the total energy of all ranks with respect to this rank's edges:
forces (on ghost rows too: LAMMPS sends those to their owners, `newton on`), per-atom energies,
the virial and per-atom virials, exactly, summed in float64.

Keywords of `pair_style hipot MODEL [keyword value ...]` are parsed here (see docs/lammps.md).

Why one module: the settings, the step and the LAMMPS transport of the exchange are the one
Python object the C++ bridge calls; apart they would only pass its state around.
"""
from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..checkpoint import ModelFileError
from ..derivatives import ForceStressModel
from ..execution import ExecutionPolicy
from ..nn.tensor_product import BACKENDS
from ..optional import MissingDependency
from ..potential import Potential
from ..pretrained import load_model
from ..types import PotentialInput, Prediction, StructureError

# exchange(pointer, width, reverse, float32): LAMMPS communication, in place, of a C-contiguous
# (nlocal + nghost, width) array of float64 slots, each holding one float64 or, with float32, two
# float32 (bridge.h, hipot_exchange_fn; pair_hipot.cpp, PairHIPot::exchange)
Communicate = Callable[[int, int, bool, bool], None]

_LOCAL_SIZE = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "LOCAL_WORLD_SIZE")


class PairError(RuntimeError):
    """What LAMMPS prints after 'ERROR: pair hipot: '."""


# Exceptions whose message says what is wrong with the user's input; any other is a bug or a
# failure of the machine and gets its traceback printed as well.
_USER_ERRORS = (PairError, ModelFileError, StructureError, MissingDependency, ValueError, KeyError,
                FileNotFoundError, NotADirectoryError, PermissionError)


def guarded(method):
    """Exceptions out of a Driver method become PairError with a one-line message (the bridge
    passes it to LAMMPS's error handling); unexpected ones print their traceback to stderr."""

    @functools.wraps(method)
    def call(self, *args):
        try:
            return method(self, *args)
        except _USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise PairError(msg) from None
        except Exception as e:  # noqa: BLE001 - reported to LAMMPS, which stops every rank
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            raise PairError(f"{type(e).__name__} in the model (rank {self.rank}): {e} "
                            "(Python traceback on stderr)") from None

    return call


@dataclass
class Settings:
    model: str
    device: str = "auto"
    dtype: str = "float32"
    backend: str = "auto"
    min_distance: float = 0.1
    exchange: bool = True  # debugging aid: off gives wrong results on several ranks (ghost rows get zeros)
    timing: bool = False

    KEYWORDS = "device, dtype, backend, min_distance, timing, exchange"

    @classmethod
    def parse(cls, args: list[str]) -> "Settings":
        if not args:
            raise PairError("pair_style hipot needs a model: pair_style hipot MODEL [keyword value ...]")
        model, rest = args[0], args[1:]
        if len(rest) % 2:
            raise PairError(f"keyword {rest[-1]!r} of pair_style hipot has no value (keywords: {cls.KEYWORDS})")
        out = cls(model=model, timing=_yes(os.environ.get("HIPOT_LAMMPS_TIMING", "no"), "HIPOT_LAMMPS_TIMING"))
        for key, value in zip(rest[::2], rest[1::2]):
            if key in ("device", "dtype", "backend"):
                setattr(out, key, value)
            elif key == "min_distance":
                try:
                    out.min_distance = float(value)
                except ValueError:
                    raise PairError(f"min_distance must be a number, not {value!r}") from None
            elif key in ("timing", "exchange"):
                setattr(out, key, _yes(value, key))
            else:
                raise PairError(f"unknown keyword {key!r} of pair_style hipot (keywords: {cls.KEYWORDS})")
        if out.backend not in BACKENDS:
            raise PairError(f"backend must be one of {', '.join(BACKENDS)}, not {out.backend!r}")
        return out


def _yes(value: str, key: str) -> bool:
    v = value.lower()
    if v in ("yes", "on", "1", "true"):
        return True
    if v in ("no", "off", "0", "false"):
        return False
    raise PairError(f"{key} must be yes or no, not {value!r}")


def _set_threads(device: torch.device) -> None:
    """Unless OMP_NUM_THREADS says otherwise, the ranks on a node share its cores instead of
    each taking them all."""
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return
    local = next((os.environ[k] for k in _LOCAL_SIZE if k in os.environ), "1")
    try:
        ranks = max(1, int(local.split("(")[0].split(",")[0]))
    except ValueError:
        ranks = 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // ranks))


class Timer:
    """Seconds per part of the steps, when asked for (synchronising a GPU at each boundary), and
    the mean size of the steps' graphs."""

    PARTS = ("steps", "edges_lammps", "to_device", "forward", "exchange", "backward", "reverse_exchange",
             "to_host")
    COUNTS = ("graph_nodes", "exchanged_rows")  # per step: nodes; ghost rows each exchange receives

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled = enabled
        self.sync = torch.cuda.synchronize if enabled and device.type == "cuda" else (lambda: None)
        self.totals = dict.fromkeys(self.PARTS + self.COUNTS, 0.0)
        self._last = 0.0

    def start(self) -> None:
        if self.enabled:
            self.sync()
            self._last = time.perf_counter()

    def lap(self, part: str) -> None:
        """Charge the time since the previous lap (or start) to `part`."""
        if self.enabled:
            self.sync()
            now = time.perf_counter()
            self.totals[part] += now - self._last
            self._last = now

    def count(self, nodes: int, rows: int) -> None:
        self.totals["steps"] += 1
        self.totals["graph_nodes"] += nodes
        self.totals["exchanged_rows"] += rows

    def report(self) -> tuple[str, list[float]]:
        """Part names and seconds since the last report, then the counts as means per step."""
        if not self.enabled:
            return "", []
        steps = max(self.totals["steps"], 1)
        values = [self.totals[p] for p in self.PARTS] + [self.totals[c] / steps for c in self.COUNTS]
        self.totals = dict.fromkeys(self.PARTS + self.COUNTS, 0.0)
        return " ".join(self.PARTS + self.COUNTS), values


class Driver:
    """`pair_style hipot` on one MPI rank: the model, the type -> element map, one step at a time."""

    def __init__(self, args: list[str], communicate: Communicate, rank: int = 0, nprocs: int = 1,
                 embedded: bool = False):
        """embedded: the interpreter was started by the plugin (the `lmp` program), so this
        process's thread settings are the plugin's to choose, not a Python caller's."""
        self.rank, self.nprocs = rank, nprocs
        self._init(list(args), communicate, embedded)

    @guarded
    def _init(self, args: list[str], communicate: Communicate, embedded: bool) -> None:
        s = Settings.parse(args)
        self.settings = s
        self.communicate = communicate
        # the model, kernel and execution policy as everywhere (hipot.potential)
        self.model = load_model(s.model, device=s.device, dtype=s.dtype, backend=s.backend)
        p = next(self.model.parameters())
        self.device, self.dtype = p.device, p.dtype
        if embedded:
            _set_threads(self.device)
        self.timer = Timer(s.timing, self.device)
        self.host = _HostBuffers(self.device)
        self.type_to_z: Tensor | None = None
        self.potential = Potential(ForceStressModel(self.model), ExecutionPolicy.for_device(self.device.type))
        # test hook (tests/test_lammps.py): this rank fails in its first step, to check that one
        # rank's failure stops every rank
        self._fail_rank = int(os.environ.get("HIPOT_LAMMPS_FAIL_RANK", "-1"))

    @guarded
    def info(self) -> tuple[float, int, float]:
        """(cutoff, float64 numbers per atom of the widest exchanged features, min_distance)."""
        return float(self.model.cutoff), self.exchange_width(), float(self.settings.min_distance)

    def exchange_width(self) -> int:
        """float64 slots of the widest node-feature row any exchange sends (two float32 a slot)."""
        widest = max(self.model.exchange_widths(), default=0)
        return (widest + 1) // 2 if self.dtype == torch.float32 else widest

    @guarded
    def set_elements(self, elements: list[str]) -> None:
        """pair_coeff * * El1 El2 ...: type k (1-based) is elements[k - 1]."""
        from ase.data import atomic_numbers, chemical_symbols

        known = set(self.model.species)
        z = [0]
        for k, el in enumerate(elements, start=1):
            if el not in atomic_numbers or el == "X":
                raise PairError(f"pair_coeff: {el!r} (atom type {k}) is not an element symbol")
            if atomic_numbers[el] not in known:
                names = " ".join(chemical_symbols[n] for n in sorted(known))
                raise PairError(f"pair_coeff: element {el} (atom type {k}) is not known to the model "
                                f"{self.settings.model!r}, which knows: {names}")
            z.append(atomic_numbers[el])
        self.type_to_z = torch.tensor(z, dtype=torch.long)

    @guarded
    def compute(self, nlocal: int, nghost: int, nodes, types, center, neighbor, vec, f, eatom, vatom,
                seconds_edges: float = 0.0) -> tuple[float, tuple[float, ...]]:
        """One step (arrays as bridge.h describes them): adds forces to `f`, per-atom energies to
        `eatom` and per-atom virials to `vatom` (when LAMMPS asks for them); returns this rank's
        energy and virial (xx, yy, zz, xy, xz, yz; LAMMPS's sign: sum r F, minus dE/d(strain)).
        `seconds_edges`: the time LAMMPS took to list the edges, for the timing report."""
        if self.type_to_z is None:
            raise PairError("pair_coeff * * El1 El2 ... must follow pair_style hipot")
        if self.rank == self._fail_rank:
            raise RuntimeError("failing on purpose (HIPOT_LAMMPS_FAIL_RANK)")
        t = self.timer
        t.start()
        t.totals["edges_lammps"] += seconds_edges
        nodes_h = torch.from_numpy(np.frombuffer(nodes, dtype=np.int64))
        types_h = torch.from_numpy(np.frombuffer(types, dtype=np.intc))
        up = self.host.upload
        inp = PotentialInput(numbers=up("numbers", self.type_to_z[types_h.long()]),
                             center=up("center", torch.from_numpy(np.frombuffer(center, dtype=np.int64))),
                             neighbor=up("neighbor", torch.from_numpy(np.frombuffer(neighbor, dtype=np.int64))),
                             edge_vec=up("vec", torch.from_numpy(np.frombuffer(vec, dtype=np.float64)).view(-1, 3)),
                             num_nodes=nlocal)
        n = inp.numbers.shape[0]
        exchange = self._exchange(nodes_h[nlocal:], nlocal, nlocal + nghost)
        t.lap("to_device")
        pred = self.potential(inp, forces=True, virial=True, atom_virials=vatom is not None, exchange=exchange,
                              marks=t.lap)
        self._write(pred, nodes_h.numpy(), nlocal, f, eatom, vatom)
        t.lap("to_host")
        t.count(n, n - nlocal)
        w = pred.virial[0]
        return float(pred.energy[0]), (float(w[0, 0]), float(w[1, 1]), float(w[2, 2]), float(w[0, 1]),
                                       float(w[0, 2]), float(w[1, 2]))

    def _exchange(self, ghost_index: Tensor, nlocal: int, natoms: int) -> "_LammpsExchange | _NoExchange | None":
        """How ghost rows get their features: none on one rank (every ghost is folded onto its
        owner, so there is nothing to exchange); else LAMMPS communication on every rank alike,
        whatever its own rows (or zeros, with the debugging keyword `exchange no`)."""
        if self.nprocs == 1:
            return None
        if not self.settings.exchange:
            return _NoExchange(nlocal, ghost_index.numel())
        return _LammpsExchange(self.communicate, ghost_index, nlocal, natoms, self.device, self.dtype, self.host,
                               self.timer)

    @staticmethod
    def _write(pred: Prediction, index: np.ndarray, nlocal: int, f, eatom, vatom) -> None:
        """Add the prediction to LAMMPS's arrays at the nodes' atoms (distinct atoms, so a
        fancy-indexed += adds each row once)."""
        if not index.size:
            return
        np.frombuffer(f, dtype=np.float64).reshape(-1, 3)[index] += pred.forces.cpu().numpy()
        if eatom is not None and nlocal:
            np.frombuffer(eatom, dtype=np.float64)[:nlocal] += pred.energies.detach().cpu().numpy()
        if vatom is not None:
            w = pred.atom_virials
            w6 = torch.stack([w[:, 0, 0], w[:, 1, 1], w[:, 2, 2], w[:, 0, 1], w[:, 0, 2], w[:, 1, 2]], dim=1)
            np.frombuffer(vatom, dtype=np.float64).reshape(-1, 6)[index] += w6.cpu().numpy()

    @guarded
    def timing(self) -> tuple[str, list[float]]:
        """(space-separated part names, seconds per part) since the last call; empty unless timing."""
        return self.timer.report()


class _NoExchange:
    """`exchange no` (debugging): ghost rows get zeros and send nothing back."""

    def __init__(self, nlocal: int, nghosts: int):
        self.nlocal, self.nghosts = nlocal, nghosts

    def ghosts(self, x: Tensor) -> Tensor:
        return x.new_zeros((self.nghosts, x.shape[1]))

    def owners(self, g: Tensor) -> Tensor:
        return g.new_zeros((self.nlocal, g.shape[1]))


class _LammpsExchange:
    """`hipot.exchange.GhostExchange` through LAMMPS's communication of a (nlocal + nghost, width)
    host array (a ghost atom may pass rows on to the ghosts of the next direction, so LAMMPS
    reads and writes rows of all its atoms).

    Forward: the local rows cross to the host in one copy, LAMMPS fills its ghost atoms' rows from
    their owners, and the ghost rows of the graph (one LAMMPS ghost atom per remote atom) are
    gathered into a kept host buffer and cross back in one copy. Reverse: the ghost rows' gradients
    cross in one copy, are placed at their LAMMPS atoms in an array kept zero between calls, LAMMPS
    adds ghost rows to their owners (leaving them zero), and the local rows cross back in one copy. Host buffers are kept between
    calls (pinned for a GPU). A float32 model sends float32 pairs in LAMMPS's float64 slots: half
    the bytes."""

    def __init__(self, communicate: Communicate, ghost_index: Tensor, nlocal: int, natoms: int,
                 device: torch.device, dtype: torch.dtype, host: "_HostBuffers", timer: Timer):
        self.communicate, self.nlocal, self.natoms = communicate, nlocal, natoms
        self.ghost_index = ghost_index
        self.device, self.dtype, self.host, self.timer = device, dtype, host, timer
        self.float32 = dtype == torch.float32  # else float64: one number a slot

    def _width(self, w: int) -> int:
        return w + (w % 2 if self.float32 else 0)  # whole float64 slots

    def _call(self, rows: Tensor, reverse: bool) -> None:
        slots = rows.shape[1] // 2 if self.float32 else rows.shape[1]
        self.communicate(rows.data_ptr(), slots, reverse, self.float32)

    def ghosts(self, x: Tensor) -> Tensor:
        self.timer.lap("forward")
        w = x.shape[1]
        width = self._width(w)
        x = torch.nn.functional.pad(x, (0, width - w)) if width > w else x
        rows = self.host.get("forward", self.natoms * width, self.dtype).view(self.natoms, width)
        rows[: self.nlocal].copy_(x)  # owners are local atoms; LAMMPS fills the ghost rows
        self._call(rows, reverse=False)
        staged = self.host.get("ghosts", self.ghost_index.numel() * width, self.dtype).view(-1, width)
        torch.index_select(rows, 0, self.ghost_index, out=staged)
        out = staged.to(self.device, copy=True)[:, :w]
        self.timer.lap("exchange")
        return out

    def owners(self, g: Tensor) -> Tensor:
        self.timer.lap("backward")
        w = g.shape[1]
        width = self._width(w)
        staged = self.host.get("ghosts", self.ghost_index.numel() * width, self.dtype).view(-1, width)
        staged[:, :w].copy_(g)
        staged[:, w:].zero_()
        # zero between reverse exchanges: LAMMPS leaves the ghost rows zero (pair_hipot.cpp,
        # pack_reverse_comm), the local rows are cleared below, so nothing is cleared in full
        rows = self.host.get("reverse", self.natoms * width, self.dtype, zeroed=True).view(self.natoms, width)
        rows.index_copy_(0, self.ghost_index, staged)
        self._call(rows, reverse=True)
        out = rows[: self.nlocal, :w].to(self.device, copy=True)
        rows[: self.nlocal].zero_()
        self.timer.lap("reverse_exchange")
        return out


class _HostBuffers:
    """Host memory kept between steps (pinned when the model is on a GPU, so that copies run at
    full speed and nothing is allocated per exchange): named growing buffers, and the upload of
    the step's inputs."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pin = device.type == "cuda"
        self.data: dict[str, Tensor] = {}

    def get(self, name: str, numel: int, dtype: torch.dtype, zeroed: bool = False) -> Tensor:
        """The first `numel` elements of buffer `name` (zero when new, with `zeroed`)."""
        nbytes = numel * dtype.itemsize
        buf = self.data.get(name)
        if buf is None or buf.numel() < nbytes:
            make = torch.zeros if zeroed else torch.empty
            buf = self.data[name] = make(int(nbytes * 1.25) + 64, dtype=torch.uint8, pin_memory=self.pin)
        return buf[:nbytes].view(dtype)

    def upload(self, name: str, t: Tensor) -> Tensor:
        """A host tensor (LAMMPS's memory) on the model's device: through the pinned buffer `name`
        for a GPU (asynchronous: the previous step's copies are done, its forces were read back);
        on a CPU the tensor itself (valid for the step)."""
        if not self.pin:
            return t
        staged = self.get(name, t.numel(), t.dtype).view(t.shape)
        staged.copy_(t)
        return staged.to(self.device, non_blocking=True)
