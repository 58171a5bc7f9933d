"""Where hipot keeps what it makes once (converted weights, the LAMMPS plugin): no heavy imports."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$HIPOT_CACHE, else $XDG_CACHE_HOME/hipot, else ~/.cache/hipot."""
    if os.environ.get("HIPOT_CACHE"):
        return Path(os.environ["HIPOT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hipot"
