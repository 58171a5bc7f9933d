"""`hipot relax`, `md`, `screen`: thin wrappers over hipot.tasks (`phonons`, `eos`, `elastic`:
cli/properties.py).

Each verb checks what it can before loading a model (extras, device, output paths, every input
structure), takes its defaults from the task function's signature, and on a CPU warns before
a structure whose evaluation is slow or may not fit in memory."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (INPUT_HELP, add_one_structure_args, add_summary_args, CLIError, add_model_args, check_frames,
                     friendly, model_species, one_structure,
                     output_format, prepare, rank_device, run_key, say, task_defaults, task_model, warn_if_large,
                     write_summary)
from .options import check_numbers, claim_outputs, numbered

# Default output names (cli.options.claim_outputs: a later run gets md-2.traj, screen-2/, ...)
MD_TRAJECTORY, SCREEN_OUT, SCREEN_CSV = "md.traj", "screen", "screen.csv"


# ---------------------------------------------------------------- relax
@friendly
def cmd_relax(args: argparse.Namespace) -> int:
    import ase.io

    from ..distributed import finish
    from ..io import atomic_write
    from ..tasks.common import Tally, read_labelled
    from ..tasks.relax import unconverged_message
    from ..tasks.relax_runs import cleanup_checkpoint, relax_resumable

    check_numbers(args, fmax="> 0", smax="> 0", steps=">= 0", batch_size=">= 1", batch_atoms=">= 1")
    claim_outputs(args, json=None)
    fmt = output_format(args.output, "relax", results_needed=False)
    prepare(args, ("spglib",) if args.symmetry else (), files=[args.output, args.trajectory])
    frames, labels = read_labelled(args.input, args.index)
    if len(frames) > 1 and ase.io.formats.ioformats[fmt].single:
        raise CLIError(f"{args.output}: {fmt} holds one structure, the input {len(frames)}; "
                         "use .extxyz (every result) or .traj")
    skipped = check_frames(frames, labels, model_species(args.model), args.skip_bad)
    if args.symmetry:
        from ..tasks.relax import has_3d_cell

        flat = [labels[k] for k, a in enumerate(frames) if not has_3d_cell(a)]
        if flat:
            say(args, f"hipot relax: --symmetry: {len(flat)} structure(s) without a 3D cell relax without the "
                      f"symmetry constraint ({', '.join(flat[:5])}{', ...' if len(flat) > 5 else ''})")
    good = [f for k, f in enumerate(frames) if k not in skipped] or frames
    warn_if_large("relax", good, labels, args.model, args.device, args.steps + 1, args.quiet)
    settings = dict(optimizer=args.optimizer, fmax=args.fmax, smax=args.smax, steps=args.steps,
                    relax_cell=not args.no_cell, symmetry=args.symmetry)
    key = run_key(args, [args.input], index=args.index, **settings)
    args.tally, args.resume_hint = Tally(len(frames)), "rerun the same command to resume"
    dev = rank_device(args)
    results = relax_resumable(frames, args.output, key, task_model(args, dev), device=str(dev), progress=not args.quiet,
                              batch_size=args.batch_size, max_atoms=args.batch_atoms, trajectory=args.trajectory,
                              labels=labels, skip=skipped, tally=args.tally, dtype=args.dtype, **settings)
    if results is not None:
        out = []
        for r in results:
            a = r.atoms
            a.info.update({"relax_converged": r.converged, "relax_steps": r.steps, "relax_fmax": r.fmax})
            if r.smax is not None:
                a.info["relax_smax"] = r.smax
            if r.error:
                a.info["hipot_error"] = r.error
            out.append(a)
        atomic_write(args.output, lambda tmp: ase.io.write(tmp, out, format=fmt))
        write_summary(args, {"structures": [r.to_dict() for r in results]})
        cleanup_checkpoint(args.output, len(frames), key)
        say(args, f"relaxed {sum(r.converged for r in results)} of {len(results)} structure(s); wrote {args.output}"
                   + ("" if fmt == "extxyz" else f" ({fmt}: energies and forces are in extxyz and --json only)"))
        msg = unconverged_message(results, args.fmax, args.steps, args.smax)
        if msg:
            print(f"hipot relax: warning: {msg}", file=sys.stderr)
    finish()
    return 0


# ---------------------------------------------------------------- md
@friendly
def cmd_md(args: argparse.Namespace) -> int:
    from ..tasks.common import Tally
    from ..tasks.md import md

    check_numbers(args, temperature=">= 0", timestep="> 0", steps=">= 0", pressure="finite", friction=">= 0",
                  tdamp="> 0", pdamp="> 0", interval=">= 1")
    if args.restart:  # continues the trajectory and its log
        args.trajectory = args.trajectory or MD_TRAJECTORY
        claim_outputs(args, json=None)
    elif args.trajectory is None and args.log is None:
        claim_outputs(args, trajectory=MD_TRAJECTORY, log=str(Path(MD_TRAJECTORY).with_suffix(".log")), json=None)
    else:
        args.trajectory = args.trajectory or MD_TRAJECTORY
        args.log = args.log or str(Path(args.trajectory).with_suffix(".log"))
        claim_outputs(args, trajectory=None, log=None, json=None)
    log = args.log or str(Path(args.trajectory).with_suffix(".log"))
    prepare(args, files=[args.trajectory, log])
    atoms = one_structure(args, evaluations=args.steps)
    args.tally = Tally(args.steps, unit="step")
    args.resume_hint = (f"the trajectory {args.trajectory} keeps a frame every {args.interval} steps: "
                        + ("rerun the same command to continue" if args.restart else
                           "rerun the same command with --restart to continue from its last frame"))
    res = md(atoms, task_model(args), ensemble=args.ensemble, temperature=args.temperature, timestep=args.timestep,
             steps=args.steps, seed=args.seed, pressure=args.pressure, friction=args.friction, tdamp=args.tdamp,
             pdamp=args.pdamp, interval=args.interval, trajectory=args.trajectory, log=args.log,
             restart=args.restart, device=args.device, dtype=args.dtype, progress=not args.quiet, tally=args.tally)
    d = res.to_dict()
    write_summary(args, d)
    line = f"{res.ensemble}: {res.steps} steps ({res.time_ps:.3f} ps), <T> = {res.temperature_mean:.1f} K"
    if res.etot_drift is not None:
        line += f", total-energy drift {res.etot_drift:.3f} meV/atom/ps"
    if res.pressure_mean is not None:
        line += f", <P> = {res.pressure_mean:.3f} GPa"
    say(args, line + f"; trajectory {res.trajectory}, log {res.log}")
    return 0


# ---------------------------------------------------------------- screen
@friendly
def cmd_screen(args: argparse.Namespace) -> int:
    import ase.io

    from ..distributed import finish
    from ..io import atomic_write
    from ..tasks.common import Tally, read_labelled
    from ..tasks.relax import unconverged_message
    from ..tasks.relax_runs import cleanup_checkpoint, relax_resumable
    from ..tasks.screen import analyse, candidates

    check_numbers(args, fmax="> 0", smax="> 0", steps=">= 0", batch_size=">= 1", max_atoms=">= 1")
    claim_outputs(args, json=None)
    if args.out is None:  # a folder a finished screen wrote into gets a numbered sibling
        k = 1
        while not args.overwrite and (Path(numbered(SCREEN_OUT, k)) / SCREEN_CSV).exists():
            k += 1
        args.out = numbered(SCREEN_OUT, k)
        if k > 1:
            say(args, f"hipot screen: {SCREEN_OUT}/ holds an earlier result: writing into {args.out}/ "
                      "(--overwrite writes over it)")
    elif (Path(args.out) / SCREEN_CSV).exists() and not args.overwrite:
        raise CLIError(f"{args.out}/ holds an earlier screen ({SCREEN_CSV}); give another --out, remove it, or pass "
                       "--overwrite; nothing was run")
    prepare(args, ("spglib", "pymatgen"), folders=[args.out])
    if args.candidates:
        structures, labels = read_labelled(args.candidates)
        for k, a in enumerate(structures):
            a.info.setdefault("id", str(a.info.get("name", f"candidate-{k}")))
        elements = args.elements or sorted({s for a in structures for s in a.get_chemical_symbols()})
        files = [args.candidates]
    else:
        if not args.elements:
            raise CLIError("give --elements (and --lattice, --max-atoms) or --candidates FILE")
        structures = candidates(args.elements, args.lattice, args.max_atoms)
        labels = [f"candidate {a.info['id']}" for a in structures]
        elements = args.elements
        files = []
    check_frames(structures, labels, model_species(args.model), skip_bad=False, option="")
    out = Path(args.out)
    relaxed_path = out / "relaxed.extxyz"
    settings = dict(optimizer=args.optimizer, fmax=args.fmax, smax=args.smax, steps=args.steps, elements=elements,
                    lattice=args.lattice, max_atoms=args.max_atoms)
    key = run_key(args, files, **settings)
    say(args, f"screen: {len(structures)} candidate structure(s)")
    args.tally, args.resume_hint = Tally(len(structures)), "rerun the same command to resume"
    dev = rank_device(args)
    results = relax_resumable(structures, relaxed_path, key, task_model(args, dev), device=str(dev),
                              progress=not args.quiet, batch_size=args.batch_size, optimizer=args.optimizer,
                              fmax=args.fmax, smax=args.smax, steps=args.steps, relax_cell=True, labels=labels,
                              tally=args.tally, dtype=args.dtype)
    if results is not None:
        res = analyse(structures, results, elements, "file" if args.candidates else args.lattice)
        frames = [r.atoms for r in results]  # their info (id, prototype, ...) comes from the candidates
        by_id = {row["id"]: row for row in res.rows}
        for a in frames:
            row = by_id.get(str(a.info.get("id")))
            if row is not None:
                a.info["formation_energy"] = row["formation_energy_eV_per_atom"]
                a.info["e_above_hull"] = row["e_above_hull_eV_per_atom"]
        atomic_write(relaxed_path, lambda tmp: ase.io.write(tmp, frames, format="extxyz"))
        res.write_csv(str(out / SCREEN_CSV))
        res.plot(str(out / "hull.png"))
        write_summary(args, res.to_dict())
        cleanup_checkpoint(relaxed_path, len(structures), key)
        hull = [f"{r['formula']}{' (' + r['prototype'] + ')' if r['prototype'] else ''}" for r in res.rows if r["on_hull"]]
        say(args, f"on the hull: {', '.join(hull)}; wrote {out}/screen.csv, hull.png, relaxed.extxyz")
        msg = unconverged_message(results, args.fmax, args.steps, args.smax)
        if msg:
            print(f"hipot screen: warning: {msg}", file=sys.stderr)
    finish()
    return 0


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    relax_d, md_d, sc_d = task_defaults("relax.relax"), task_defaults("md.md"), task_defaults("screen.screen")
    from ..tasks.relax import OPTIMIZERS

    optimizers = list(OPTIMIZERS)

    p = sub.add_parser("relax", help="relax structures (batched; cell too for periodic ones)", formatter_class=fmt,
                       epilog="JSON (--json): {'structures': [{index, formula, n_atoms, energy, energy_per_atom, "
                              "fmax, smax (cell relaxation, GPa), steps, converged, volume_per_atom (periodic), "
                              "error (if any)}]}.\n"
                              "Every structure is checked before the model loads; a bad one stops the command (all "
                              "are listed) unless --skip-bad.\n"
                              "Under torchrun the structures are split across ranks; rerunning an interrupted "
                              "command skips the structures already done.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True,
                   help="relaxed structures: extxyz (.extxyz, .xyz: with energy, forces, stress) or any format "
                        "ASE writes from the suffix (.traj, .cif, ...)")
    p.add_argument("--index", default=":", help="frames to read, ASE syntax (default: all)")
    add_model_args(p)
    p.add_argument("--optimizer", default=relax_d["optimizer"], choices=optimizers, help="default: %(default)s")
    p.add_argument("--fmax", type=float, default=relax_d["fmax"], help="force convergence, eV/A (default: %(default)s)")
    p.add_argument("--smax", type=float, default=relax_d["smax"],
                   help="stress convergence of cell relaxation: every stress component below this, GPa "
                        "(default: %(default)s)")
    p.add_argument("--steps", type=int, default=relax_d["steps"], help="maximum optimizer steps (default: %(default)s)")
    p.add_argument("--no-cell", action="store_true", help="keep the cell fixed (default: relax it, periodic only)")
    p.add_argument("--symmetry", action="store_true", help="keep the space group (ase FixSymmetry; needs spglib)")
    p.add_argument("--batch-size", type=int, default=relax_d["batch_size"],
                   help="structures relaxed together (default: %(default)s)")
    p.add_argument("--batch-atoms", type=int, default=relax_d["max_atoms"],
                   help="atoms per batched evaluation (default: %(default)s)")
    p.add_argument("--max-atoms", dest="batch_atoms", type=int, help=argparse.SUPPRESS)  # the former name
    p.add_argument("--skip-bad", action="store_true",
                   help="record structures the model cannot take as failed (error in --json and under info key "
                        "'hipot_error') instead of stopping")
    p.add_argument("--trajectory", help="write each relaxation's frames (.traj or extxyz; several: stem.INDEX.suffix)")
    add_summary_args(p, "no progress bar or summary")
    p.set_defaults(func=cmd_relax)

    p = sub.add_parser("md", help="molecular dynamics (NVE, NVT, NPT) with trajectory, log and restart",
                       formatter_class=fmt,
                       epilog="JSON (--json): ensemble, steps, time_ps, n_atoms, temperature_mean, temperature_std, "
                              "epot_mean (eV/atom), etot_drift (meV/atom/ps, NVE), etot_max_deviation (meV/atom, "
                              "NVE), pressure_mean (GPa, periodic), trajectory, log, restarted_from.\n"
                              "Log columns (CSV): step, time_ps, temperature_K, epot_eV, ekin_eV, etot_eV, "
                              "pressure_GPa, volume_A3.")
    add_one_structure_args(p)
    p.add_argument("--repeat", type=int, nargs=3, metavar=("NA", "NB", "NC"), help="run on this supercell of the input")
    p.add_argument("--ensemble", default=md_d["ensemble"],
                   choices=["nve", "nvt-langevin", "nvt-nhc", "npt-mtk", "npt-berendsen"],
                   help="default: %(default)s (nve: velocity Verlet)")
    p.add_argument("--temperature", type=float, default=md_d["temperature"],
                   help="K: initial velocities and thermostat (default %(default)s)")
    p.add_argument("--timestep", type=float, default=md_d["timestep"], help="fs (default: %(default)s)")
    p.add_argument("--steps", type=int, default=md_d["steps"], help="total steps, restarts included (default: %(default)s)")
    p.add_argument("--seed", type=int, default=md_d["seed"], help="initial velocities (default: %(default)s)")
    p.add_argument("--pressure", type=float, default=md_d["pressure"], help="GPa, NPT (default: %(default)s)")
    p.add_argument("--friction", type=float, default=md_d["friction"], help="1/fs, Langevin (default: %(default)s)")
    p.add_argument("--tdamp", type=float, default=md_d["tdamp"], help="fs, thermostat time constant (default: %(default)s)")
    p.add_argument("--pdamp", type=float, default=md_d["pdamp"], help="fs, barostat time constant (default: %(default)s)")
    p.add_argument("--interval", type=int, default=md_d["interval"],
                   help="log and trajectory every N steps (default: %(default)s)")
    p.add_argument("--trajectory", help=f"ASE trajectory (default: {MD_TRAJECTORY}; md-2.traj, ... if it exists, "
                                        "unless --restart)")
    p.add_argument("--log", help="CSV log (default: the trajectory with .log)")
    p.add_argument("--restart", action="store_true", help="continue from the last frame of --trajectory if it exists")
    add_summary_args(p)
    p.set_defaults(func=cmd_md)

    p = sub.add_parser("screen", help="alloy screening: enumerate orderings, relax, convex hull", formatter_class=fmt,
                       epilog="Writes OUT/screen.csv (ranked), OUT/hull.png and OUT/relaxed.extxyz.\n"
                              "JSON (--json): elements, lattice, n_candidates, n_converged, references (eV/atom), "
                              "hull [{id, formula, prototype, formation_energy_eV_per_atom}], rows [CSV columns].\n"
                              "Under torchrun the relaxations are split across ranks; rerunning an interrupted "
                              "command skips the structures already done.")
    p.add_argument("--elements", nargs="+", help="e.g. Cu Au")
    p.add_argument("--lattice", default=sc_d["lattice"], choices=["fcc", "bcc", "hcp"],
                   help="parent lattice (default: %(default)s)")
    p.add_argument("--max-atoms", type=int, default=sc_d["max_atoms"],
                   help="largest cell of the enumeration, in atoms (default: %(default)s)")
    p.add_argument("--candidates", help="relax these structures instead of enumerating (must include pure elements)")
    add_model_args(p)
    p.add_argument("--optimizer", default=sc_d["optimizer"], choices=optimizers, help="default: %(default)s")
    p.add_argument("--fmax", type=float, default=sc_d["fmax"], help="eV/A (default: %(default)s)")
    p.add_argument("--smax", type=float, default=relax_d["smax"], help="stress convergence, GPa (default: %(default)s)")
    p.add_argument("--steps", type=int, default=sc_d["steps"], help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=sc_d["batch_size"], help="default: %(default)s")
    p.add_argument("--out", help=f"output folder (default: {SCREEN_OUT}; {SCREEN_OUT}-2, ... if it holds an earlier "
                                 "result)")
    add_summary_args(p)
    p.set_defaults(func=cmd_screen)
