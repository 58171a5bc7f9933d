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
    """Third-order Birch-Murnaghan fit, E as a cubic polynomial in x = V^(-2/3) (the Delta-test
    way: linear least squares, no starting guess). Returns V0 (A^3), B0 (eV/A^3), B1, E0 (eV)."""
    v = np.asarray(volumes, float)
    e = np.asarray(energies, float)
    x = v ** (-2.0 / 3.0)
    c3, c2, c1, c0 = np.polyfit(x, e, 3)
    # minimum: dE/dx = 3 c3 x^2 + 2 c2 x + c1 = 0, root with positive curvature nearest the data
    roots = np.roots([3 * c3, 2 * c2, c1])
    roots = roots[np.isreal(roots)].real
    roots = roots[(roots > 0) & (6 * c3 * roots + 2 * c2 > 0)]
    if roots.size == 0:
        return (float("nan"),) * 4
    x0 = roots[np.argmin(np.abs(roots - x.mean()))]
    v0 = x0 ** (-1.5)
    d2 = 6 * c3 * x0 + 2 * c2   # d2E/dx2
    d3 = 6 * c3                 # d3E/dx3
    # B = V d2E/dV2 with x = V^(-2/3): dx/dV = -2/3 x/V, and at the minimum dE/dx = 0
    b0 = (4.0 / 9.0) * x0 ** 2 * d2 / v0
    # B' = -(V/B) dB/dV; with dE/dx = 0 at the minimum this reduces to 4 + (2/3) x E'''(x) / E''(x)
    b1 = 4.0 + (2.0 / 3.0) * x0 * d3 / d2
    e0 = float(np.polyval([c3, c2, c1, c0], x0))
    return float(v0), float(b0), float(b1), e0


def vrh_moduli(c: np.ndarray) -> tuple[float, float]:
    """Voigt-Reuss-Hill bulk and shear moduli from a 6x6 stiffness matrix (Voigt notation, any unit)."""
    c = 0.5 * (np.asarray(c, float) + np.asarray(c, float).T)
    kv = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[1, 2] + c[0, 2])) / 9
    gv = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[1, 2] + c[0, 2]) + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15
    try:
        s = np.linalg.inv(c)
        kr = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[1, 2] + s[0, 2]))
        gr = 15 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[1, 2] + s[0, 2]) + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
    except np.linalg.LinAlgError:
        return float("nan"), float("nan")
    return float((kv + kr) / 2), float((gv + gr) / 2)


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
