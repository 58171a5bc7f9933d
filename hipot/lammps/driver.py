"""The Python side of `pair_style hipot`: one `Driver` per LAMMPS pair style, called each step.

LAMMPS (pair_hipot.cpp) hands over, per MPI rank, the edges of its local atoms (full neighbour
list, vectors x_j - x_i in double precision, ghost atoms being the periodic images and the atoms
of the neighbouring domains) and the graph's nodes: its local atoms, then the ghost atoms that
are their neighbours. Only local atoms are centres. Ghost atoms have no edges, so after
every message-passing layer whose output feeds another their node features are replaced by their
owners' (LAMMPS forward communication, `HIENet.forward`'s `exchange` hook). The energy is the sum
over the local atoms; its gradient is taken in stages, layer by layer from the top, and between
stages the gradients of the ghost features are sent back to their owners (reverse
communication), so that every rank calls each communication in the same order, from the
thread that runs LAMMPS, whatever its atoms. The result is the gradient of the total energy of
all ranks with respect to this rank's edges: forces (on ghosts too: LAMMPS sends those to their
owners, `newton on`), per-atom energies and the virial, exactly.

Keywords of `pair_style hipot MODEL [keyword value ...]` are parsed here (see docs/lammps.md).

Why one module: the settings, the step, its staged gradient and the exchange are the one Python
object the C++ bridge calls; apart they would only pass its state around.
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
from ..derivatives import edge_virials, forces_from_edge_gradient, frozen_weights
from ..execution import ExecutionOptions
from ..model import HIENet
from ..nn.tensor_product import BACKENDS
from ..optional import MissingDependency
from ..pretrained import load_model
from ..types import AtomGraph, StructureError

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
    exchange: bool = True  # debugging aid: off gives wrong results wherever ghost atoms matter
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
    """Seconds per part of the steps, when asked for (synchronising a GPU at each boundary)."""

    PARTS = ("steps", "edges_lammps", "to_device", "forward", "exchange", "backward", "reverse_exchange",
             "to_host")

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled = enabled
        self.sync = torch.cuda.synchronize if enabled and device.type == "cuda" else (lambda: None)
        self.totals = dict.fromkeys(self.PARTS, 0.0)
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

    def report(self) -> tuple[str, list[float]]:
        if not self.enabled:
            return "", []
        values = [self.totals[p] for p in self.PARTS]
        self.totals = dict.fromkeys(self.PARTS, 0.0)
        return " ".join(self.PARTS), values


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
        # the tensor-product kernel as everywhere (padded on a CPU: ghost atoms have no edges and
        # cost it nothing, hipot.nn.tensor_product.atom_runs)
        self.model = load_model(s.model, device=s.device, dtype=s.dtype, backend=s.backend)
        p = next(self.model.parameters())
        self.device, self.dtype = p.device, p.dtype
        if embedded:
            _set_threads(self.device)
        self.timer = Timer(s.timing, self.device)
        self.host = _HostBuffer(self.device)
        self.type_to_z: Tensor | None = None
        # Above this many edges per rank, per-edge activations are recomputed in the backward pass
        # instead of kept (hipot.evaluator.Evaluator uses the same bounds).
        self.recompute_edges = 200_000 if self.device.type == "cuda" else 20_000
        # test hook (tests/test_lammps.py): this rank fails in its first step, to check that one
        # rank's failure stops every rank
        self._fail_rank = int(os.environ.get("HIPOT_LAMMPS_FAIL_RANK", "-1"))

    @guarded
    def info(self) -> tuple[float, int, float]:
        """(cutoff, float64 numbers per atom of the widest exchanged features, min_distance)."""
        return float(self.model.cutoff), self.exchange_width(), float(self.settings.min_distance)

    def exchange_width(self) -> int:
        """float64 slots of the widest node-feature row any exchange sends (the invariant layers'
        channels, then each interaction block's output irreps but the last; two float32 a slot)."""
        c = self.model.config
        widths = [c.invariant_channels] + [b.irreps_out.dim for b in self.model.blocks[:-1]]
        widest = max(widths) if self.model.num_exchanges else 0
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
        dev, dt = self.device, self.dtype
        nodes_h = torch.from_numpy(np.frombuffer(nodes, dtype=np.int64))
        types_h = torch.from_numpy(np.frombuffer(types, dtype=np.intc))
        center_h = torch.from_numpy(np.frombuffer(center, dtype=np.int64))
        neighbor_h = torch.from_numpy(np.frombuffer(neighbor, dtype=np.int64))
        vec_h = torch.from_numpy(np.frombuffer(vec, dtype=np.float64)).view(-1, 3)
        n, n_edges = nodes_h.numel(), center_h.numel()
        numbers = self.type_to_z[types_h.long()].to(dev)
        center_t, neighbor_t = center_h.to(dev), neighbor_h.to(dev)
        vec64 = vec_h.to(dev)
        edge_vec = vec64.to(dt).detach().requires_grad_(True)  # detach: vec64 itself stays a plain tensor
        graph = AtomGraph(numbers=numbers, positions=torch.zeros((n, 3), dtype=dt, device=dev),
                          cell=torch.zeros((1, 3, 3), dtype=dt, device=dev),
                          pbc=torch.zeros((1, 3), dtype=torch.bool, device=dev),
                          center=center_t, neighbor=neighbor_t,
                          cell_shift=torch.zeros((n_edges, 3), dtype=dt, device=dev),
                          batch=torch.zeros(n, dtype=torch.long, device=dev),
                          ptr=torch.tensor([0, n], device=dev))
        options = ExecutionOptions.inference(recompute=n_edges > self.recompute_edges)
        comm = _Exchange(self.communicate, nodes_h, nlocal, nlocal + nghost, dev, dt, self.host)
        t.lap("to_device")

        with frozen_weights(self.model):
            stages: list[tuple[dict[int, Tensor], dict[int, Tensor]]] = []

            def exchange(xs: dict[int, Tensor]) -> dict[int, Tensor]:
                t.lap("forward")
                out = {l: v.requires_grad_(True) for l, v in comm(xs, reverse=False).items()}
                stages.append((xs, out))
                t.lap("exchange")
                return out

            with torch.enable_grad():
                energies = self.model(graph, edge_vec, options, exchange if self.settings.exchange else None)
                energy = energies[:nlocal].sum()
            e = float(energies[:nlocal].detach().to(torch.float64).sum())
            t.lap("forward")
            g = self._staged_gradient(energy, edge_vec, stages, comm)

        # outputs in float64, on the host, added to LAMMPS's arrays at the nodes' atoms
        g64 = g.to(torch.float64)
        forces = forces_from_edge_gradient(g64, center_t, neighbor_t, n)
        w = -edge_virials(vec64, g64)  # (E, 3, 3): LAMMPS's virial is minus dE/d(strain)
        w6 = torch.stack([w[:, 0, 0], w[:, 1, 1], w[:, 2, 2], w[:, 0, 1], w[:, 0, 2], w[:, 1, 2]], dim=1)
        virial = w6.sum(0).cpu()
        index = nodes_h.numpy()
        if n:
            # nodes are distinct atoms, so a fancy-indexed += adds each row once
            np.frombuffer(f, dtype=np.float64).reshape(-1, 3)[index] += forces.cpu().numpy()
        if eatom is not None and nlocal:
            np.frombuffer(eatom, dtype=np.float64)[:nlocal] += energies[:nlocal].detach().to(torch.float64).cpu().numpy()
        if vatom is not None and n:
            # half of each edge's virial on each of its two atoms
            half = 0.5 * w6
            per_atom = torch.zeros((n, 6), dtype=torch.float64, device=dev).index_add_(0, center_t, half)
            per_atom.index_add_(0, neighbor_t, half)
            np.frombuffer(vatom, dtype=np.float64).reshape(-1, 6)[index] += per_atom.cpu().numpy()
        t.lap("to_host")
        t.totals["steps"] += 1
        return e, tuple(float(v) for v in virial)

    def _staged_gradient(self, energy: Tensor, edge_vec: Tensor, stages, comm: "_Exchange") -> Tensor:
        """dE_total/d(edge vectors) through the exchanges, top layer first (see the module docstring)."""
        t = self.timer
        total = torch.zeros_like(edge_vec)
        outputs, grad_outputs = [energy], [None]
        for k in range(len(stages), -1, -1):
            inputs = [edge_vec] + (list(stages[k - 1][1].values()) if k > 0 else [])
            keep = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
            if keep:
                grads = torch.autograd.grad([o for o, _ in keep], inputs, [g for _, g in keep],
                                            retain_graph=k > 0, allow_unused=True)
            else:
                grads = [None] * len(inputs)
            if grads[0] is not None:
                total += grads[0]
            t.lap("backward")
            if k == 0:
                break
            xs, out = stages[k - 1]
            g_out = {l: gr if gr is not None else torch.zeros_like(o) for (l, o), gr in zip(out.items(), grads[1:])}
            g_in = comm(g_out, reverse=True)
            outputs, grad_outputs = [xs[l] for l in g_in], [g_in[l] for l in g_in]
            t.lap("reverse_exchange")
        return total

    @guarded
    def timing(self) -> tuple[str, list[float]]:
        """(space-separated part names, seconds per part) since the last call; empty unless timing."""
        return self.timer.report()


class _Exchange:
    """LAMMPS communication of node features {l: (nodes, mul, 2l+1)} or of their gradients.

    LAMMPS communicates rows of all its nlocal + nghost atoms (a ghost may pass features on to
    the ghosts of the next direction), so the nodes' rows are placed into a host array of that
    size and read back from it. Forward: ghost rows <- their owners' (the model's values for
    ghost nodes are discarded). Reverse: owners += their ghosts' rows; ghost nodes then get
    zero, the gradient having moved to the owner.

    The rows are laid out on the model's device and cross to the host in one copy each way,
    into a host buffer kept between calls (pinned for a GPU); only the rows LAMMPS reads cross
    (forward: the local rows out, the ghost rows back; reverse: all rows out, the local rows
    back). A float32 model sends float32 pairs in LAMMPS's float64 slots: half the bytes."""

    def __init__(self, communicate: Communicate, nodes: Tensor, nlocal: int, natoms: int, device: torch.device,
                 dtype: torch.dtype, host: "_HostBuffer"):
        self.communicate, self.nlocal, self.natoms = communicate, nlocal, natoms
        self.nodes = nodes.to(device)
        self.device, self.dtype, self.host = device, dtype, host
        self.float32 = dtype == torch.float32  # else float64: one number a slot

    def __call__(self, xs: dict[int, Tensor], reverse: bool) -> dict[int, Tensor]:
        keys = sorted(xs)
        n, nlocal = self.nodes.numel(), self.nlocal
        widths = [xs[l].shape[1] * xs[l].shape[2] for l in keys]
        width = sum(widths) + (sum(widths) % 2 if self.float32 else 0)  # whole float64 slots
        rows = self.host.get(self.natoms * width, self.dtype).view(self.natoms, width)
        flat = torch.cat([xs[l].detach().reshape(n, w) for l, w in zip(keys, widths)], dim=1)
        if width > flat.shape[1]:
            flat = torch.nn.functional.pad(flat, (0, width - flat.shape[1]))
        if reverse and self.device.type == "cpu":
            rows.zero_().index_copy_(0, self.nodes, flat)
        elif reverse:
            laid = torch.zeros((self.natoms, width), dtype=self.dtype, device=self.device)
            rows.copy_(laid.index_copy_(0, self.nodes, flat))
        else:
            rows[:nlocal].copy_(flat[:nlocal])  # owners are local atoms; LAMMPS fills the ghost rows
        slots = width // 2 if self.float32 else width
        self.communicate(rows.data_ptr(), slots, reverse, self.float32)
        if reverse:
            out = torch.zeros((n, width), dtype=self.dtype, device=self.device)
            out[:nlocal] = rows[:nlocal]
        else:
            ghosts = rows[nlocal:].to(self.device)
            out = torch.cat([flat[:nlocal], ghosts.index_select(0, self.nodes[nlocal:] - nlocal)])
        parts = out[:, : sum(widths)].split(widths, dim=1)
        return {l: p.reshape(xs[l].shape).contiguous() for l, p in zip(keys, parts)}


class _HostBuffer:
    """One growing host buffer for the exchanges of every step (pinned when the model is on a GPU,
    so that the copies run at full speed and nothing is allocated per exchange)."""

    def __init__(self, device: torch.device):
        self.pin = device.type == "cuda"
        self.data = torch.empty(0, dtype=torch.uint8)

    def get(self, numel: int, dtype: torch.dtype) -> Tensor:
        nbytes = numel * dtype.itemsize
        if self.data.numel() < nbytes:
            self.data = torch.empty(int(nbytes * 1.25) + 64, dtype=torch.uint8, pin_memory=self.pin)
        return self.data[:nbytes].view(dtype)
