"""Pieces every section of the report uses: number formatting, Markdown tables, and the page
(the run's numbers, where the report and its figures go)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .summary import RunSummary


def f(x: Any, digits: int = 3) -> str:
    """A number for a table: fixed digits, '—' for missing/NaN."""
    if x is None:
        return "—"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "—" if not math.isfinite(x) else f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


@dataclass
class Page:
    """What a section needs: the numbers, and where the report and its figures are written."""

    s: RunSummary
    out: Path
    plots: Path
    raw_dir: Path

    @property
    def prefix(self) -> str:
        return "quick-" if self.s.quick else ""

    def rel(self, path: Path) -> str:
        """A path as the report links it (relative to the report's folder)."""
        return os.path.relpath(path, self.out.parent)

    @staticmethod
    def here(path: Path) -> str:
        """A path as a command run in the current folder names it."""
        return os.path.relpath(path, Path.cwd())

    def figure(self, name: str) -> Path:
        return self.plots / f"{self.prefix}{name}"

    def image(self, alt: str, path: Path | None) -> list[str]:
        return [f"![{alt}]({self.rel(path)})", ""] if path is not None and path.exists() else []

    def run_line(self, bench: str) -> str:
        by = self.s.raws.get(bench, {})

        def count(r: dict[str, Any]) -> int:
            items = r.get("items", [])
            return items[0].get("n_supercells", 1) if bench == "phonons" and items else len(items)

        ns = ", ".join(f"{m}: {count(r)} structures, {f(r.get('seconds'), 0)} s" for m, r in by.items())
        return (f"**Run:** {', then '.join(f'`{c}`' for c in self.s.commands)} ({ns}); this benchmark alone: "
                f"`hipot evaluate --benchmarks {bench}` with the same options.")

    def errors(self, bench: str) -> list[str]:
        out = []
        for m, r in self.s.raws.get(bench, {}).items():
            if r.get("error"):
                out += [f"**{m}: error** `{r['error']}`", ""]
        return out

    def rows(self, bench: str, row: Callable[[str, str, dict], list[Any]]) -> list[list[Any]]:
        """One table row per model for the shared structures ('common'), then per model on its own."""
        out = []
        for label, sums in (("common", self.s.common.get(bench, {})), ("own", self.s.own.get(bench, {}))):
            for m, sm in sums.items():
                if sm and sm.get("n"):
                    out.append(row(m, label, sm))
        return out
