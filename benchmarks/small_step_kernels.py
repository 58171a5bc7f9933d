import time, statistics, torch
from hipot import Evaluator
from hipot.bench.speed import structure
from hipot.graph import build_graph
dev = torch.device("cuda")
def med(fn, n=30):
    for _ in range(3): fn()
    torch.cuda.synchronize(); ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3
for kind in ("Si", "MgO"):
    a = structure(kind, 64)
    ev = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq")
    g = build_graph([a], ev.model.cutoff, ev.model.species, device=dev).to(dev, torch.float32)
    print(kind, "64: step ms %.3f  evaluate ms %.3f" % (med(lambda: ev.step(g)), med(lambda: ev.evaluate([a]))))
ev = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq", cuda_graphs=False)
a = structure("Si", 64)
g = build_graph([a], ev.model.cutoff, ev.model.species, device=dev).to(dev, torch.float32)
for _ in range(3): ev.step(g)
torch.cuda.synchronize()
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CUDA]) as p:
    ev.step(g); torch.cuda.synchronize()
kern = [e for e in p.events() if e.device_type == torch.autograd.DeviceType.CUDA]
print("kernels", len(kern), "gpu us %.0f" % sum(e.device_time for e in kern))
for kind, n in (("Si", 4096), ("MgO", 4096)):
    a = structure(kind, n)
    ev2 = Evaluator("/tmp/v3.pth", device="cuda", backend="cueq")
    print(kind, n, "evaluate us/atom %.2f" % (med(lambda: ev2.evaluate([a]), 5) * 1e3 / n))
