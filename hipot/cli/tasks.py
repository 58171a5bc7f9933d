"""`hipot relax`, `md`, `phonons`, `eos`, `elastic`, `screen`: thin wrappers over hipot.tasks.

Each verb checks what it can before loading a model (extras, device, output paths, every input
structure), takes its defaults from the task function's signature, and on a CPU warns before
a structure whose evaluation is slow or may not fit in memory."""
from __future__ import annotations

import argparse
import functools
import inspect
import sys
from pathlib import Path

from .common import (CLIError, add_model_args, check_device, check_frames, check_writable, model_species, output_format,
                     require_extras, run_key, warn_if_large)

INPUT_HELP = "structure file ASE reads (extxyz, CIF, POSCAR, ...) or a bundled example: example:Si, example:Cu, " \
             "example:MgO, example:H2O"


@functools.lru_cache(maxsize=None)
def _defaults(task: str) -> dict:
    """Keyword defaults of the task function `module.function` (the one place they are written)."""
    import importlib

    module, name = task.rsplit(".", 1)
    func = getattr(importlib.import_module(f"hipot.tasks.{module}"), name)
    return {k: p.default for k, p in inspect.signature(func).parameters.items() if p.default is not p.empty}


def _model(args: argparse.Namespace, device=None):
    """The model of --model: a hipot model (loaded once, on `device` or --device), or 'ase:emt' (ASE's EMT,
    a cheap stand-in)."""
    if args.model.lower() == "ase:emt":
        from ase.calculators.emt import EMT

        return EMT()
    if args.model.lower().startswith("ase:"):
        raise CLIError(f"unknown ASE calculator {args.model!r} (only ase:emt)")
    from ..evaluator import Evaluator

    return Evaluator(args.model, device if device is not None else args.device, args.dtype, backend=args.backend)


def _rank_device(args: argparse.Namespace):
    """This rank's device under torchrun (cuda:LOCAL_RANK), joining the process group; --device otherwise."""
    from datetime import timedelta

    from ..distributed import setup

    return setup(args.device, timeout=timedelta(days=7))[1]


def _prepare(args: argparse.Namespace, extras: tuple[str, ...] = (), files=(), folders=()) -> None:
    """The checks every verb makes first: optional packages, --model's name (an unknown ASE
    calculator), --device, and that every output can be written."""
    if extras:
        require_extras(f"hipot {args.command}", extras)
    if args.model.lower().startswith("ase:") and args.model.lower() != "ase:emt":
        raise CLIError(f"unknown ASE calculator {args.model!r} (only ase:emt)")
    check_device(args.device)
    check_writable(list(files) + [getattr(args, "json", None)], folders)


def _one(args: argparse.Namespace, evaluations: int = 1):
    """The one structure a single-structure verb works on, checked against the model's elements
    before the model loads."""
    from ..tasks.common import read_labelled

    frames, labels = read_labelled(args.input, args.index)
    if len(frames) != 1:
        raise CLIError(f"{args.input} holds {len(frames)} structures; pick one with --index")
    atoms, label = frames[0], labels[0]
    if getattr(args, "repeat", None):
        atoms = atoms.repeat(args.repeat)
        label += f" repeated {'x'.join(map(str, args.repeat))}"
    check_frames([atoms], [label], model_species(args.model), skip_bad=False, option="")
    warn_if_large(args.command, [atoms], [label], args.model, args.device, evaluations, getattr(args, "quiet", False))
    return atoms


def _friendly(func):
    """Errors that are the input's fault (ValueError from the tasks) as one line and exit status 2."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ValueError as e:
            from ..graph import StructureError
            from ..tasks.common import InputFileError

            if isinstance(e, (StructureError, InputFileError)):
                raise
            print(f"hipot {args.command}: error: {e}", file=sys.stderr)
            return 2

    return wrapper


def _say(args: argparse.Namespace, msg: str) -> None:
    from ..distributed import world

    if not getattr(args, "quiet", False) and world().is_main:
        print(msg, file=sys.stderr)


def _json(args: argparse.Namespace, obj) -> None:
    if args.json:
        from ..tasks.common import write_json

        write_json(args.json, obj)
        _say(args, f"wrote {args.json}")


# ---------------------------------------------------------------- relax
@_friendly
def cmd_relax(args: argparse.Namespace) -> int:
    import ase.io

    from ..distributed import finish
    from ..io import atomic_write
    from ..tasks.common import Tally, read_labelled
    from ..tasks.relax import cleanup_checkpoint, relax_resumable, unconverged_message

    fmt = output_format(args.output, "relax", results_needed=False)
    _prepare(args, ("spglib",) if args.symmetry else (), files=[args.output, args.trajectory])
    frames, labels = read_labelled(args.input, args.index)
    if len(frames) > 1 and ase.io.formats.ioformats[fmt].single:
        raise CLIError(f"{args.output}: {fmt} holds one structure, the input {len(frames)}; "
                         "use .extxyz (every result) or .traj")
    skipped = check_frames(frames, labels, model_species(args.model), args.skip_bad)
    good = [f for k, f in enumerate(frames) if k not in skipped] or frames
    warn_if_large("relax", good, labels, args.model, args.device, args.steps + 1, args.quiet)
    settings = dict(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, relax_cell=not args.no_cell,
                    symmetry=args.symmetry)
    key = run_key(args, [args.input], index=args.index, **settings)
    args.tally, args.resume_hint = Tally(len(frames)), "rerun the same command to resume"
    dev = _rank_device(args)
    results = relax_resumable(frames, args.output, key, _model(args, dev), device=str(dev), progress=not args.quiet,
                              batch_size=args.batch_size, max_atoms=args.batch_atoms, trajectory=args.trajectory,
                              labels=labels, skip=skipped, tally=args.tally, dtype=args.dtype, **settings)
    if results is not None:
        out = []
        for r in results:
            a = r.atoms
            a.info.update({"relax_converged": r.converged, "relax_steps": r.steps, "relax_fmax": r.fmax})
            if r.error:
                a.info["hipot_error"] = r.error
            out.append(a)
        atomic_write(args.output, lambda tmp: ase.io.write(tmp, out, format=fmt))
        _json(args, {"structures": [r.to_dict() for r in results]})
        cleanup_checkpoint(args.output, len(frames), key)
        _say(args, f"relaxed {sum(r.converged for r in results)} of {len(results)} structure(s); wrote {args.output}"
                   + ("" if fmt == "extxyz" else f" ({fmt}: energies and forces are in extxyz and --json only)"))
        msg = unconverged_message(results, args.fmax, args.steps)
        if msg:
            print(f"hipot relax: warning: {msg}", file=sys.stderr)
    finish()
    return 0


# ---------------------------------------------------------------- md
@_friendly
def cmd_md(args: argparse.Namespace) -> int:
    from ..tasks.common import Tally
    from ..tasks.md import md

    log = args.log or str(Path(args.trajectory).with_suffix(".log"))
    _prepare(args, files=[args.trajectory, log])
    atoms = _one(args, evaluations=args.steps)
    args.tally = Tally(args.steps, unit="step")
    args.resume_hint = (f"the trajectory {args.trajectory} keeps a frame every {args.interval} steps: "
                        + ("rerun the same command to continue" if args.restart else
                           "rerun the same command with --restart to continue from its last frame"))
    res = md(atoms, _model(args), ensemble=args.ensemble, temperature=args.temperature, timestep=args.timestep,
             steps=args.steps, seed=args.seed, pressure=args.pressure, friction=args.friction, tdamp=args.tdamp,
             pdamp=args.pdamp, interval=args.interval, trajectory=args.trajectory, log=args.log,
             restart=args.restart, device=args.device, dtype=args.dtype, progress=not args.quiet, tally=args.tally)
    d = res.to_dict()
    _json(args, d)
    line = f"{res.ensemble}: {res.steps} steps ({res.time_ps:.3f} ps), <T> = {res.temperature_mean:.1f} K"
    if res.etot_drift is not None:
        line += f", total-energy drift {res.etot_drift:.3f} meV/atom/ps"
    if res.pressure_mean is not None:
        line += f", <P> = {res.pressure_mean:.3f} GPa"
    _say(args, line + f"; trajectory {res.trajectory}, log {res.log}")
    return 0


# ---------------------------------------------------------------- phonons
@_friendly
def cmd_phonons(args: argparse.Namespace) -> int:
    from ..tasks.phonons import phonons

    _prepare(args, ("phonopy", "spglib"), files=[args.plot, args.thermal])
    res = phonons(_one(args), _model(args), supercell_length=args.supercell_length, supercell=args.supercell,
                  displacement=args.displacement, relax_first=not args.no_relax, mesh=args.mesh, t_max=args.t_max,
                  t_step=args.t_step, device=args.device, dtype=args.dtype, progress=not args.quiet)
    res.plot(args.plot)
    res.write_thermal_csv(args.thermal)
    d = res.to_dict()
    d.update(plot=args.plot, thermal_csv=args.thermal)
    _json(args, d)
    status = (f"IMAGINARY modes (min {res.min_frequency:.3f} THz)" if res.has_imaginary
              else f"no imaginary modes (min {res.min_frequency:.3f} THz)")
    _say(args, f"{res.formula}: {'x'.join(map(str, res.supercell_matrix))} supercell, {res.n_displacements} "
               f"displacement(s); {status}; wrote {args.plot}, {args.thermal}")
    return 0


# ---------------------------------------------------------------- eos
@_friendly
def cmd_eos(args: argparse.Namespace) -> int:
    from ..tasks.eos import eos

    _prepare(args, () if args.no_relax else ("spglib",), files=[args.plot])
    res = eos(_one(args, evaluations=args.points), _model(args), strain=args.strain, points=args.points,
              relax_first=not args.no_relax, device=args.device, dtype=args.dtype, progress=not args.quiet)
    res.plot(args.plot)
    _json(args, res.to_dict())
    _say(args, f"{res.formula}: V0 = {res.v0:.4f} A^3/atom, B0 = {res.b0:.2f} GPa, B0' = {res.b0_prime:.3f}, "
               f"E0 = {res.e0:.5f} eV/atom; wrote {args.plot}")
    return 0


# ---------------------------------------------------------------- elastic
@_friendly
def cmd_elastic(args: argparse.Namespace) -> int:
    import numpy as np

    from ..tasks.elastic import elastic

    _prepare(args, () if args.no_relax else ("spglib",))
    res = elastic(_one(args, evaluations=13), _model(args), strain=args.strain, relax_first=not args.no_relax,
                  device=args.device, dtype=args.dtype, progress=not args.quiet)
    _json(args, res.to_dict())
    if not args.quiet:
        with np.printoptions(precision=1, suppress=True, linewidth=120):
            print(f"{res.formula}: C (GPa)\n{res.c}", file=sys.stderr)
        print(f"K_VRH = {res.k_vrh:.2f} GPa, G_VRH = {res.g_vrh:.2f} GPa"
              f"{'' if res.stable else ' (NOT Born-stable)'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- screen
@_friendly
def cmd_screen(args: argparse.Namespace) -> int:
    import ase.io

    from ..distributed import finish
    from ..io import atomic_write
    from ..tasks.common import Tally, read_labelled
    from ..tasks.relax import cleanup_checkpoint, relax_resumable, unconverged_message
    from ..tasks.screen import analyse, candidates

    _prepare(args, ("spglib", "pymatgen"), folders=[args.out])
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
    settings = dict(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, elements=elements,
                    lattice=args.lattice, max_atoms=args.max_atoms)
    key = run_key(args, files, **settings)
    _say(args, f"screen: {len(structures)} candidate structure(s)")
    args.tally, args.resume_hint = Tally(len(structures)), "rerun the same command to resume"
    dev = _rank_device(args)
    results = relax_resumable(structures, relaxed_path, key, _model(args, dev), device=str(dev),
                              progress=not args.quiet, batch_size=args.batch_size, optimizer=args.optimizer,
                              fmax=args.fmax, steps=args.steps, relax_cell=True, labels=labels, tally=args.tally,
                              dtype=args.dtype)
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
        res.write_csv(str(out / "screen.csv"))
        res.plot(str(out / "hull.png"))
        _json(args, res.to_dict())
        cleanup_checkpoint(relaxed_path, len(structures), key)
        hull = [f"{r['formula']}{' (' + r['prototype'] + ')' if r['prototype'] else ''}" for r in res.rows if r["on_hull"]]
        _say(args, f"on the hull: {', '.join(hull)}; wrote {out}/screen.csv, hull.png, relaxed.extxyz")
        msg = unconverged_message(results, args.fmax, args.steps)
        if msg:
            print(f"hipot screen: warning: {msg}", file=sys.stderr)
    finish()
    return 0


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    relax_d, md_d, ph_d = _defaults("relax.relax"), _defaults("md.md"), _defaults("phonons.phonons")
    eos_d, el_d, sc_d = _defaults("eos.eos"), _defaults("elastic.elastic"), _defaults("screen.screen")
    from ..tasks.relax import OPTIMIZERS

    optimizers = list(OPTIMIZERS)

    p = sub.add_parser("relax", help="relax structures (batched; cell too for periodic ones)", formatter_class=fmt,
                       epilog="JSON (--json): {'structures': [{index, formula, n_atoms, energy, energy_per_atom, "
                              "fmax, steps, converged, volume_per_atom (periodic), error (if any)}]}.\n"
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
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_relax)

    p = sub.add_parser("md", help="molecular dynamics (NVE, NVT, NPT) with trajectory, log and restart",
                       formatter_class=fmt,
                       epilog="JSON (--json): ensemble, steps, time_ps, n_atoms, temperature_mean, temperature_std, "
                              "epot_mean (eV/atom), etot_drift (meV/atom/ps, NVE), etot_max_deviation (meV/atom, "
                              "NVE), pressure_mean (GPa, periodic), trajectory, log, restarted_from.\n"
                              "Log columns (CSV): step, time_ps, temperature_K, epot_eV, ekin_eV, etot_eV, "
                              "pressure_GPa, volume_A3.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--index", default="0", help="which frame (default: the first)")
    add_model_args(p)
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
    p.add_argument("--trajectory", default=md_d["trajectory"], help="ASE trajectory (default: %(default)s)")
    p.add_argument("--log", help="CSV log (default: the trajectory with .log)")
    p.add_argument("--restart", action="store_true", help="continue from the last frame of --trajectory if it exists")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_md)

    p = sub.add_parser("phonons", help="phonons by finite displacements (phonopy): bands + DOS PNG, thermal CSV",
                       formatter_class=fmt,
                       epilog="JSON (--json): formula, supercell_matrix, n_supercell_atoms, n_displacements, "
                              "has_imaginary, min_frequency, max_frequency (THz), gamma_frequencies (THz), "
                              "imaginary_threshold, path, plot, thermal_csv.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--index", default="0", help="which frame (default: the first)")
    add_model_args(p)
    p.add_argument("--supercell-length", type=float, default=ph_d["supercell_length"],
                   help="minimum supercell width, A (default: %(default)s)")
    p.add_argument("--supercell", type=int, nargs=3, help="explicit repeats of the cell instead")
    p.add_argument("--displacement", type=float, default=ph_d["displacement"], help="A (default: %(default)s)")
    p.add_argument("--mesh", type=float, default=ph_d["mesh"],
                   help="q-mesh length for DOS and thermal properties (default: %(default)s)")
    p.add_argument("--t-max", type=float, default=ph_d["t_max"], help="K (default: %(default)s)")
    p.add_argument("--t-step", type=float, default=ph_d["t_step"], help="K (default: %(default)s)")
    p.add_argument("--no-relax", action="store_true", help="use the structure as given")
    p.add_argument("--plot", default="phonons.png", help="band structure + DOS (default: %(default)s)")
    p.add_argument("--thermal", default="thermal.csv", help="F, S, Cv against T (default: %(default)s)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_phonons)

    p = sub.add_parser("eos", help=f"energy-volume curve (+-{eos_d['strain'] * 100:g} %%), Birch-Murnaghan fit and plot",
                       formatter_class=fmt,
                       epilog="JSON (--json): v0 (A^3/atom), b0 (GPa), b0_prime, e0 (eV/atom), volumes (A^3/atom), "
                              "energies (eV/atom), rms_mev, formula, n_atoms, converged.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax; "
                              "internal coordinates are relaxed at every volume.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--index", default="0", help="which frame (default: the first)")
    add_model_args(p)
    p.add_argument("--strain", type=float, default=eos_d["strain"], help="volume range +-strain (default: %(default)s)")
    p.add_argument("--points", type=int, default=eos_d["points"], help="volumes (default: %(default)s)")
    p.add_argument("--no-relax", action="store_true", help="centre the volumes on the structure as given")
    p.add_argument("--plot", default="eos.png", help="default: %(default)s")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_eos)

    p = sub.add_parser("elastic", help="6x6 elastic tensor and Voigt-Reuss-Hill moduli", formatter_class=fmt,
                       epilog="JSON (--json): c (6x6, GPa, Voigt order xx yy zz yz xz xy), k_vrh, g_vrh, k_voigt, "
                              "k_reuss, g_voigt, g_reuss (GPa), stable (Born), asymmetry (GPa), formula, strain.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax; "
                              "internal coordinates are relaxed at every strain.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--index", default="0", help="which frame (default: the first)")
    add_model_args(p)
    p.add_argument("--strain", type=float, default=el_d["strain"], help="largest strain (default: %(default)s)")
    p.add_argument("--no-relax", action="store_true", help="use the structure as given")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_elastic)

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
    p.add_argument("--steps", type=int, default=sc_d["steps"], help="default: %(default)s")
    p.add_argument("--batch-size", type=int, default=sc_d["batch_size"], help="default: %(default)s")
    p.add_argument("--out", default="screen", help="output folder (default: %(default)s)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_screen)
