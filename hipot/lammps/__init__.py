"""HIENet in LAMMPS: `pair_style hipot MODEL [keyword value ...]` with `pair_coeff * * El1 El2 ...`.

build.py compiles the plugin on first use and registers it (entry point `lammps.plugins`);
pair_hipot.cpp is the pair style (GPL-2.0-or-later); python_bridge.cpp lets it call Python;
driver.py runs the model each step. Usage: docs/lammps.md.
"""
