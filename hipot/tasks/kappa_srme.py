"""κ_SRME, Matbench Discovery's thermal-conductivity metric (Póta et al., arXiv:2408.00755), and
the mode-resolved kappa it needs from phono3py.

Per mode (q-point of the irreducible mesh, band) the total kappa is the particle-like part plus the
mode's share of the coherence term: for each band pair (i, j) the coherence kappa_C[i, j] goes to
band j weighted 2 C_i / (C_i + C_j) (C the mode heat capacities), the benchmark's own split;
averaged over x, y, z. Then for one compound, with kappa the mean of the diagonal of the total
tensor and W the sum of the q-point weights,

    SRME = 2 * sum_modes |k_mode - k_mode,DFT| / W / (kappa + kappa_DFT),

0 for identical mode-resolved kappa, 2 for a failure (imaginary modes, broken symmetry, no
kappa). The compared q-points must be the reference's (same mesh, same order), which is checked.
The benchmark's score is the mean of SRME over the compounds."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np


def mode_kappa_total(mode_kappa_p: np.ndarray, mode_kappa_c: np.ndarray, heat_capacity: np.ndarray) -> np.ndarray:
    """Total kappa per mode, (T, q, bands, 6): particle part (T, q, bands, 6) plus the coherence
    matrix (T, q, bands, bands, 6) split over bands as the benchmark does (see the docstring);
    heat_capacity (T, q, bands). Pairs with no heat capacity (C_i + C_j = 0) give nothing."""
    cv_i = heat_capacity[:, :, :, None, None]
    cv_j = heat_capacity[:, :, None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(cv_i + cv_j > 0, 2 * cv_i / (cv_i + cv_j), 0.0)
    coherence = np.nan_to_num((mode_kappa_c * share).sum(axis=2))
    return mode_kappa_p + coherence


def run_conductivity(ph3, settings) -> dict[str, Any]:
    """phono3py's RTA (the Wigner/SMM19 variant with settings.wigner) on phono3py 3.x and 4.x:
    total, particle and coherence kappa, each (T, 6), and `modes`: mode_kappa (T, q, bands) (the
    total per mode averaged over x, y, z), weights and qpoints of the irreducible mesh."""
    params = inspect.signature(ph3.run_thermal_conductivity).parameters
    kw: dict[str, Any] = dict(temperatures=list(settings.temperatures), is_isotope=settings.isotope,
                              boundary_mfp=settings.boundary_mfp, log_level=0)
    if settings.wigner:
        kw["transport_type" if "transport_type" in params else "conductivity_type"] = (
            "SMM19" if "transport_type" in params else "wigner")
    ph3.run_thermal_conductivity(**kw)
    tc = ph3.thermal_conductivity
    weights = np.asarray(tc.grid_weights)
    cv = np.asarray(tc.mode_heat_capacities)
    if not settings.wigner:
        mode_p = np.asarray(tc.mode_kappa)[0]
        total = np.asarray(tc.kappa)[0]
        parts = {"kappa": total, "kappa_p": total, "kappa_c": np.zeros_like(total)}
        mode_total = mode_p
    elif hasattr(tc, "mode_kappa_matrix"):  # phono3py >= 4: one (band, band) matrix, its diagonal the particle part
        mat = np.asarray(tc.mode_kappa_matrix)[0]
        nb = mat.shape[2]
        mode_p = mat[:, :, np.arange(nb), np.arange(nb), :]
        mode_c = mat.copy()
        mode_c[:, :, np.arange(nb), np.arange(nb), :] = 0
        total, intra = np.asarray(tc.kappa)[0], np.asarray(tc.kappa_intra)[0]
        parts = {"kappa": total, "kappa_p": intra, "kappa_c": total - intra}
        mode_total = mode_kappa_total(mode_p, mode_c, cv)
    else:  # phono3py 3.x
        parts = {"kappa": np.asarray(tc.kappa_TOT_RTA)[0], "kappa_p": np.asarray(tc.kappa_P_RTA)[0],
                 "kappa_c": np.asarray(tc.kappa_C)[0]}
        mode_total = mode_kappa_total(np.asarray(tc.mode_kappa_P_RTA)[0], np.asarray(tc.mode_kappa_C)[0], cv)
    parts["modes"] = {"mode_kappa": mode_total[..., :3].mean(axis=-1), "weights": weights,
                      "qpoints": np.asarray(tc.qpoints), "frequencies": np.asarray(tc.frequencies)}
    return parts


def srme(mode_kappa: np.ndarray, weights: np.ndarray, kappa_ave: float, ref_mode_kappa: np.ndarray,
         ref_kappa_ave: float) -> float:
    """SRME of one compound at one temperature: mode-resolved kappa (q, bands) of the model and of
    the reference on the same q-points, total kappa of each (mean of the tensor's diagonal)."""
    p, t = np.asarray(mode_kappa, float), np.asarray(ref_mode_kappa, float)
    if p.shape != t.shape:
        raise ValueError(f"mode-resolved kappa of shape {p.shape} against a reference of shape {t.shape}: "
                         "not the same q-mesh")
    if not (np.all(np.isfinite(p)) and np.isfinite(kappa_ave)):
        return 2.0
    error = np.abs(p - t).sum() / np.asarray(weights, float).sum()
    return float(2 * error / (kappa_ave + ref_kappa_ave))


def score(result, reference: dict[str, Any], temperature_index: int = 0) -> float:
    """The benchmark's SRME of a KappaResult against a DFT reference (keys mode_kappa (T, q, bands),
    qpoints, weights, kappa_ave (T)): 2 for a failure, else `srme` at one temperature. Stored in
    result.kappa_srme. A result on other q-points than the reference's is an error, not a score."""
    value = 2.0
    failed = (result.failure is not None or result.has_imaginary or result.broken_symmetry
              or result.kappa_ave is None or result._modes is None)
    if not failed:
        modes = result._modes
        q, q_ref = np.asarray(modes["qpoints"], float), np.asarray(reference["qpoints"], float)
        if q.shape != q_ref.shape or not np.allclose(q, q_ref, atol=1e-6):
            raise ValueError(f"{result.formula}: the q-points ({len(q)}) are not the reference's ({len(q_ref)}); "
                             "κ_SRME needs the reference's q-mesh and cell")
        if not np.array_equal(np.asarray(modes["weights"]), np.asarray(reference["weights"])):
            raise ValueError(f"{result.formula}: the q-point weights differ from the reference's")
        value = srme(modes["mode_kappa"][temperature_index], modes["weights"], result.kappa_ave[temperature_index],
                     np.asarray(reference["mode_kappa"])[temperature_index],
                     float(np.asarray(reference["kappa_ave"]).ravel()[temperature_index]))
    result.kappa_srme = value
    return value
