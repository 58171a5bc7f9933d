"""Host work of one small structure, CPU, one thread: building its graph and `Evaluator.evaluate`
with the model step replaced by a stored result (what a GPU step waits on before the model runs).

    python3 benchmarks/host_overhead.py --repeats 300
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hipot import Evaluator
from hipot.bench.speed import structure
from hipot.graph import build_graph


def timed(fn, n: int) -> tuple[float, float]:
    """(median, minimum) milliseconds of n calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts), 1e3 * min(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--atoms", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ev = Evaluator("hienet-v3", device="cpu", dtype="float32")
    out = {}
    for kind in args.kinds:
        atoms = structure(kind, args.atoms)
        graph = lambda: build_graph([atoms], ev.model.cutoff, ev.model.species, device="cpu", dtype=torch.float32)  # noqa: E731
        stored = ev.step(graph())
        step, ev.step = ev.step, (lambda *a, **k: stored)  # the model left out
        try:
            out[kind] = {"build_graph_ms": timed(graph, args.repeats),
                         "evaluate_host_ms": timed(lambda: ev.evaluate([atoms], batch_size=1, max_atoms=None), args.repeats)}
        finally:
            ev.step = step
        print(f"{kind} {args.atoms}: build_graph {out[kind]['build_graph_ms'][0]:.2f} ms (min "
              f"{out[kind]['build_graph_ms'][1]:.2f}), evaluate without the model {out[kind]['evaluate_host_ms'][0]:.2f} ms "
              f"(min {out[kind]['evaluate_host_ms'][1]:.2f})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
