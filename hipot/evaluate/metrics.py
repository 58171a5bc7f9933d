"""Regression and classification scores (plain numpy, NaN-aware where noted)."""
from __future__ import annotations

import numpy as np

EV_A3_TO_GPA = 160.21766208


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, float), np.asarray(true, float)
    ok = np.isfinite(p) & np.isfinite(t)
    return p[ok], t[ok]


def regression(pred, true) -> dict[str, float]:
    """MAE, RMSE, R^2, mean error (pred - true) and count over the finite pairs."""
    p, t = _pair(pred, true)
    if p.size == 0:
        return {"n": 0, "mae": float("nan"), "rmse": float("nan"), "r2": float("nan"), "me": float("nan")}
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return {"n": int(p.size), "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
            "r2": r2, "me": float(np.mean(err))}


def classification(e_hull_pred, e_hull_true, threshold: float = 0.0) -> dict[str, float]:
    """Stable (e_hull <= threshold) vs unstable, as Matbench Discovery scores it: F1, precision,
    recall, accuracy and the discovery acceleration factor DAF = precision / prevalence."""
    p, t = _pair(e_hull_pred, e_hull_true)
    pred_pos, true_pos = p <= threshold, t <= threshold
    tp = int(np.sum(pred_pos & true_pos))
    fp = int(np.sum(pred_pos & ~true_pos))
    fn = int(np.sum(~pred_pos & true_pos))
    tn = int(np.sum(~pred_pos & ~true_pos))
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    prevalence = (tp + fn) / n if n else float("nan")
    daf = precision / prevalence if prevalence and np.isfinite(precision) else float("nan")
    return {"n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": (tp + tn) / n if n else float("nan"), "prevalence": prevalence, "daf": daf}


def birch_murnaghan_fit(volumes, energies) -> tuple[float, float, float, float]:
    """The eos task's third-order Birch-Murnaghan fit (the Delta test's: E cubic in V^(-2/3)),
    its minimum allowed outside the sampled range. Returns V0 (A^3), B0 (eV/A^3), B1, E0 (eV);
    NaNs when the curve has no minimum."""
    from ..tasks.eos import fit_birch_murnaghan

    try:
        e0, v0, b0, b1, _ = fit_birch_murnaghan(volumes, energies, bounded=False)
    except ValueError:
        return (float("nan"),) * 4
    return v0, b0, b1, e0


def vrh_moduli(c: np.ndarray) -> tuple[float, float]:
    """Voigt-Reuss-Hill bulk and shear moduli of a 6x6 stiffness matrix (the elastic task's), NaN
    for a singular one."""
    from ..tasks.elastic import vrh

    c = np.asarray(c, float)
    try:
        m = vrh(0.5 * (c + c.T))
    except np.linalg.LinAlgError:
        return float("nan"), float("nan")
    return float(m["k_vrh"]), float(m["g_vrh"])


def symmetric_relative_error(pred, true) -> np.ndarray:
    """Per entry 2 |p - t| / (p + t), the kappa benchmark's SRE; 2 (the largest) where the
    prediction is missing (a failed calculation), as Matbench Discovery counts it."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    out = np.full(p.shape, 2.0)
    ok = np.isfinite(p) & (p + t > 0)
    out[ok] = 2 * np.abs(p[ok] - t[ok]) / (p[ok] + t[ok])
    return out


def symmetric_relative_deviation(pred, true) -> np.ndarray:
    """Per entry 2 (p - t) / (p + t) (signed); -2 where the prediction is missing."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    out = np.full(p.shape, -2.0)
    ok = np.isfinite(p) & (p + t > 0)
    out[ok] = 2 * (p[ok] - t[ok]) / (p[ok] + t[ok])
    return out


def sign_flips(values, tol: float) -> int:
    """Sign changes along a sequence, ignoring entries with |value| < tol (noise near zero)."""
    v = np.asarray(values, float)
    s = np.sign(v[np.abs(v) >= tol])
    return int(np.sum(s[1:] != s[:-1]))


def bootstrap_mae_ci(pred, true, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the MAE (resampling structures)."""
    p, t = _pair(pred, true)
    if p.size < 2:
        return float("nan"), float("nan")
    err = np.abs(p - t)
    rng = np.random.default_rng(seed)
    means = err[rng.integers(0, err.size, size=(n_boot, err.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
