"""`hipot train`, `hipot finetune` and `hipot data build|check`."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import add_threads_arg

# command-line flag -> (config section, key); given flags override the YAML
_FLAGS = {
    "train": ("data", "train"), "valid": ("data", "valid"), "valid_fraction": ("data", "valid_fraction"),
    "test": ("data", "test"),
    "format": ("data", "format"), "energy_key": ("data", "energy_key"), "forces_key": ("data", "forces_key"),
    "stress_key": ("data", "stress_key"), "stress_unit": ("data", "stress_unit"),
    "batch_size": ("data", "batch_size"), "lr": ("optim", "lr"), "epochs": ("run", "epochs"),
    "valid_every": ("run", "valid_every"),
    "out": ("run", "out"), "device": ("run", "device"), "dtype": ("run", "dtype"), "seed": ("run", "seed"),
    "from_model": ("finetune", "start"), "freeze": ("finetune", "freeze"),
}


def _overrides(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ..training.config import parse_override

    out: list[dict[str, Any]] = []
    for flag, (section, key) in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            out.append({section: {key: value}})
    if args.max_steps is not None:
        out.append({"run": {"max_steps": args.max_steps or None}})  # 0: no limit
    if getattr(args, "no_refit_shift", False):
        out.append({"finetune": {"refit_shift": False}})
    if args.quiet:
        out.append({"run": {"progress": False}})
    out += [parse_override(s) for s in args.set or []]
    return out


def _run(args: argparse.Namespace, preset: str | None) -> int:
    from pathlib import Path

    from ..distributed import world
    from ..tasks.common import Tally
    from ..training import DataError, load_config, resume, train
    from ..training.trainer import CHECKPOINT, TrainingInterrupted

    out = args.resume

    def hint() -> str:
        if out is not None and (Path(out) / CHECKPOINT).is_file():
            return f"continue from the last checkpoint with `hipot train --resume {out}`"
        return "no checkpoint was written yet: rerun the same command to start over"

    args.resume_hint = hint
    args.ctrl_c_note = None  # the trainer says itself that it stops after the current step
    try:
        if args.resume:
            path = resume(args.resume, _overrides(args))
        else:
            cfg = load_config(args.config, args.preset or preset, _overrides(args))
            out = cfg.run.out
            path = train(cfg)
    except (DataError, ValueError, FileExistsError) as e:
        print(f"hipot {args.command}: error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # what was done is in the checkpoint: say how far it got
        args.tally = Tally(e.total, e.step, "step")
        raise
    if world().is_main:
        print(path)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    return _run(args, None)


def cmd_finetune(args: argparse.Namespace) -> int:
    return _run(args, "finetune")


def cmd_data_build(args: argparse.Namespace) -> int:
    from ..training.data import DataError, LabelKeys
    from ..training.store import build_store

    keys = LabelKeys(args.energy_key, args.forces_key, args.stress_key, args.stress_unit)
    try:
        path = build_store(args.inputs, args.output, args.cutoff, keys, args.index, args.format, args.shard_size,
                           require_forces=not args.allow_missing_forces, progress=not args.quiet)
    except DataError as e:
        print(f"hipot data build: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from ..training.data import DataError, LabelKeys, read_samples, symbols

    keys = LabelKeys(args.energy_key, args.forces_key, args.stress_key, args.stress_unit)
    try:
        samples = read_samples(args.inputs, keys, args.index, args.format,
                               require_forces=not args.allow_missing_forces)
    except DataError as e:
        print(f"hipot data check: error: {e}", file=sys.stderr)
        return 2
    species = sorted({int(z) for s in samples for z in s.numbers})
    n_stress = sum(s.stress is not None for s in samples)
    print(f"{len(samples)} frames, {sum(s.num_atoms for s in samples)} atoms, elements {symbols(species)}, "
          f"{n_stress} with stress")
    return 0


def _label_args(p: argparse.ArgumentParser, defaults: bool) -> None:
    d = (lambda v: v) if defaults else (lambda v: None)
    p.add_argument("--energy-key", default=d("REF_energy"), help="info key of the energy label (default: REF_energy; "
                   "falls back to the file's own energy)")
    p.add_argument("--forces-key", default=d("REF_forces"), help="arrays key of the force labels (default: REF_forces)")
    p.add_argument("--stress-key", default=d("REF_stress"), help="info key of the stress labels (default: REF_stress)")
    p.add_argument("--stress-unit", default=d("eV/A^3"), choices=["eV/A^3", "kbar"],
                   help="unit of the stress labels, ASE sign (default: eV/A^3)")
    p.add_argument("--format", help="ASE format of the input files when the extension is not enough (e.g. vasp-out)")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with the sections data, model, statistics, loss, optim, schedule, run, finetune")
    p.add_argument("--preset", help="named partial config merged first: official, finetune, distill")
    p.add_argument("--train", nargs="+", help="training files (ASE-readable, .db, rMD17 .npz or a data store); "
                   "FILE@SLICE takes those frames, e.g. train.npz@:950")
    p.add_argument("--valid", nargs="+", help="validation files, e.g. train.npz@-50: for the last 50 frames "
                   "(default: --valid-fraction of the training frames)")
    p.add_argument("--test", nargs="+", help="test files, evaluated at the end (RUN/test_metrics.json)")
    p.add_argument("--valid-fraction", type=float, help="held-out fraction when no --valid (default: 0.05)")
    _label_args(p, defaults=False)
    p.add_argument("--epochs", type=int)
    p.add_argument("--valid-every", type=int, metavar="N", help="validate every N epochs and after the last (default: 1)")
    p.add_argument("--batch-size", type=int, help="structures per step and process")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--out", help="run folder (default: runs/hipot)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total (0: no limit)")
    p.add_argument("--device", help="auto, cpu, cuda (cuda:LOCAL_RANK under torchrun)")
    add_threads_arg(p)
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override any config value (YAML syntax), e.g. --set loss.forces_weight=10")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model from scratch (or resume a run)")
    _train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="fine-tune a trained model (HIENet-V3 by default) on new data")
    _train_args(p)
    p.add_argument("--from", dest="from_model", help="starting model: name, model folder or .pth (default: hienet-v3)")
    p.add_argument("--freeze", nargs="+", metavar="PREFIX", help="parameter-name prefixes to keep fixed, "
                   "e.g. embedding invariant_layers blocks.0")
    p.add_argument("--no-refit-shift", action="store_true", help="keep the model's per-element shifts")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("data", help="training data: check files, build a sharded on-disk store")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="write a sharded HDF5 store with neighbour lists")
    b.add_argument("inputs", nargs="+", help="input files (ASE-readable, .db, rMD17 .npz)")
    b.add_argument("-o", "--output", required=True, help="store folder")
    b.add_argument("--cutoff", type=float, default=5.0, help="neighbour-list cutoff, the model's (default: 5.0)")
    b.add_argument("--shard-size", type=int, default=10000, help="frames per shard file (default: 10000)")
    b.add_argument("--index", default=":", help="frames of each file, ASE syntax (default: all)")
    _label_args(b, defaults=True)
    b.add_argument("--allow-missing-forces", action="store_true", help="keep frames without force labels")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_data_build)
    c = data_sub.add_parser("check", help="read and validate files; report every bad frame")
    c.add_argument("inputs", nargs="+")
    c.add_argument("--index", default=":")
    _label_args(c, defaults=True)
    c.add_argument("--allow-missing-forces", action="store_true")
    c.set_defaults(func=cmd_data_check)
