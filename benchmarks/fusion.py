"""Kernel fusion for the launch-bound small step (issue: 64-atom step bound by ~1,100 kernel
launches): hipot's energy+forces+stress step on 64-atom Si and MgO with and without
torch.compile of the energy model (Inductor fuses the element-wise chains of the forward and
of the backward that AOTAutograd derives), both replayed as CUDA graphs, in the same call.

    python3 benchmarks/fusion.py CHECKPOINT [--backends cueq edges] [--kinds Si MgO] [--atoms 64]

Prints, per backend and structure: kernels per step (profiler, not graphed), median step time
with CUDA-graph replay, compile time, and the largest energy/force difference compiled vs eager.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hipot import Evaluator
from hipot.bench.speed import structure
from hipot.graph import build_graph


def median_ms(fn, n: int = 50) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def kernels_per_step(ev: Evaluator, g) -> int:
    from torch.profiler import ProfilerActivity, profile

    graphed, ev.runner.graphed = ev.runner.graphed, None
    ev.step(g)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        ev.step(g)
        torch.cuda.synchronize()
    ev.runner.graphed = graphed
    return sum(1 for e in p.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--backends", nargs="+", default=["cueq", "edges"])
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--atoms", type=int, default=64)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    print("| backend | structure | atoms | variant | kernels/step | step ms (CUDA graph) | compile s | max dE eV | max dF eV/A |")
    print("|---|---|---|---|---|---|---|---|---|")
    for backend in args.backends:
        for kind in args.kinds:
            atoms = structure(kind, args.atoms)
            ev = Evaluator(args.checkpoint, device="cuda", backend=backend)
            g = build_graph([atoms], ev.model.cutoff, ev.model.species, device="cuda").to("cuda", torch.float32)
            ref = ev.step(g)
            row = (backend, kind, len(atoms))
            print(f"| {' | '.join(map(str, row))} | eager | {kernels_per_step(ev, g)} | {median_ms(lambda: ev.step(g)):.3f} | | | |",
                  flush=True)
            try:
                fused = Evaluator(args.checkpoint, device="cuda", backend=backend)
                fused.potential.energy_model = torch.compile(fused.model, dynamic=False)
                t0 = time.perf_counter()
                out = fused.step(g)  # compiles (and captures the CUDA graph)
                torch.cuda.synchronize()
                t_compile = time.perf_counter() - t0
                de = float((out.energy - ref.energy).abs().max())
                df = float((out.forces - ref.forces).abs().max())
                print(f"| {' | '.join(map(str, row))} | torch.compile | {kernels_per_step(fused, g)} | "
                      f"{median_ms(lambda: fused.step(g)):.3f} | {t_compile:.0f} | {de:.1e} | {df:.1e} |", flush=True)
            except Exception as e:  # report, do not hide: a failure to compile is a result too
                msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                print(f"| {' | '.join(map(str, row))} | torch.compile | failed: {type(e).__name__}: {msg} | | | | |", flush=True)


if __name__ == "__main__":
    main()
