"""Options shared by the benchmarks, subset selection and progress output."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCHMARKS = ["wbm", "dcdft", "elastic", "diatomics", "phonons", "heat_capacity", "kappa"]


@dataclass
class Options:
    data_dir: Path
    limits: dict[str, int | None] = field(default_factory=dict)       # per benchmark, for every model
    peer_limits: dict[str, int | None] = field(default_factory=dict)  # per benchmark, for peers only
    quick: bool = False
    batch_size: int = 64
    seed: int = 0
    max_atoms: int | None = None   # only structures with at most this many atoms (--quick: CPU-sized)
    scratch: Path | None = None    # a model's folder for partial results of long benchmarks (set by the runner)
    only: dict[str, list[str]] = field(default_factory=dict)  # per benchmark, named structures instead of a limit

    def limit(self, bench: str, peer: bool) -> int | None:
        n = self.limits.get(bench)
        if peer and self.peer_limits.get(bench) is not None:
            n = self.peer_limits[bench] if n is None else min(n, self.peer_limits[bench])
        return n


def num(x) -> float:
    """A stored number as a float: null (a missing value in strict JSON) is NaN."""
    return float("nan") if x is None else float(x)


def subset(n_total: int, limit: int | None, seed: int = 0) -> list[int]:
    """The first `limit` indices of one seeded permutation: a smaller limit gives a subset of a
    larger one, so the peers' structures are always among the main model's."""
    order = np.random.default_rng(seed).permutation(n_total)
    return [int(i) for i in (order if limit is None else order[:limit])]


def pick(atoms_list: list, bench: str, handle, opts: Options) -> list[int]:
    """Indices of the structures a model is scored on: one seeded order of the structures within
    opts.max_atoms atoms (the same order for every model), skipping elements the model does not
    know, cut at the benchmark's limit. A peer's subset is thus a prefix of the same order."""
    small = [i for i, a in enumerate(atoms_list) if opts.max_atoms is None or len(a) <= opts.max_atoms]
    limit = opts.limit(bench, handle.kind == "peer")
    out = []
    for j in subset(len(small), None, opts.seed):
        if limit is not None and len(out) >= limit:
            break
        if supports(handle, atoms_list[small[j]]):
            out.append(small[j])
    return out


def supports(handle, atoms) -> bool:
    """Whether a hipot model knows every element (peers: assumed, failures are recorded instead)."""
    if getattr(handle, "evaluator", None) is None:
        return True
    known = getattr(handle, "_known", None)
    if known is None:
        known = handle._known = set(int(z) for z in handle.evaluator.model.species)
    return set(int(z) for z in atoms.numbers) <= known


_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[evaluate {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)
