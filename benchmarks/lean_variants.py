"""Convolution variants on a GPU (RESULTS.md section 2, "What changed"): hipot's step at Si and
MgO 4,096 atoms with cuEquivariance's own backward ("native": per-edge weights kept) and with the
radial hidden layer kept instead, in edge chunks of 2^15 and 2^20, and default batches of 64-atom
cells with and without CUDA graphs at 4,096 atoms. First run at commit da65f04 (where the variants
were module attributes); since the redesign they are ExecutionOptions, as here. The V3 checkpoint
is read from /tmp/v3.pth.
"""
import time, statistics, torch
from hipot import Evaluator
from hipot.bench.speed import structure
from hipot.execution import ExecutionOptions
from hipot.graph import build_graph
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
def timeit(fn, reps=5):
    for _ in range(2): fn()
    torch.cuda.synchronize(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)
ev = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq", cuda_graphs=False)
variants = {"native": ExecutionOptions(), "lean32k": ExecutionOptions.inference(edge_chunk=1 << 15),
            "lean1M": ExecutionOptions.inference(edge_chunk=1 << 20)}
for kind in ["Si", "MgO"]:
    atoms = structure(kind, 4096)
    g = build_graph([atoms], ev.model.cutoff, ev.model.species, device=dev).to(dev, torch.float32)
    E = g.center.numel()
    for name, options in variants.items():
        torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        t = timeit(lambda: ev.potential(g, options))
        peak = torch.cuda.max_memory_allocated()
        print(f"{kind} 4096 {name:9s} model {t/4096*1e6:6.2f} us/atom  peak {peak/2**30:6.2f} GiB  {peak/E/1024:6.1f} KiB/edge", flush=True)
# batches of 256 64-atom structures
import numpy as np
structs = [structure("Si" if i % 2 else "MgO", 64, seed=i, strain=0.02) for i in range(256)]
for gma in (4096, 4097):
    ev2 = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq", graph_max_atoms=gma)
    for bs in (32, 64, 256):
        t = timeit(lambda: ev2.evaluate(structs, batch_size=bs, max_atoms=None), 3)
        print(f"batch graph_max_atoms={gma} batch_size={bs}: {256/t:.1f} structures/s", flush=True)
