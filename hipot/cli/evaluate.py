"""`hipot evaluate`: accuracy report against DFT, with peer models in the same run."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .common import add_model_args

# --quick: CPU-sized subsets (structures of at most QUICK_MAX_ATOMS atoms)
QUICK_LIMITS = {"wbm": 4, "dcdft": 6, "elastic": 2, "diatomics": 5, "phonons": 2, "heat_capacity": 2, "kappa": 2}
QUICK_MAX_ATOMS = 6
# Full run: every structure for the hipot model except elasticity (250 of 3953) and the heat
# capacity (300 of 1170); peers relax one structure at a time, so they get prefixes of the same
# seeded order
FULL_LIMITS = {"elastic": 250, "heat_capacity": 300}
PEER_LIMITS = {"wbm": 80, "elastic": 15, "diatomics": 12, "heat_capacity": 20, "kappa": 5}
# Where a run writes by default: never over the committed report (benchmarks/ACCURACY.md is
# written only when --out names it)
DEFAULT_OUT = "evaluate-out/ACCURACY.md"
QUICK_OUT = "evaluate-quick/ACCURACY.md"


def parse_limits(values: list[str] | None, base: dict[str, int | None]) -> dict[str, int | None]:
    """'N' (every benchmark) or 'BENCH=N' (N may be 'all'), applied over `base`."""
    from ..evaluate.common import BENCHMARKS

    out = dict(base)
    for v in values or []:
        for part in v.split(","):
            name, _, n = part.rpartition("=")
            num = None if n.strip().lower() in ("all", "none") else int(n)
            if name:
                if name not in BENCHMARKS:
                    raise SystemExit(f"hipot evaluate: unknown benchmark {name!r} in --limit (known: {', '.join(BENCHMARKS)})")
                out[name] = num
            else:
                out = {b: num for b in BENCHMARKS}
    return out


def quiet_warnings() -> None:
    """Known harmless warnings that would bury the progress lines: scipy's logm accuracy note
    (FrechetCellFilter, every step) and the peers' own deprecation/tensor notes."""
    import warnings

    warnings.filterwarnings("ignore", message="logm result may be inaccurate")
    warnings.filterwarnings("ignore", category=UserWarning, module="chgnet")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from ..tasks.checks import ResultWarning

    warnings.filterwarnings("ignore", category=ResultWarning)  # recorded in the raw results and counted in the report


def refuse_overwrite(out: Path, raw_dir: Path, quick: bool, force: bool) -> None:
    """A --quick run never replaces a full run's report or raw results (unless --force)."""
    import json

    from ..evaluate.report import QUICK_BANNER

    if not quick or force:
        return
    if out.is_file() and QUICK_BANNER not in out.read_text():
        raise SystemExit(f"hipot evaluate: {out} holds the report of a full run; a --quick run writes elsewhere "
                         f"(default {QUICK_OUT}; --force replaces it)")
    manifest = raw_dir / "run.json"
    if manifest.is_file() and not json.loads(manifest.read_text()).get("quick"):
        raise SystemExit(f"hipot evaluate: {raw_dir} holds raw results of a full run; a --quick run writes elsewhere "
                         "(--raw, or --force)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluate.common import BENCHMARKS, Options, log
    from ..evaluate.data import default_data_dir
    from ..evaluate.report import write_report
    from ..evaluate.runner import complete_raw, run_all

    quiet_warnings()
    if args.report_only:
        raw_dir = Path(args.report_only)
        out = Path(args.out or raw_dir.parent.parent / "ACCURACY.md")
        plots = Path(args.plots) if args.plots else out.parent / "accuracy"
        for changed in complete_raw(raw_dir):
            log(f"completed {changed} (steps the run left to the report)")
        path = write_report(raw_dir, out, plots)
        print(f"wrote {path}", file=sys.stderr)
        return 0
    out = Path(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT))
    plots = Path(args.plots) if args.plots else out.parent / "accuracy"
    raw_dir = Path(args.raw) if args.raw else plots / ("raw-quick" if args.quick else "raw")
    refuse_overwrite(out, raw_dir, args.quick, args.force)
    data_dir = Path(args.data) if args.data else default_data_dir()
    if not data_dir.is_dir():
        raise SystemExit(f"hipot evaluate: data folder {data_dir} not found (--data or $HIPOT_DATA)")
    benches = BENCHMARKS if args.benchmarks == "all" else [b.strip() for b in args.benchmarks.split(",")]
    for b in benches:
        if b not in BENCHMARKS:
            raise SystemExit(f"hipot evaluate: unknown benchmark {b!r} (known: {', '.join(BENCHMARKS)})")
    peers = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    opts = Options(data_dir, limits=parse_limits(args.limit, QUICK_LIMITS if args.quick else FULL_LIMITS),
                   peer_limits=parse_limits(args.peer_limit, {} if args.quick else PEER_LIMITS), quick=args.quick,
                   batch_size=args.batch_size, max_atoms=args.max_structure_atoms or (QUICK_MAX_ATOMS if args.quick else None),
                   only={"kappa": [c.strip() for c in args.kappa_compounds.split(",") if c.strip()]}
                   if args.kappa_compounds else {})
    if opts.only.get("kappa"):  # an unknown or ambiguous compound fails here, before any model loads
        from ..evaluate.phonondb_pbe import load_structures, select

        try:
            select(load_structures(data_dir), opts.only["kappa"])
        except (ValueError, OSError) as e:
            raise SystemExit(f"hipot evaluate: --kappa-compounds: {e}")
    command = "hipot " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "evaluate" in sys.argv else "hipot evaluate (API)"
    log(f"data {data_dir}; raw results -> {raw_dir}; report -> {out}")
    run_all(args.model, peers, benches, opts, raw_dir, device=args.device, dtype=args.dtype, backend=args.backend,
            command=command.strip(), resume=args.resume)
    try:
        for changed in complete_raw(raw_dir, data_dir):
            log(f"completed {changed}")
        path = write_report(raw_dir, out, plots)
    except ImportError as e:  # e.g. matplotlib/pymatgen absent on a bare GPU machine: the raw results stand
        log(f"report not written ({e}); run `hipot evaluate --report-only {raw_dir}` where it is installed")
        return 0
    print(f"wrote {path}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy report against DFT data (WBM, dcdft, elasticity, diatomics, phonons, "
                                        "heat capacity, thermal conductivity)",
                       description="Runs the model and, in the same run, the peer models over the shipped DFT data "
                                   "and writes a Markdown report with parity plots. Raw per-structure results are "
                                   "written as JSON as each benchmark finishes. The committed report "
                                   "(benchmarks/ACCURACY.md) is written only when --out names it.")
    add_model_args(p, dispersion=False)  # the report compares models as published
    p.add_argument("--peers", default="sevennet-0,chgnet",
                   help="comma-separated peers run through their own packages: sevennet-0 (sevenn), chgnet (chgnet); "
                        "'none' for none (default: sevennet-0,chgnet)")
    p.add_argument("--benchmarks", default="all",
                   help="comma-separated subset of wbm,dcdft,elastic,diatomics,phonons,heat_capacity,kappa")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny subsets of small structures (<= {QUICK_MAX_ATOMS} atoms) for a CPU smoke run in minutes")
    p.add_argument("--limit", action="append", metavar="[BENCH=]N",
                   help="structures per benchmark for every model, e.g. --limit wbm=200 --limit elastic=all "
                        f"(default: {FULL_LIMITS}, the rest all)")
    p.add_argument("--peer-limit", action="append", metavar="[BENCH=]N",
                   help=f"further limit for the peers, which relax one structure at a time (default: {PEER_LIMITS})")
    p.add_argument("--max-structure-atoms", type=int, help="only structures with at most this many atoms")
    p.add_argument("--kappa-compounds", metavar="NAMES",
                   help="kappa on these compounds only, comma-separated mp ids or formulas (NaCl,MgO,ZnO:186) "
                        "instead of --limit")
    p.add_argument("--out", help=f"report path (default: {DEFAULT_OUT}, with --quick {QUICK_OUT}; with --report-only "
                                 "RAWDIR: RAWDIR/../../ACCURACY.md, where a run put it)")
    p.add_argument("--plots", help="folder for the PNG plots (default: accuracy/ beside the report)")
    p.add_argument("--raw", help="folder for raw JSON results (default: <plots>/raw, or raw-quick with --quick)")
    p.add_argument("--force", action="store_true", help="let a --quick run replace a full run's report or raw results")
    p.add_argument("--resume", action="store_true", help="keep (model, benchmark) results already in the raw folder")
    p.add_argument("--report-only", metavar="RAWDIR", help="regenerate the report from raw results, run nothing")
    p.add_argument("--data", help="reference data folder (default: $HIPOT_DATA or ../shared/data)")
    p.add_argument("--batch-size", type=int, default=64, help="structures per batch for the hipot model (default: 64)")
    p.set_defaults(func=cmd_evaluate)
