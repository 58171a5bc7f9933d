"""Files written so that an interruption never leaves half of one: the one atomic write and the
one JSON writer of the package; and warnings held back while a file is read."""
from __future__ import annotations

import json
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temporary file next to `path`, then rename it onto `path`: readers and
    a rerun after a kill see either the old file or the new one. The folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def jsonable(x: Any) -> Any:
    """Plain JSON values: numpy arrays and scalars as Python ones, NaN and infinities as null
    (JSON has neither), tuples as lists, keys as strings."""
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return jsonable(x.item())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Atomic JSON write of `obj` through `jsonable` (strict JSON: missing numbers are null).
    `indent=None` writes compactly (large raw results)."""
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


@contextmanager
def held_warnings(source: str | os.PathLike) -> Iterator[None]:
    """Read a file inside this block: the warnings its reader raises are held back, dropped if
    the read fails (the caller's one-line error says what is wrong; ASE's CIF reader, for one,
    warns with the garbled bytes themselves before it fails) and raised again, once each and
    naming the file, if it succeeds."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for w in caught:
        text = f"{source}: {w.message}"
        if text not in seen:
            seen.add(text)
            warnings.warn(text, w.category, stacklevel=3)
