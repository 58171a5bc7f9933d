"""The report's figures: parity panels, diatomic curves, kappa on log axes (files written
atomically through hipot.tasks.common.save_figure)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..tasks.common import pyplot, save_figure


def parity(panels: list[tuple[str, np.ndarray, np.ndarray]], xlabel: str, ylabel: str, path: Path, unit: str,
           ncols: int | None = None) -> Path:
    """One parity panel per (title, dft, model) with the y = x line and the MAE in the title,
    `ncols` panels per row."""
    plt = pyplot()
    ncols = ncols or len(panels)
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (title, t, p) in zip(axes.ravel(), panels):
        t, p = np.asarray(t, float), np.asarray(p, float)
        ok = np.isfinite(t) & np.isfinite(p)
        t, p = t[ok], p[ok]
        if t.size:
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            pad = 0.05 * (hi - lo or 1)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
            ax.scatter(t, p, s=8, alpha=0.6)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            title += f"\nMAE {np.mean(np.abs(p - t)):.3g} {unit}, n={t.size}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    return save_figure(fig, path)


def kappa_parity(series: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> Path:
    """kappa of each model (label, kappa_dft, kappa_model) against DFT on log-log axes, with the
    y = x line and factor-of-two lines; failures (NaN) are left out and counted in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    allv = np.concatenate([np.concatenate([t, p]) for _, t, p in series]) if series else np.array([1.0])
    allv = allv[np.isfinite(allv) & (allv > 0)]
    lo, hi = (float(allv.min()) / 2, float(allv.max()) * 2) if allv.size else (0.1, 1000.0)
    x = np.array([lo, hi])
    ax.plot(x, x, color="0.5", lw=1)
    for f in (0.5, 2.0):
        ax.plot(x, f * x, color="0.8", lw=0.8, ls="--")
    markers = "os^Dv<>"
    for k, (label, t, p) in enumerate(series):
        t, p = np.asarray(t, float), np.asarray(p, float)
        ok = np.isfinite(p) & (p > 0)
        failed = int(np.sum(~ok))
        ax.scatter(t[ok], p[ok], s=14, alpha=0.7, marker=markers[k % len(markers)],
                   label=f"{label} (n={int(ok.sum())}{f', {failed} failed' if failed else ''})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("κ DFT (PBE, phononDB) (W/m/K)")
    ax.set_ylabel("κ model (W/m/K)")
    ax.set_title("Lattice thermal conductivity at 300 K (dashed: factor 2)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def diatomics(by_model: dict[str, dict[str, Any]], ref: dict[str, dict[str, np.ndarray]], path: Path) -> Path | None:
    """E(r) of up to 6 dimers for every model and PBE, energies relative to the value at 6 A."""
    plt = pyplot()
    wanted = ["H", "C", "O", "Na", "Si", "Cl", "Cu", "Fe", "Mg", "Sc", "Ti", "Zn", "Li", "N"]
    have = [el for el in wanted if all(any(it["element"] == el and not it.get("failed") for it in r.get("items", []))
                                       for r in by_model.values())]
    if not have and by_model:  # take what the first model has
        first = next(iter(by_model.values()))
        have = [it["element"] for it in first.get("items", []) if not it.get("failed")]
    have = have[:6]
    if not have:
        return None
    nrow = (len(have) + 2) // 3
    fig, axes = plt.subplots(nrow, 3, figsize=(12, 3.6 * nrow), squeeze=False)
    for ax, el in zip(axes.ravel(), have):
        if el in ref:
            d, e = ref[el]["distances"], ref[el]["energies"]
            ax.plot(d, e - e[-1], "k.", ms=4, label="PBE")
        for name, raw in by_model.items():
            it = next((i for i in raw.get("items", []) if i["element"] == el and not i.get("failed")), None)
            if it is None:
                continue
            g, e = np.array(it["grid"], float), np.array(it["energy_grid"], float)
            ax.plot(g, e - e[-1], lw=1.2, label=f"{name} (jump {it['jump_at_cutoff']:+.3f} eV)")
        ax.axvline(5.0, color="r", lw=0.8, ls="--")
        ax.set_ylim(-8, 8)
        ax.set_title(f"{el}$_2$ (red: 5 Å cutoff)", fontsize=9)
        ax.set_xlabel("distance (Å)")
        ax.set_ylabel("E − E(6 Å) (eV)")
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(have):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
