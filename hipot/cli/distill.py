"""`hipot distill`: a smooth HIENet trained on a teacher's predictions."""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys

from .common import add_threads_arg


def recipe_from_args(args: argparse.Namespace):
    """The recipe of --config (or the defaults), with the command line's values on top."""
    from ..distill import Recipe

    recipe = Recipe.load(args.config) if args.config else Recipe()
    for name in ("seeds", "test", "teacher", "limit", "max_atoms", "smooth_from"):
        value = getattr(args, name)
        if value is not None:
            setattr(recipe, name, value)
    data = {k: v for k, v in (("md_seeds", args.md_seeds), ("md_steps", args.md_steps), ("seed", args.seed),
                              ("workers", args.workers)) if v is not None}
    recipe.data = dataclasses.replace(recipe.data, **data)
    if not recipe.seeds:
        raise SystemExit("hipot distill: no seed structures: give --seeds FILE... or a --config with `seeds`")
    return recipe


def cmd_distill(args: argparse.Namespace) -> int:
    from ..distill import distill
    from ..pretrained import cache_dir
    from ..training.config import parse_override

    recipe = recipe_from_args(args)
    if args.install_as:
        from ..pretrained import REGISTRY, SHIPPED

        if args.install_as in REGISTRY or args.install_as in SHIPPED:
            raise SystemExit(f"hipot distill: --install-as {args.install_as}: that name belongs to a model hipot "
                             "fetches or ships; install your model under another name (e.g. my-smooth)")
    # what Ctrl-C prints (hipot.cli.main): data parts and the training checkpoint are kept
    args.resume_hint = (f"rerun the same command (--out {args.out}) to continue: finished data parts are kept "
                        "and training resumes from its last checkpoint")
    overrides = [parse_override(s) for s in args.set or []]
    if args.epochs is not None:
        overrides.append({"run": {"epochs": args.epochs}})
    if args.max_steps is not None:
        overrides.append({"run": {"max_steps": args.max_steps or None}})
    if args.time_limit is not None:
        overrides.append({"run": {"time_limit": args.time_limit * 60.0}})
    if args.from_pack:
        from ..distill.travel import unpack

        step = unpack(args.from_pack, args.out)
        print(f"hipot distill: {args.out} continues from step {step} (travel pack {args.from_pack})", file=sys.stderr)
    if args.data_only:
        from ..distill.run import data_only

        data_only(recipe, args.out, device=args.device, progress=not args.quiet)
        model_dir = None
    else:
        model_dir = distill(recipe, args.out, device=args.device, overrides=overrides, progress=not args.quiet)
    if args.pack_to:
        from ..distill.travel import pack

        pack(args.out, args.pack_to)
        print(f"hipot distill: travel pack written to {args.pack_to}", file=sys.stderr)
    if model_dir is None:
        return 0
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
                                       "energies, forces and stresses",
                       description="Seeds -> rattled, strained and element-substituted copies, teacher relaxations "
                                   "and MD -> teacher labels -> the teacher's weights with smooth_invariant=True, "
                                   "trained with the `distill` preset. The same command continues an interrupted "
                                   "run. The recipe used for hienet-v3-smooth: benchmarks/smooth/distill_recipe.yaml.")
    p.add_argument("--config", help="recipe YAML (seeds, test, teacher, max_atoms, limit, data, training); the "
                                    "options below override it")
    p.add_argument("--seeds", nargs="+",
                   help="seed structures: ASE-readable files or JSON with pymatgen structures (matcalc files)")
    p.add_argument("--test", nargs="+", help="held-out structures, labelled by the teacher and scored at the end")
    p.add_argument("--out", required=True, help="run folder (data/, md/, student_init/, train/); "
                                                "the same command continues an interrupted run")
    p.add_argument("--teacher", help="teacher model (default: hienet-v3)")
    p.add_argument("--device", default="auto")
    add_threads_arg(p)
    p.add_argument("--limit", type=int, help="at most this many seeds (random, fixed seed)")
    p.add_argument("--max-atoms", type=int, help="largest seed structure (default: 64)")
    p.add_argument("--md-seeds", type=int, help="teacher MD from at most this many structures (default: all)")
    p.add_argument("--md-steps", type=int, help="Langevin steps per temperature (default: 60)")
    p.add_argument("--smooth-from", type=float, metavar="A",
                   help="where the student's invariant messages begin to fade (A; 0: over the whole range, "
                        "the default; ModelConfig.smooth_from)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the distill preset's 6)")
    p.add_argument("--max-steps", type=int, help="stop training after this many steps in total (resumable)")
    p.add_argument("--time-limit", type=float, metavar="MIN",
                   help="stop training after MIN minutes of training in this invocation (resumable)")
    p.add_argument("--data-only", action="store_true", help="make the teacher-labelled data, then stop")
    p.add_argument("--pack-to", metavar="DIR",
                   help="at the end, write a travel pack of the run (data + EMA weights + progress, in files of "
                        "at most 15 MiB) to DIR, from which --from-pack continues on another machine")
    p.add_argument("--from-pack", metavar="DIR",
                   help="first rebuild --out from the travel pack in DIR (unless --out is already as far)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="teacher processes making the data side by side (default: the recipe's, 1); on a GPU machine "
                        "with many cores about cores/2 (the data do not depend on it)")
    p.add_argument("--seed", type=int, help="seed of the data (default: 0)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="training config override")
    p.add_argument("--install-as", metavar="NAME", help="copy the model into the cache as a named model, "
                                                        "e.g. hienet-v3-smooth (then --model NAME works)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_distill)
