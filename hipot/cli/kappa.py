"""`hipot kappa`: lattice thermal conductivity of one crystal by Matbench Discovery's protocol
(`phonondb-v1`, hipot.tasks.kappa), with progress on the force sets and phono3py, fc2's imaginary
-mode check before the expensive fc3, and κ_SRME when the structure is one of the phononDB-PBE
reference set (its info names the mp id)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings

from .common import (CLIError, add_one_structure_args, add_summary_args, friendly, one_structure, prepare,
                     require_extras, say, task_model, write_summary)
from .options import claim_outputs


def settings_from(args: argparse.Namespace):
    """The KappaSettings of the command line: a preset, then each option given over it."""
    from ..tasks.kappa import PRESETS

    s = PRESETS[args.settings]
    over = {}
    if args.displacement is not None:
        if not args.displacement > 0:
            raise CLIError(f"--displacement must be positive, not {args.displacement}")
        over["displacement"] = args.displacement
    for opt in ("fc2_supercell", "fc3_supercell", "mesh"):
        v = getattr(args, opt)
        if v is not None:
            if min(v) < 1:
                raise CLIError(f"--{opt.replace('_', '-')} takes three positive integers, not {' '.join(map(str, v))}")
            over[opt] = tuple(v)
    if args.temperature is not None:
        if min(args.temperature) <= 0:
            raise CLIError(f"--temperature must be above 0 K, not {min(args.temperature):g}")
        over["temperatures"] = tuple(args.temperature)
    if args.ignore_imaginary:
        over["ignore_imaginary"] = True
    return dataclasses.replace(s, **over)


def pick_compound(args: argparse.Namespace):
    """The structure: --compound names one of the file's frames by mp id or formula (info keys
    mp_id, name, symm.no), else --index as in every verb."""
    if not args.compound:
        return one_structure(args)
    from ..evaluate.phonondb_pbe import select
    from ..tasks.common import read_labelled

    frames, _ = read_labelled(args.input, ":")
    if not all("mp_id" in a.info and "name" in a.info for a in frames):
        raise CLIError(f"--compound needs structures with info keys mp_id and name (as the phononDB-PBE file); "
                       f"{args.input} has none; use --index")
    (atoms,) = select(frames, [args.compound])
    args.index = str(frames.index(atoms))
    return one_structure(args)


def reference_for(atoms, args: argparse.Namespace):
    """The DFT reference of the structure's mp id (phononDB-PBE set), or None (said so when the
    structure names an mp id but the reference file is not found)."""
    mp_id = atoms.info.get("mp_id")
    if args.no_srme or not mp_id:
        return None
    from ..evaluate.data import default_data_dir
    from ..evaluate.phonondb_pbe import REFERENCE, load_reference

    data = default_data_dir()
    if not (data / REFERENCE).is_file():
        say(args, f"hipot kappa: note: the structure is {mp_id}, but {data / REFERENCE} is not there: no κ_SRME "
                  "(set HIPOT_DATA to the folder holding ksrme_phonondb_pbe/)")
        return None
    return load_reference(data).get(str(mp_id))


@friendly
def cmd_kappa(args: argparse.Namespace) -> int:
    from ..tasks.common import require_periodic
    from ..tasks.kappa import describe, kappa, structure_settings
    from ..tasks.kappa_srme import score

    require_extras("hipot kappa", ("phono3py",), extra="kappa")
    prepare(args, ("phonopy", "spglib"))
    claim_outputs(args, json=None)   # an existing --json is refused (or --overwrite), before any work
    s = settings_from(args)
    atoms = pick_compound(args)
    require_periodic(atoms, "kappa")
    chosen = structure_settings(atoms, s)  # bad settings in the file's info fail here, before the model loads
    ref = reference_for(atoms, args)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        say(args, f"[kappa {time.perf_counter() - t0:7.1f}s] {msg}")

    def show(message, category, *rest, **kw) -> None:  # the task's warnings as the CLI's one-liners, at once
        if not args.quiet:
            print(f"hipot kappa: warning: {message}", file=sys.stderr, flush=True)

    mesh = chosen["mesh"] if isinstance(chosen["mesh"], float) else "x".join(map(str, chosen["mesh"]))
    log(f"{atoms.get_chemical_formula()}: settings {describe(s)} ({s.displacement:g} A displacements; "
        f"{chosen['source']}; q-mesh {mesh})")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")  # FrechetCellFilter, every step
        warnings.showwarning = show
        res = kappa(atoms, task_model(args), settings=s, relax_first=not args.no_relax, device=args.device,
                    dtype=args.dtype, batch_size=args.batch_size, progress=not args.quiet, log=log)
    srme_note = ""
    if ref is not None and 300.0 in list(s.temperatures):
        try:
            score(res, ref, list(s.temperatures).index(300.0))
            srme_note = (f"; κ_SRME {res.kappa_srme:.3f} against DFT-PBE ({ref['mp_id']}, "
                         f"κ {ref['kappa_ave'][0]:.3f} W/mK)")
        except ValueError as e:  # another mesh or cell than the reference's: no score, said so
            srme_note = f"; no κ_SRME ({e})"
    d = res.to_dict()
    d["structure"] = {"file": args.input, "index": args.index, "mp_id": atoms.info.get("mp_id"),
                      "name": atoms.info.get("name")}
    d["reference"] = None if ref is None else {"mp_id": ref["mp_id"], "kappa_ave": ref["kappa_ave"].tolist()}
    # the mode-resolved kappa, so that κ_SRME can be recomputed from the file
    d["modes"] = None if res._modes is None else {k: v for k, v in res._modes.items() if k != "frequencies"}
    write_summary(args, d)
    if res.failure:
        say(args, f"{res.formula}: FAILED: {res.failure}{srme_note}")
    else:
        ks = ", ".join(f"{k:.3f} W/mK at {t:g} K" for k, t in zip(res.kappa_ave, res.temperatures))
        say(args, f"{res.formula}: κ {ks} ({res.protocol}){srme_note}")
    return 0


def register(sub) -> None:
    from ..tasks.kappa import PRESETS

    p = sub.add_parser("kappa", help="lattice thermal conductivity (phono3py, Matbench Discovery's protocol)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="Protocol (phonondb-v1): FIRE relaxation with symmetry kept and shear masked (fmax 1e-4 "
                              "eV/A, 300 steps); 0.01 A displacements; fc2/fc3 supercells and q-mesh from the "
                              "structure's info (fc2_supercell, fc3_supercell, q_mesh, as the phononDB-PBE file), "
                              "else a width rule on the conventional cell; fc2 phonons checked for imaginary modes "
                              "before fc3; Wigner RTA with isotopes.\n"
                              "JSON (--json): formula, structure (file, index, mp_id, name), protocol, settings, "
                              "settings_source, displacement, space groups, supercells, mesh, kappa/kappa_p/kappa_c "
                              "(W/mK, Voigt, per temperature), kappa_ave, has_imaginary, min_frequency (THz) and "
                              "min_frequency_q, failure, kappa_srme and reference (when the structure's mp id is in "
                              "the phononDB-PBE set), modes (mode_kappa per temperature, q-point and band, averaged "
                              "over x, y, z; weights; qpoints), seconds, warnings.")
    add_one_structure_args(p)
    p.add_argument("--compound", help="pick the frame by mp id or formula (info mp_id/name, e.g. the phononDB-PBE "
                                      "file: NaCl, mp-1138, ZnO:186) instead of --index")
    p.add_argument("--settings", default="phonondb-v1", choices=list(PRESETS),
                   help="preset (default: %(default)s; phonondb-v1-disp0.03: the same with 0.03 A; quick: small "
                        "supercells for a smoke run)")
    p.add_argument("--displacement", type=float, help="A, over the preset (the result is then named for it)")
    p.add_argument("--fc2-supercell", type=int, nargs=3, metavar="N", help="over the structure's own")
    p.add_argument("--fc3-supercell", type=int, nargs=3, metavar="N", help="over the structure's own")
    p.add_argument("--mesh", type=int, nargs=3, metavar="N", help="q-mesh, over the structure's own")
    p.add_argument("--temperature", type=float, nargs="+", metavar="K", help="K (default: 300)")
    p.add_argument("--no-relax", action="store_true", help="use the structure as given")
    p.add_argument("--ignore-imaginary", action="store_true", help="compute κ even with imaginary modes "
                                                                  "(still a failure for κ_SRME)")
    p.add_argument("--no-srme", action="store_true", help="skip the comparison with the DFT reference")
    p.add_argument("--batch-size", type=int, default=64, help="displaced supercells per model call (default: 64)")
    add_summary_args(p)
    p.set_defaults(func=cmd_kappa)
