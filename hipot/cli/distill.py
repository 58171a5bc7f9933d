"""`hipot distill`: a smooth HIENet trained on a teacher's predictions."""
from __future__ import annotations

import argparse
import shutil
import sys


def cmd_distill(args: argparse.Namespace) -> int:
    from ..distill import DistillSet, distill
    from ..pretrained import cache_dir
    from ..training.config import parse_override

    overrides = [parse_override(s) for s in args.set or []]
    if args.epochs is not None:
        overrides.append({"run": {"epochs": args.epochs}})
    if args.max_steps is not None:
        overrides.append({"run": {"max_steps": args.max_steps or None}})
    data_cfg = DistillSet(md_seeds=args.md_seeds, md_steps=args.md_steps, seed=args.seed)
    model_dir = distill(args.seeds, args.out, teacher=args.teacher, device=args.device, limit=args.limit,
                        max_atoms=args.max_atoms, data_cfg=data_cfg, overrides=overrides, progress=not args.quiet)
    if args.install_as:
        dest = cache_dir() / args.install_as
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(model_dir, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        print(f"hipot distill: installed as {args.install_as} ({dest})", file=sys.stderr)
    print(model_dir)
    return 0


def register(sub) -> None:
    p = sub.add_parser("distill", help="train a smooth HIENet (energy continuous at the cutoff) on a teacher's "
                                       "energies, forces and stresses")
    p.add_argument("--seeds", nargs="+", required=True,
                   help="seed structures: ASE-readable files or JSON lists of records with a pymatgen 'structure'")
    p.add_argument("--out", required=True, help="run folder (data.extxyz, student_init/, train/); "
                                                "the same command continues an interrupted run")
    p.add_argument("--teacher", default="hienet-v3", help="teacher model (default: hienet-v3)")
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int, help="at most this many seeds (random, fixed seed)")
    p.add_argument("--max-atoms", type=int, default=64, help="largest seed structure (default: 64)")
    p.add_argument("--md-seeds", type=int, help="teacher MD from at most this many seeds (default: all)")
    p.add_argument("--md-steps", type=int, default=60, help="Langevin steps per temperature (default: 60)")
    p.add_argument("--epochs", type=int, help="training epochs (default: 3)")
    p.add_argument("--max-steps", type=int, help="stop training after this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="training config override")
    p.add_argument("--install-as", metavar="NAME", help="copy the model into the cache as a named model, "
                                                        "e.g. hienet-v3-smooth (then --model NAME works)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_distill)
