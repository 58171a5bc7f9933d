"""Equation of state: energies over +-6 % volume (internal coordinates relaxed), Birch-Murnaghan
fit, checked against the model's own stress: the bulk modulus from the pressure, and steps in
E(V) that the pressure does not account for (a neighbour shell crossing a cutoff where the
model's energy jumps)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.units import GPa

from .checks import energy_steps, model_cutoff, note, shells_near
from .common import ModelLike, Result, evaluate_many, pyplot, require_periodic, resolve_model, save_figure
from .relax import relax

STEP_TOLERANCE_MEV = 1.0       # meV/atom: an E(V) step larger than this is reported
BULK_MODULUS_TOLERANCE = 0.10  # relative difference of B0 (fit) and the stress's bulk modulus reported
B0_PRIME_RANGE = (0.0, 14.0)   # a fitted B0' outside this, or an rms above 1 meV/atom, is a bad fit


@dataclass
class EOSResult(Result):
    """Birch-Murnaghan (3rd order) fit: v0 [A^3/atom], b0 [GPa], b0_prime, e0 [eV/atom];
    volumes [A^3/atom] and energies [eV/atom] are the computed points, rms_mev the fit's rms residual.
    From the model's stress at the same points: pressures [GPa], b0_stress [GPa] = -V dP/dV where
    P = 0 (or at v0), and energy_steps_mev [meV/atom], per interval the change of energy that the
    pressure does not account for (near zero for a continuous model). `warnings` say when these
    disagree with the fit or the fit is poor."""

    v0: float
    b0: float
    b0_prime: float
    e0: float
    volumes: list[float]
    energies: list[float]
    rms_mev: float = 0.0
    formula: str = ""
    n_atoms: int = 0
    converged: list[bool] = field(default_factory=list)
    pressures: list[float] = field(default_factory=list)
    b0_stress: float = float("nan")
    energy_steps_mev: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def plot(self, path: str) -> str:
        """Energy-volume points, the fitted curve and the fitted parameters, as an image file."""
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        v = np.asarray(self.volumes)
        grid = np.linspace(v.min(), v.max(), 200)
        ax.plot(grid, birch_murnaghan(grid, self.e0, self.v0, self.b0 * GPa, self.b0_prime), "-", color="C0",
                label="Birch-Murnaghan fit")
        ax.plot(v, self.energies, "o", color="C1", label="computed")
        ax.axvline(self.v0, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel("volume (Å$^3$/atom)")
        ax.set_ylabel("energy (eV/atom)")
        ax.set_title(f"{self.formula}: V$_0$ = {self.v0:.3f} Å$^3$/atom, B$_0$ = {self.b0:.1f} GPa, "
                     f"B$_0'$ = {self.b0_prime:.2f}", fontsize=10)
        ax.legend(frameon=False)
        save_figure(fig, path)
        return path


def birch_murnaghan(v, e0: float, v0: float, b0: float, bp: float):
    """Third-order Birch-Murnaghan energy at volume v (b0 in energy/volume units)."""
    eta = (v0 / np.asarray(v, dtype=float)) ** (2.0 / 3.0) - 1.0
    return e0 + 9.0 * v0 * b0 / 16.0 * (eta**3 * bp + eta**2 * (6.0 - 4.0 * (eta + 1.0)))


def fit_birch_murnaghan(volumes, energies, bounded: bool = True) -> tuple[float, float, float, float, float]:
    """(e0, v0, b0 [eV/A^3], b0', rms [eV]) of the least-squares Birch-Murnaghan fit. Raises
    ValueError when the curve has no minimum or (with `bounded`) its minimum lies outside the
    sampled volumes.

    The 3rd-order BM energy is exactly a cubic polynomial in x = V^(-2/3), so the fit is linear
    least squares in x; the parameters follow from the polynomial's derivatives at its minimum."""
    v = np.asarray(volumes, dtype=float)
    e = np.asarray(energies, dtype=float)
    if v.size < 5:
        raise ValueError("a Birch-Murnaghan fit needs at least 5 points")
    x = v ** (-2.0 / 3.0)
    p = np.polynomial.Polynomial.fit(x, e, 3).convert()
    d1, d2, d3 = p.deriv(1), p.deriv(2), p.deriv(3)
    roots = [r.real for r in d1.roots() if abs(r.imag) < 1e-12 and r.real > 0 and d2(r.real) > 0]
    if not roots:
        raise ValueError("the energy-volume curve has no minimum (is the structure near equilibrium?)")
    x0 = min(roots, key=lambda r: abs(r - x.mean()))
    v0 = x0 ** -1.5
    if bounded and not (v.min() <= v0 <= v.max()):
        raise ValueError(f"the fitted equilibrium volume {v0:.3f} A^3 lies outside the sampled range "
                         f"[{v.min():.3f}, {v.max():.3f}]; relax the structure first or widen the strain")
    # Chain rule E(V) = p(x(V)): derivatives at V0, where p'(x0) = 0.
    xv1 = -2.0 / 3.0 * v0 ** (-5.0 / 3.0)
    xv2 = 10.0 / 9.0 * v0 ** (-8.0 / 3.0)
    e2 = d2(x0) * xv1**2
    e3 = d3(x0) * xv1**3 + 3.0 * d2(x0) * xv1 * xv2
    b0 = v0 * e2
    bp = -1.0 - v0 * e3 / e2  # B' = dB/dP with B = V E'' and P = -E'
    rms = float(np.sqrt(np.mean((p(x) - e) ** 2)))
    return float(p(x0)), float(v0), float(b0), float(bp), rms


def scaled(atoms: Atoms, volume_ratio: float) -> Atoms:
    """A copy with the cell (and atoms) scaled isotropically to volume_ratio times the volume."""
    a = atoms.copy()
    a.calc = None
    a.set_cell(atoms.cell.array * volume_ratio ** (1.0 / 3.0), scale_atoms=True)
    return a


def bulk_modulus_from_pressure(volumes, pressures, v0: float) -> float:
    """-V dP/dV (same units as P) of a cubic fit of P(V), where P = 0 within the sampled range
    (nearest v0), else at v0."""
    v, p = np.asarray(volumes, float), np.asarray(pressures, float)
    poly = np.polynomial.Polynomial.fit(v, p, min(3, len(v) - 1)).convert()
    roots = [r.real for r in poly.roots() if abs(r.imag) < 1e-9 and v.min() <= r.real <= v.max()]
    at = min(roots, key=lambda r: abs(r - v0)) if roots else v0
    return float(-at * poly.deriv(1)(at))


def check(res: EOSResult, atoms: Atoms, model, strain: float) -> None:
    """Warnings on `res`: E(V) steps the pressure does not explain, B0 against the stress's bulk
    modulus, a poor fit; each says when a neighbour shell crosses a discontinuous cutoff in range."""
    cutoff, smooth = model_cutoff(model)
    crossing = ""
    if cutoff is not None and not smooth:
        stretch = (1 + strain) ** (1 / 3) - 1  # largest relative change of a distance in the range
        near = shells_near(atoms, cutoff, stretch * cutoff)
        if near:
            crossing = (f"; neighbour shell(s) at {', '.join(f'{d:.3f}' for d in near[:3])} A cross the model's "
                        f"{cutoff:g} A cutoff within the volume range, where its energy is not continuous "
                        "(a smooth model, `hipot distill`, has no such step)")
    steps = np.abs(res.energy_steps_mev)
    if steps.size and steps.max() > STEP_TOLERANCE_MEV:
        k = int(np.argmax(steps))
        v = np.sort(res.volumes)
        note(res, f"eos: E(V) steps by {steps.max():.2f} meV/atom between {v[k]:.3f} and {v[k + 1]:.3f} A^3/atom "
                  f"that the model's pressure does not account for ({int(np.sum(steps > STEP_TOLERANCE_MEV))} "
                  f"interval(s) above {STEP_TOLERANCE_MEV} meV/atom){crossing}", stacklevel=4)
    if np.isfinite(res.b0_stress) and abs(res.b0 - res.b0_stress) > BULK_MODULUS_TOLERANCE * abs(res.b0_stress) + 1.0:
        note(res, f"eos: the fitted B0 {res.b0:.1f} GPa differs from the bulk modulus of the model's stress, "
                  f"{res.b0_stress:.1f} GPa, by more than {BULK_MODULUS_TOLERANCE:.0%}{crossing}", stacklevel=4)
    lo, hi = B0_PRIME_RANGE
    if not lo <= res.b0_prime <= hi or res.rms_mev > STEP_TOLERANCE_MEV:
        note(res, f"eos: poor Birch-Murnaghan fit (B0' = {res.b0_prime:.2f}, rms {res.rms_mev:.2f} meV/atom; "
                  f"expected B0' within [{lo:g}, {hi:g}] and rms below {STEP_TOLERANCE_MEV} meV/atom)", stacklevel=4)


def eos(atoms: Atoms, model: ModelLike = "hienet-v3", *, strain: float = 0.06, points: int = 11,
        relax_internal: bool = True, relax_first: bool = True, fmax: float = 0.01, steps: int = 300,
        device: str = "auto", dtype: str = "float32", batch_size: int = 64, progress: bool = False) -> EOSResult:
    """Energy-volume curve over volumes (1 +- strain) V around the (relaxed, with relax_first) input,
    internal coordinates relaxed at each volume (relax_internal), Birch-Murnaghan fit; the model's
    stress at every point checks the fit (see `EOSResult`, `check`)."""
    require_periodic(atoms, "eos")
    if not 0 < strain < 0.5 or points < 5:
        raise ValueError("eos needs 0 < strain < 0.5 and points >= 5")
    m = resolve_model(model, device, dtype)
    if relax_first:
        atoms = relax([atoms], m, fmax=fmax, steps=steps, relax_cell=True, symmetry=True)[0].atoms
    ratios = 1.0 + np.linspace(-strain, strain, points)
    structures = [scaled(atoms, r) for r in ratios]
    n = len(atoms)
    converged = [True] * points
    if relax_internal:
        res = relax(structures, m, fmax=fmax, steps=steps, relax_cell=False, batch_size=batch_size,
                    progress=progress)
        structures = [r.atoms for r in res]
        converged = [r.converged for r in res]
    results = evaluate_many(structures, m, batch_size, progress=progress and not relax_internal)
    energies = [r["energy"] / n for r in results]
    pressures = [-float(np.mean(np.asarray(r["stress"])[:3])) for r in results]  # eV/A^3
    volumes = [abs(s.cell.volume) / n for s in structures]
    e0, v0, b0, bp, rms = fit_birch_murnaghan(volumes, energies)
    out = EOSResult(v0, b0 / GPa, bp, e0, volumes, energies, rms * 1000.0, atoms.get_chemical_formula(), n, converged,
                    [p / GPa for p in pressures], bulk_modulus_from_pressure(volumes, pressures, v0) / GPa,
                    (energy_steps(volumes, energies, pressures) * 1000.0).tolist())
    check(out, atoms, m, strain)
    return out
