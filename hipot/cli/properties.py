"""`hipot phonons`, `eos`, `elastic`: one bulk structure's properties, thin wrappers over hipot.tasks
(the checks and helpers shared with the other verbs are in cli/common.py)."""
from __future__ import annotations

import argparse
import sys

from .common import (add_one_structure_args, add_summary_args, friendly, one_structure, prepare, say, task_defaults,
                     task_model, write_summary)
from .options import check_numbers, claim_outputs

# Default output names (a later run in the same folder writes eos-2.png, ...: cli.options.claim_outputs)
PHONONS_PLOT, THERMAL_CSV, EOS_PLOT = "phonons.png", "thermal.csv", "eos.png"


# ---------------------------------------------------------------- phonons
@friendly
def cmd_phonons(args: argparse.Namespace) -> int:
    from ..tasks.phonons import phonons

    check_numbers(args, supercell_length="> 0", supercell=">= 1", displacement="> 0", mesh="> 0", t_max="> 0",
                  t_step="> 0")
    claim_outputs(args, plot=PHONONS_PLOT, thermal=THERMAL_CSV, json=None)
    prepare(args, ("phonopy", "spglib"), files=[args.plot, args.thermal])
    res = phonons(one_structure(args), task_model(args), supercell_length=args.supercell_length, supercell=args.supercell,
                  displacement=args.displacement, relax_first=not args.no_relax, mesh=args.mesh, t_max=args.t_max,
                  t_step=args.t_step, device=args.device, dtype=args.dtype, progress=not args.quiet)
    res.plot(args.plot)
    res.write_thermal_csv(args.thermal)
    d = res.to_dict()
    d.update(plot=args.plot, thermal_csv=args.thermal)
    write_summary(args, d)
    status = (f"IMAGINARY modes (min {res.min_frequency:.3f} THz)" if res.has_imaginary
              else f"no imaginary modes (min {res.min_frequency:.3f} THz)")
    say(args, f"{res.formula}: {'x'.join(map(str, res.supercell_matrix))} supercell, {res.n_displacements} "
               f"displacement(s); {status}; wrote {args.plot}, {args.thermal}")
    return 0


# ---------------------------------------------------------------- eos
@friendly
def cmd_eos(args: argparse.Namespace) -> int:
    from ..tasks.eos import eos

    check_numbers(args, strain="in (0, 0.5)", points=">= 5")
    claim_outputs(args, plot=EOS_PLOT, json=None)
    prepare(args, () if args.no_relax else ("spglib",), files=[args.plot])
    res = eos(one_structure(args, evaluations=args.points), task_model(args), strain=args.strain, points=args.points,
              relax_first=not args.no_relax, device=args.device, dtype=args.dtype, progress=not args.quiet)
    res.plot(args.plot)
    write_summary(args, res.to_dict())
    say(args, f"{res.formula}: V0 = {res.v0:.4f} A^3/atom, B0 = {res.b0:.2f} GPa, B0' = {res.b0_prime:.3f}, "
               f"E0 = {res.e0:.5f} eV/atom; wrote {args.plot}")
    return 0


# ---------------------------------------------------------------- elastic
@friendly
def cmd_elastic(args: argparse.Namespace) -> int:
    import numpy as np

    from ..tasks.elastic import elastic

    check_numbers(args, strain="in (0, 0.1)")
    claim_outputs(args, json=None)
    prepare(args, () if args.no_relax else ("spglib",))
    res = elastic(one_structure(args, evaluations=13), task_model(args), strain=args.strain, relax_first=not args.no_relax,
                  device=args.device, dtype=args.dtype, progress=not args.quiet)
    write_summary(args, res.to_dict())
    if not args.quiet:
        with np.printoptions(precision=1, suppress=True, linewidth=120):
            print(f"{res.formula}: C (GPa)\n{res.c}", file=sys.stderr)
        print(f"K_VRH = {res.k_vrh:.2f} GPa, G_VRH = {res.g_vrh:.2f} GPa"
              f"{'' if res.stable else ' (NOT Born-stable)'}", file=sys.stderr)
    return 0


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ph_d, eos_d, el_d = task_defaults("phonons.phonons"), task_defaults("eos.eos"), task_defaults("elastic.elastic")

    p = sub.add_parser("phonons", help="phonons by finite displacements (phonopy): bands + DOS PNG, thermal CSV",
                       formatter_class=fmt,
                       epilog="JSON (--json): formula, supercell_matrix, n_supercell_atoms, n_displacements, "
                              "has_imaginary, min_frequency, max_frequency (THz), gamma_frequencies (THz), "
                              "imaginary_threshold, path, plot, thermal_csv.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax.")
    add_one_structure_args(p)
    p.add_argument("--supercell-length", type=float, default=ph_d["supercell_length"],
                   help="minimum supercell width, A (default: %(default)s)")
    p.add_argument("--supercell", type=int, nargs=3, help="explicit repeats of the cell instead")
    p.add_argument("--displacement", type=float, default=ph_d["displacement"], help="A (default: %(default)s)")
    p.add_argument("--mesh", type=float, default=ph_d["mesh"],
                   help="q-mesh length for DOS and thermal properties (default: %(default)s)")
    p.add_argument("--t-max", type=float, default=ph_d["t_max"], help="K (default: %(default)s)")
    p.add_argument("--t-step", type=float, default=ph_d["t_step"], help="K (default: %(default)s)")
    p.add_argument("--no-relax", action="store_true", help="use the structure as given")
    p.add_argument("--plot", help=f"band structure + DOS (default: {PHONONS_PLOT}; numbered if it exists)")
    p.add_argument("--thermal", help=f"F, S, Cv against T (default: {THERMAL_CSV}; numbered if it exists)")
    add_summary_args(p)
    p.set_defaults(func=cmd_phonons)

    p = sub.add_parser("eos", help=f"energy-volume curve (+-{eos_d['strain'] * 100:g} %%), Birch-Murnaghan fit and plot",
                       formatter_class=fmt,
                       epilog="JSON (--json): v0 (A^3/atom), b0 (GPa), b0_prime, e0 (eV/atom), volumes (A^3/atom), "
                              "energies (eV/atom), rms_mev, formula, n_atoms, converged.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax; "
                              "internal coordinates are relaxed at every volume.")
    add_one_structure_args(p)
    p.add_argument("--strain", type=float, default=eos_d["strain"], help="volume range +-strain (default: %(default)s)")
    p.add_argument("--points", type=int, default=eos_d["points"], help="volumes (default: %(default)s)")
    p.add_argument("--no-relax", action="store_true", help="centre the volumes on the structure as given")
    p.add_argument("--plot", help=f"default: {EOS_PLOT} (numbered if it exists: eos-2.png, ...)")
    add_summary_args(p)
    p.set_defaults(func=cmd_eos)

    p = sub.add_parser("elastic", help="6x6 elastic tensor and Voigt-Reuss-Hill moduli", formatter_class=fmt,
                       epilog="JSON (--json): c (6x6, GPa, Voigt order xx yy zz yz xz xy), k_vrh, g_vrh, k_voigt, "
                              "k_reuss, g_voigt, g_reuss (GPa), stable (Born), asymmetry (GPa), formula, strain.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax; "
                              "internal coordinates are relaxed at every strain.")
    add_one_structure_args(p)
    p.add_argument("--strain", type=float, default=el_d["strain"], help="largest strain (default: %(default)s)")
    p.add_argument("--no-relax", action="store_true", help="use the structure as given")
    add_summary_args(p)
    p.set_defaults(func=cmd_elastic)
