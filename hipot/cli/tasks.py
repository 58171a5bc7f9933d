"""`hipot relax`, `md`, `phonons`, `eos`, `elastic`, `screen`: thin wrappers over hipot.tasks."""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from .common import add_model_args

INPUT_HELP = "structure file ASE reads (extxyz, CIF, POSCAR, ...) or a bundled example: example:Si, example:Cu, " \
             "example:MgO, example:H2O"


def _model(args: argparse.Namespace, device=None):
    """The model of --model: a hipot model (loaded once, on `device` or --device), or 'ase:emt' (ASE's EMT,
    a cheap stand-in)."""
    if args.model.lower() == "ase:emt":
        from ase.calculators.emt import EMT

        return EMT()
    if args.model.lower().startswith("ase:"):
        raise SystemExit(f"hipot {args.command}: unknown ASE calculator {args.model!r} (only ase:emt)")
    from ..evaluator import Evaluator

    return Evaluator(args.model, device if device is not None else args.device, args.dtype, backend=args.backend)


def _rank_device(args: argparse.Namespace):
    """This rank's device under torchrun (cuda:LOCAL_RANK), joining the process group; --device otherwise."""
    from datetime import timedelta

    from ..distributed import setup

    return setup(args.device, timeout=timedelta(days=7))[1]


def _one(args: argparse.Namespace):
    from ..tasks.common import read_structures

    frames = read_structures(args.input, args.index)
    if len(frames) != 1:
        raise SystemExit(f"hipot {args.command}: {args.input} holds {len(frames)} structures; pick one with --index")
    atoms = frames[0]
    if getattr(args, "repeat", None):
        atoms = atoms.repeat(args.repeat)
    return atoms


def _friendly(func):
    """Errors that are the input's fault (ValueError from the tasks) as one line and exit status 2."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ValueError as e:
            from ..graph import StructureError

            if isinstance(e, StructureError):
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


def _run_key(args: argparse.Namespace, files: list[str], **settings) -> str:
    """Identifies a run (inputs and settings) so that a restart reuses only its own partial results."""
    import hashlib
    import json

    h = hashlib.sha256()
    for f in files:
        p = Path(f)
        h.update(p.read_bytes() if p.is_file() else f.encode())
    h.update(json.dumps({"model": args.model, "dtype": args.dtype, **settings}, sort_keys=True, default=str).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- relax
@_friendly
def cmd_relax(args: argparse.Namespace) -> int:
    import ase.io

    from ..distributed import finish
    from ..tasks.common import atomic_write, read_structures
    from ..tasks.relax import cleanup_checkpoint, relax_resumable, unconverged_message

    frames = read_structures(args.input, args.index)
    settings = dict(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, relax_cell=not args.no_cell,
                    symmetry=args.symmetry, index=args.index)
    key = _run_key(args, [args.input], **settings)
    settings.pop("index")
    dev = _rank_device(args)
    results = relax_resumable(frames, args.output, key, _model(args, dev), device=str(dev), progress=not args.quiet,
                              batch_size=args.batch_size, max_atoms=args.max_atoms, trajectory=args.trajectory,
                              **settings)
    if results is not None:
        out = []
        for r in results:
            a = r.atoms
            a.info.update({"relax_converged": r.converged, "relax_steps": r.steps, "relax_fmax": r.fmax})
            out.append(a)
        atomic_write(args.output, lambda tmp: ase.io.write(tmp, out, format="extxyz"))
        _json(args, {"structures": [r.to_dict() for r in results]})
        cleanup_checkpoint(args.output, len(frames), key)
        _say(args, f"relaxed {sum(r.converged for r in results)} of {len(results)} structure(s); wrote {args.output}")
        msg = unconverged_message(results, args.fmax, args.steps)
        if msg:
            print(f"hipot relax: warning: {msg}", file=sys.stderr)
    finish()
    return 0


# ---------------------------------------------------------------- md
@_friendly
def cmd_md(args: argparse.Namespace) -> int:
    from ..tasks.md import md

    res = md(_one(args), _model(args), ensemble=args.ensemble, temperature=args.temperature, timestep=args.timestep,
             steps=args.steps, seed=args.seed, pressure=args.pressure, friction=args.friction, tdamp=args.tdamp,
             pdamp=args.pdamp, interval=args.interval, trajectory=args.trajectory, log=args.log,
             restart=args.restart, device=args.device, dtype=args.dtype, progress=not args.quiet)
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

    res = eos(_one(args), _model(args), strain=args.strain, points=args.points, relax_first=not args.no_relax,
              device=args.device, dtype=args.dtype, progress=not args.quiet)
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

    res = elastic(_one(args), _model(args), strain=args.strain, relax_first=not args.no_relax, device=args.device,
                  dtype=args.dtype, progress=not args.quiet)
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
    from ..tasks.common import atomic_write, read_structures
    from ..tasks.relax import cleanup_checkpoint, relax_resumable, unconverged_message
    from ..tasks.screen import analyse, candidates

    if args.candidates:
        structures = read_structures(args.candidates)
        for k, a in enumerate(structures):
            a.info.setdefault("id", str(a.info.get("name", f"candidate-{k}")))
        elements = args.elements or sorted({s for a in structures for s in a.get_chemical_symbols()})
        files = [args.candidates]
    else:
        if not args.elements:
            raise SystemExit("hipot screen: give --elements (and --lattice, --max-atoms) or --candidates FILE")
        structures = candidates(args.elements, args.lattice, args.max_atoms)
        elements = args.elements
        files = []
    out = Path(args.out)
    relaxed_path = out / "relaxed.extxyz"
    settings = dict(optimizer=args.optimizer, fmax=args.fmax, steps=args.steps, elements=elements,
                    lattice=args.lattice, max_atoms=args.max_atoms)
    key = _run_key(args, files, **settings)
    _say(args, f"screen: {len(structures)} candidate structure(s)")
    dev = _rank_device(args)
    results = relax_resumable(structures, relaxed_path, key, _model(args, dev), device=str(dev),
                              progress=not args.quiet, batch_size=args.batch_size, optimizer=args.optimizer,
                              fmax=args.fmax, steps=args.steps, relax_cell=True)
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

    p = sub.add_parser("relax", help="relax structures (batched; cell too for periodic ones)", formatter_class=fmt,
                       epilog="JSON (--json): {'structures': [{index, formula, n_atoms, energy, energy_per_atom, "
                              "fmax, steps, converged, volume_per_atom (periodic), error (if any)}]}.\n"
                              "Under torchrun the structures are split across ranks; rerunning an interrupted "
                              "command skips the structures already done.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="relaxed structures (extxyz, with energy, forces, stress)")
    p.add_argument("--index", default=":", help="frames to read, ASE syntax (default: all)")
    add_model_args(p)
    p.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS"], help="default: FIRE")
    p.add_argument("--fmax", type=float, default=0.05, help="force convergence, eV/A (default: 0.05)")
    p.add_argument("--steps", type=int, default=500, help="maximum optimizer steps (default: 500)")
    p.add_argument("--no-cell", action="store_true", help="keep the cell fixed (default: relax it, periodic only)")
    p.add_argument("--symmetry", action="store_true", help="keep the space group (ase FixSymmetry)")
    p.add_argument("--batch-size", type=int, default=64, help="structures relaxed together (default: 64)")
    p.add_argument("--max-atoms", type=int, default=4096, help="atoms per batched evaluation (default: 4096)")
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
    p.add_argument("--ensemble", default="nve", choices=["nve", "nvt-langevin", "nvt-nhc", "npt-mtk", "npt-berendsen"],
                   help="default: nve (velocity Verlet)")
    p.add_argument("--temperature", type=float, default=300.0, help="K: initial velocities and thermostat (default 300)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default: 1)")
    p.add_argument("--steps", type=int, default=1000, help="total steps, restarts included (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="initial velocities (default: 0)")
    p.add_argument("--pressure", type=float, default=0.0, help="GPa, NPT (default: 0)")
    p.add_argument("--friction", type=float, default=0.01, help="1/fs, Langevin (default: 0.01)")
    p.add_argument("--tdamp", type=float, default=100.0, help="fs, thermostat time constant (default: 100)")
    p.add_argument("--pdamp", type=float, default=1000.0, help="fs, barostat time constant (default: 1000)")
    p.add_argument("--interval", type=int, default=10, help="log and trajectory every N steps (default: 10)")
    p.add_argument("--trajectory", default="md.traj", help="ASE trajectory (default: md.traj)")
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
    p.add_argument("--supercell-length", type=float, default=10.0, help="minimum supercell width, A (default: 10)")
    p.add_argument("--supercell", type=int, nargs=3, help="explicit repeats of the cell instead")
    p.add_argument("--displacement", type=float, default=0.01, help="A (default: 0.01)")
    p.add_argument("--mesh", type=float, default=30.0, help="q-mesh length for DOS and thermal properties (default: 30)")
    p.add_argument("--t-max", type=float, default=1000.0, help="K (default: 1000)")
    p.add_argument("--t-step", type=float, default=10.0, help="K (default: 10)")
    p.add_argument("--no-relax", action="store_true", help="use the structure as given")
    p.add_argument("--plot", default="phonons.png", help="band structure + DOS (default: phonons.png)")
    p.add_argument("--thermal", default="thermal.csv", help="F, S, Cv against T (default: thermal.csv)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_phonons)

    p = sub.add_parser("eos", help="energy-volume curve (+-6 %%), Birch-Murnaghan fit and plot", formatter_class=fmt,
                       epilog="JSON (--json): v0 (A^3/atom), b0 (GPa), b0_prime, e0 (eV/atom), volumes (A^3/atom), "
                              "energies (eV/atom), rms_mev, formula, n_atoms, converged.\n"
                              "The structure is first relaxed (cell and positions, symmetry kept) unless --no-relax; "
                              "internal coordinates are relaxed at every volume.")
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("--index", default="0", help="which frame (default: the first)")
    add_model_args(p)
    p.add_argument("--strain", type=float, default=0.06, help="volume range +-strain (default: 0.06)")
    p.add_argument("--points", type=int, default=11, help="volumes (default: 11)")
    p.add_argument("--no-relax", action="store_true", help="centre the volumes on the structure as given")
    p.add_argument("--plot", default="eos.png", help="default: eos.png")
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
    p.add_argument("--strain", type=float, default=0.01, help="largest strain (default: 0.01)")
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
    p.add_argument("--lattice", default="fcc", choices=["fcc", "bcc", "hcp"], help="parent lattice (default: fcc)")
    p.add_argument("--max-atoms", type=int, default=4, help="largest cell of the enumeration (default: 4)")
    p.add_argument("--candidates", help="relax these structures instead of enumerating (must include pure elements)")
    add_model_args(p)
    p.add_argument("--optimizer", default="FIRE", choices=["FIRE", "BFGS", "LBFGS"])
    p.add_argument("--fmax", type=float, default=0.05, help="eV/A (default: 0.05)")
    p.add_argument("--steps", type=int, default=500, help="default: 500")
    p.add_argument("--batch-size", type=int, default=64, help="default: 64")
    p.add_argument("--out", default="screen", help="output folder (default: screen)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_screen)
