"""Where the time of one evaluate() call on 256 different 64-atom cells goes, on a GPU (neighbour
lists, model step, copies to numpy) and how the grouping changes it.

    python3 benchmarks/batch_profile.py V3_CHECKPOINT
"""
import time, sys, torch, numpy as np
from hipot import Evaluator
from hipot.graph import build_graph
from hipot.bench.speed import structure
dev = torch.device("cuda")
ev = Evaluator(sys.argv[1], device=dev, dtype="float32")
S = [structure("Si" if k % 2 else "MgO", 64, seed=k, strain=0.02) for k in range(256)]
def t(fn, n=3):
    fn(); torch.cuda.synchronize(); ts=[]
    for _ in range(n):
        a=time.perf_counter(); r=fn(); torch.cuda.synchronize(); ts.append(time.perf_counter()-a)
    return min(ts), r
tg, g = t(lambda: build_graph(S, ev.model.cutoff, ev.model.species, device=dev).to(dev, torch.float32))
print(f"build_graph 256x64: {tg*1e3:.1f} ms, edges {g.center.numel()}")
ts, p = t(lambda: ev.step(g))
print(f"step: {ts*1e3:.1f} ms (graphed={ev.runner.graphed is not None and ev.policy.replays(g.num_atoms)})")
def plain():
    return ev.potential(g, ev.options(g), forces=True, stress=True)
tp, _ = t(plain)
print(f"plain model step: {tp*1e3:.1f} ms")
tc, _ = t(lambda: [x.detach().double().cpu().numpy() for x in (p.energy, p.energies, p.forces, p.stress)])
print(f"to numpy: {tc*1e3:.1f} ms")
te, _ = t(lambda: ev.evaluate(S, batch_size=256, max_atoms=None))
print(f"evaluate total: {te*1e3:.1f} ms = {256/te:.1f} structures/s")
for bs in (32, 64, 128):
    te, _ = t(lambda: ev.evaluate(S, batch_size=bs, max_atoms=None))
    print(f"evaluate batch_size {bs}: {256/te:.1f} structures/s")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    ev.evaluate(S, batch_size=256, max_atoms=None); torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50))
