import numpy as np, time, warnings
from pathlib import Path
from phono3py import Phono3py
from phonopy.structure.atoms import PhonopyAtoms
from phonopy.phonon.grid import get_ir_grid_points, get_qpoints_from_bz_grid_points
from hipot.evaluate.phonondb_pbe import load_structures, load_reference
from hipot.tasks.kappa import KappaSettings, structure_settings
D = Path('/work/shared/data')
refs = load_reference(D); s = KappaSettings()
bad = 0; t = time.time()
for a in load_structures(D):
    c = structure_settings(a, s)
    lat, pos, num = c['cell']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ph3 = Phono3py(PhonopyAtoms(numbers=num, cell=lat, scaled_positions=pos), supercell_matrix=c['fc3'],
                       phonon_supercell_matrix=c['fc2'], primitive_matrix='auto', symprec=1e-5)
    ph3.mesh_numbers = c['mesh']
    ir, w, _ = get_ir_grid_points(ph3.grid)
    q = get_qpoints_from_bz_grid_points(ph3.grid.grg2bzg[ir], ph3.grid)
    r = refs[a.info['mp_id']]
    ok = q.shape == r['qpoints'].shape and np.allclose(q, r['qpoints'], atol=1e-6) and np.array_equal(w, r['weights'])
    if not ok:
        bad += 1; print(a.info['mp_id'], a.info['name'], q.shape, r['qpoints'].shape)
print('mismatches', bad, 'of 103', time.time() - t)
