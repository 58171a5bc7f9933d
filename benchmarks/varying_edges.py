"""Per-step time when the edge count changes every step (MD-like) vs a repeated identical step."""
import time, statistics, torch, numpy as np
from hipot import Evaluator
from hipot.bench.speed import structure
torch.backends.cuda.matmul.allow_tf32 = False
ev = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq")
for kind, n in [("Si", 8000), ("MgO", 8000), ("Si", 64)]:
    atoms = structure(kind, n)
    for _ in range(3):
        ev.evaluate([atoms])
    torch.cuda.synchronize()
    same = []
    for _ in range(5):
        t = time.perf_counter(); ev.evaluate([atoms]); torch.cuda.synchronize(); same.append(time.perf_counter() - t)
    rng = np.random.default_rng(0)
    vary, edges = [], []
    a = atoms.copy()
    for _ in range(10):
        a.positions += rng.normal(scale=0.02, size=a.positions.shape)
        t = time.perf_counter(); ev.evaluate([a]); torch.cuda.synchronize(); vary.append(time.perf_counter() - t)
    print(f"{kind} {len(atoms)}: same {statistics.median(same)/len(atoms)*1e6:.2f} us/atom; varying: "
          + " ".join(f"{x/len(atoms)*1e6:.1f}" for x in vary), flush=True)
