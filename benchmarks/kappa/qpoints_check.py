"""κ_SRME compares mode by mode, so hipot's phono3py set-up must give, for every compound, the
reference's irreducible q-points (same order) and weights. This builds the phono3py object of each
of the 103 phononDB-PBE structures as `hipot.tasks.kappa` does (the structure as given, its own
supercells and mesh, primitive 'auto', symprec 1e-5; no model, no forces) and compares.

    python3 benchmarks/kappa/qpoints_check.py        # prints the mismatches, then 'mismatches 0 of 103'
"""
from __future__ import annotations

import time
import warnings

import numpy as np


def main() -> None:
    from phono3py import Phono3py
    from phonopy.phonon.grid import get_ir_grid_points, get_qpoints_from_bz_grid_points
    from phonopy.structure.atoms import PhonopyAtoms

    from hipot.evaluate.data import default_data_dir
    from hipot.evaluate.phonondb_pbe import load_reference, load_structures
    from hipot.tasks.kappa import KappaSettings, structure_settings

    data = default_data_dir()
    refs, s = load_reference(data), KappaSettings()
    bad, t0 = 0, time.perf_counter()
    structures = load_structures(data)
    for a in structures:
        c = structure_settings(a, s)
        lattice, positions, numbers = c["cell"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ph3 = Phono3py(PhonopyAtoms(numbers=numbers, cell=lattice, scaled_positions=positions),
                           supercell_matrix=c["fc3"], phonon_supercell_matrix=c["fc2"], primitive_matrix="auto",
                           symprec=s.symprec)
        ph3.mesh_numbers = c["mesh"]
        ir, weights, _ = get_ir_grid_points(ph3.grid)
        q = get_qpoints_from_bz_grid_points(ph3.grid.grg2bzg[ir], ph3.grid)
        r = refs[a.info["mp_id"]]
        if not (q.shape == r["qpoints"].shape and np.allclose(q, r["qpoints"], atol=1e-6)
                and np.array_equal(weights, r["weights"])):
            bad += 1
            print(a.info["mp_id"], a.info["name"], q.shape, r["qpoints"].shape)
    print(f"mismatches {bad} of {len(structures)} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
