"""`hipot check MODEL`: the physics contract (hipot.testing) on a model through its doors."""
from __future__ import annotations

import argparse
import sys

from .common import INPUT_HELP, CLIError, add_model_args, check_frames, model_species, prepare, say
from .options import claim_outputs


def cmd_check(args: argparse.Namespace) -> int:
    from ..check import ENGINES, check_model, declared_for

    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        raise CLIError(f"--engines: unknown {', '.join(unknown)} (choose from {', '.join(ENGINES)})")
    if args.reflection_tolerance is not None and not args.reflection_tolerance >= 0:
        raise CLIError(f"--reflection-tolerance must be >= 0 eV/atom (got {args.reflection_tolerance:g})")
    claim_outputs(args, json=None)
    prepare(args)
    if "torchsim" in args.engines:
        import importlib

        importlib.import_module("hipot.torchsim")  # says what is missing: torch-sim, or Python >= 3.12
    structures = None
    if args.structures:
        from ..tasks.common import read_labelled

        structures, labels = read_labelled(args.structures)
        for a, label in zip(structures, labels):
            a.info.setdefault("name", label.rsplit("/", 1)[-1])
        check_frames(structures, labels, model_species(args.model), skip_bad=False, option="")
    dispersion = None if args.dispersion == "none" else args.dispersion
    declared = declared_for(args.model, dispersion)
    if args.reflection_tolerance is not None:  # the user's own declaration (eV/atom; forces and stress unchecked)
        from dataclasses import replace

        declared = replace(declared, reflection_energy=args.reflection_tolerance, reflection_forces=None,
                           reflection_stress=None, why_reflection="declared with --reflection-tolerance")
    reports = check_model(args.model, args.device, args.dtype, dispersion, args.engines, structures, declared,
                          fd=not args.no_fd)
    for name, report in reports.items():
        say(args, f"== {name} ({args.dtype}): {'passed' if report.passed else f'{len(report.failures)} FAILED'}")
        if not args.quiet or not report.passed:
            print("\n".join(str(c) for c in (report.checks if not args.quiet else report.failures)))
    if args.json:
        from ..io import write_json

        write_json(args.json, {"model": str(args.model), "dtype": args.dtype, "dispersion": args.dispersion,
                               "passed": all(r.passed for r in reports.values()),
                               "engines": {name: [vars(c) for c in r.checks] for name, r in reports.items()}})
        say(args, f"wrote {args.json}")
    failed = [name for name, r in reports.items() if not r.passed]
    if failed:
        print(f"hipot check: the contract fails through {', '.join(failed)}", file=sys.stderr)
        return 1
    say(args, f"hipot check: {args.model} passes the contract through {', '.join(reports)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("check", help="run the physics contract on a model: finite differences, symmetries, extensivity, "
                                     "per-atom sums, batching, the cutoff",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Every check is printed with what it measured and what it allowed (docs/contract.md).\n"
                              "Exit status 0: passed; 1: a check failed; 2: bad input.\n"
                              "JSON (--json): model, dtype, dispersion, passed, engines {name: [{name, structure, "
                              "passed, measured, allowed, note}]}.")
    p.add_argument("model", help="model name (hienet-v3), hipot model folder or official .pth")
    add_model_args(p, model=False)
    p.set_defaults(dtype="float64")  # the strictest tolerances; --dtype float32 checks the float32 path
    p.add_argument("--engines", nargs="+", default=["calculator", "evaluator"],
                   help="doors to check: calculator, evaluator, torchsim (default: calculator evaluator)")
    p.add_argument("--structures", metavar="FILE", help=f"check on these structures instead ({INPUT_HELP})")
    p.add_argument("--reflection-tolerance", type=float, metavar="EV_PER_ATOM",
                   help="declare how far a mirror image may change the energy (default: 1e-3 for hienet-v3, "
                        "measured and reported only for other HIENet models, which are SO(3)-only)")
    p.add_argument("--no-fd", action="store_true", help="leave out the finite differences (the costliest part)")
    p.add_argument("--json", help="write every check here")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failed checks")
    p.set_defaults(func=cmd_check)
