"""`python -m hipot.lammps [--rebuild]`: build (or rebuild) the LAMMPS plugin now and say where it is."""
from __future__ import annotations

import argparse
import sys

from .build import BuildError, ensure_built, toolchain


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hipot.lammps", description=__doc__)
    ap.add_argument("--rebuild", action="store_true", help="compile again even if a build exists")
    args = ap.parse_args(argv)
    try:
        tc = toolchain()
        folder = ensure_built(rebuild=args.rebuild)
    except BuildError as e:
        print(f"hipot: {e}", file=sys.stderr)
        return 1
    print(f"plugin: {folder}")
    print(f"lammps {tc.lammps_version} headers: {tc.lammps_include}")
    print(f"python: {tc.python} (libpython: {tc.libpython or 'none: only Python can drive LAMMPS'})")
    print(f"compiler: {tc.compiler}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
