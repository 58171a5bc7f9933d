"""Lean-convolution variants on an H100 (RESULTS.md section 2, "What changed"): hipot's step at
Si and MgO 4,096 atoms with cuEquivariance's own backward ("native") and with the lean
convolution in edge chunks of 2^15 and 2^20, and default batches of 64-atom cells with and without
CUDA graphs at 4,096 atoms. Run at commit da65f04 on the device with the V3 checkpoint at
/tmp/v3.pth; that commit also had a split vector-Jacobian variant ("split32k", "split1M": no
better, removed), which this copy no longer sets.
"""
import time, statistics, torch, sys
from hipot import Evaluator
from hipot.bench.speed import structure
from hipot.graph import build_graph
from hipot.nn.tensor_product import CuetChannelwiseTensorProduct as C
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
lean_orig = C.convolve_lean
def native(self, xs, sh, hidden, last, center, neighbor, n, recompute=False, chunk=None):
    return self(xs, sh, hidden @ last, center, neighbor, n)
def timeit(fn, reps=5):
    for _ in range(2): fn()
    torch.cuda.synchronize(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
ev = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq", recompute_edges=10**9)
kernels = [b._kernel for b in ev.model.blocks]
variants = {"native": (native, None, False), "lean32k": (lean_orig, 1 << 15, False), "lean1M": (lean_orig, 1 << 20, False),
            }
for kind in ["Si", "MgO"]:
    atoms = structure(kind, 4096)
    g = build_graph([atoms], ev.model.cutoff, ev.model.species, device=dev).to(dev, torch.float32)
    E = g.center.numel()
    for name, (fn, chunk, split) in variants.items():
        C.convolve_lean = fn
        for k in kernels:
            k.lean_chunk = chunk or (1 << 15)
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        t = timeit(lambda: ev.step(g))
        peak = torch.cuda.max_memory_allocated()
        te = timeit(lambda: ev.evaluate([atoms]), 3) if name in ("native", "lean32k") else float("nan")
        print(f"{kind} 4096 {name:9s} model {t/4096*1e6:6.2f} us/atom  e2e {te/4096*1e6:6.2f}  peak {peak/2**30:6.2f} GiB  {peak/E/1024:6.1f} KiB/edge", flush=True)
C.convolve_lean = lean_orig
for k in kernels:
    k.lean_chunk = 1 << 15
# batches of 256 64-atom structures
import numpy as np
structs = [structure("Si" if i % 2 else "MgO", 64, seed=i, strain=0.02) for i in range(256)]
for gma in (4096, 4097):
    ev2 = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq", graph_max_atoms=gma)
    for bs in (32, 64, 256):
        t = timeit(lambda: ev2.evaluate(structs, batch_size=bs, max_atoms=None), 3)
        print(f"batch graph_max_atoms={gma} batch_size={bs}: {256/t:.1f} structures/s", flush=True)
