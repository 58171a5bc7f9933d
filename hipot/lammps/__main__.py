"""`python -m hipot.lammps [--rebuild]`: build (or rebuild) the LAMMPS plugin now and say where it
is. `python -m hipot.lammps --example NAME`: print one of the example inputs of docs/lammps.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent / "examples"

from .build import BuildError, ensure_built, target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hipot.lammps", description=__doc__)
    ap.add_argument("--rebuild", action="store_true", help="compile again even if a build exists")
    ap.add_argument("--example", choices=sorted(p.stem for p in EXAMPLES.glob("*.in")),
                    help="print this example LAMMPS input and exit")
    args = ap.parse_args(argv)
    if args.example:
        sys.stdout.write((EXAMPLES / f"{args.example}.in").read_text())
        return 0
    try:
        t = target()
        folder = ensure_built(rebuild=args.rebuild)
    except BuildError as e:
        print(f"hipot: {e}", file=sys.stderr)
        return 1
    print(f"plugin: {folder} (how it was built: {folder / 'build.json'})")
    print(f"lammps {t.lammps_version}: {t.lammps_include}")
    print(f"python: {t.python} (libpython: {t.libpython or 'none: only Python can drive LAMMPS'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
