"""How `pair_style hipot` feeds the model against how the evaluator does, on the CPU (no GPU, no
LAMMPS: the driver runs in-process on tests/fake_lammps.py's one-rank input, which is what
pair_hipot.cpp hands over).

    python3 benchmarks/lammps/profile_driver.py --backend cueq [--old /path/to/old/checkout] --json out.json

Per path (the evaluator, `Evaluator.step` on the graph builder's graph; the driver of this
checkout; with --old, the evaluator and the driver of another checkout, that driver given
LAMMPS's ghost atoms as nodes as pair_hipot.cpp did before folding): the graph's nodes and edges, the number of backward passes
(`torch.autograd.grad` calls), and for every tensor-product kernel call what it was fed: edges,
output rows, input rows, index dtype, and how the output (scatter) index runs, i.e. the mean
number of consecutive edges that add into the same row (1 = every edge a different row; LAMMPS
lists all of an atom's edges together). With `--backend cueq` the kernels are cuEquivariance's
polynomials (their plain-PyTorch method on a CPU: the times here are not the GPU's, the inputs are
the ones the GPU kernels get). One warm-up step, then one timed step per path.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


def run_length(index) -> float:
    """Mean length of the runs of equal consecutive values."""
    import torch

    if index.numel() < 2:
        return float(index.numel())
    return index.numel() / (1 + int((index[1:] != index[:-1]).sum()))


def instrument(model) -> tuple[list[dict], dict]:
    """Record what every tensor-product kernel call gets, and count backward passes."""
    import torch

    calls: list[dict] = []
    grads = {"autograd.grad": 0}
    original = torch.autograd.grad

    def counted(*a, **k):
        grads["autograd.grad"] += 1
        return original(*a, **k)

    torch.autograd.grad = counted

    def hook(module, args, kwargs):
        inputs = args[0] if args else kwargs["inputs"]
        ii, oi = kwargs.get("input_indices", {}), kwargs.get("output_indices", {})
        out_index = next(iter(oi.values()), None)
        in_index = next(iter(ii.values()), None)
        calls.append({"edges": int(inputs[0].shape[0]),
                      "output_rows": int(next(iter(kwargs.get("output_shapes", {}).values())).shape[0]),
                      "input_rows": [int(t.shape[0]) for t in inputs],
                      "index_dtype": str(out_index.dtype) if out_index is not None else None,
                      "scatter_run_length": run_length(out_index) if out_index is not None else None,
                      "gather_run_length": run_length(in_index) if in_index is not None else None,
                      "contiguous": all(t.is_contiguous() for t in inputs)})

    for name, m in model.named_modules():
        if type(m).__name__ == "SegmentedPolynomial":
            m.register_forward_pre_hook(hook, with_kwargs=True)
    return calls, grads


def summary(calls: list[dict]) -> dict:
    if not calls:
        return {}
    fwd = [c for c in calls if len(c["input_rows"]) == 3]  # (w, x, Y); the vector-Jacobian products take 4
    pick = fwd or calls
    return {"kernel_calls": len(calls), "forward_calls": len(fwd),
            "edges_per_call": sorted({c["edges"] for c in pick}), "output_rows": sorted({c["output_rows"] for c in pick}),
            "x_rows": sorted({c["input_rows"][1] for c in pick}), "index_dtype": sorted({str(c["index_dtype"]) for c in pick}),
            "scatter_run_length": round(sum(c["scatter_run_length"] or 0 for c in pick) / len(pick), 2),
            "gather_run_length": round(sum(c["gather_run_length"] or 0 for c in pick) / len(pick), 2),
            "all_contiguous": all(c["contiguous"] for c in calls)}


def child(path: str, args) -> dict:
    """One path, in this process (run by the parent with the right PYTHONPATH)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    torch.set_num_threads(args.threads)
    from ase.build import bulk

    atoms = bulk("MgO", "rocksalt", a=4.21, cubic=True) * (args.reps, args.reps, args.reps)
    atoms.rattle(0.02, seed=3)
    out: dict = {"path": path, "atoms": len(atoms)}
    if path == "evaluator":
        from hipot import Evaluator
        from hipot.graph import build_graph

        ev = Evaluator(args.model, device="cpu", dtype="float32", backend=args.backend)
        g = build_graph([atoms], ev.model.cutoff, ev.model.species, dtype=torch.float32)
        calls, grads = instrument(ev.model)
        ev.step(g)
        calls.clear()
        grads["autograd.grad"] = 0
        t = time.perf_counter()
        ev.step(g)
        out.update(seconds=time.perf_counter() - t, nodes=g.num_atoms, edges=g.num_edges,
                   edge_run_length=run_length(g.center))
    else:
        from fake_lammps import FakeComm, run, split

        from hipot.pretrained import load_model

        cutoff = load_model(args.model, device="cpu").cutoff
        fold = path == "driver"
        ranks = split(atoms, 1, cutoff, ["Mg", "O"], fold=fold)
        pair = [args.model, "device", "cpu", "dtype", "float32", "backend", args.backend]
        from hipot.lammps import driver as drv

        made = []
        original = drv.Driver.__init__

        def init(self, *a, **k):
            original(self, *a, **k)
            made.append(self)

        drv.Driver.__init__ = init
        run(ranks, pair, ["Mg", "O"])  # warm-up (and the instance to instrument)
        calls, grads = instrument(made[-1].model)
        calls.clear()
        # the same step again on the same driver, instrumented
        comm = FakeComm(ranks)
        d = made[-1]
        d.communicate = comm.communicate(0)
        r = ranks[0]
        for a in (r.f, r.eatom, r.vatom):
            a[:] = 0
        grads["autograd.grad"] = 0
        t = time.perf_counter()
        d.compute(r.nlocal, r.nghost, *(memoryview(a) for a in (r.nodes, r.types, r.center, r.neighbor, r.vec, r.f,
                                                                 r.eatom, r.vatom)))
        out.update(seconds=time.perf_counter() - t, nodes=len(r.nodes), edges=len(r.center),
                   edge_run_length=run_length(torch.from_numpy(r.center)), lammps_ghosts=r.nghost,
                   communications=len(r.calls))
    out.update(grads)
    out.update(summary(calls))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="hienet-v3")
    ap.add_argument("--backend", default="cueq")
    ap.add_argument("--reps", type=int, default=2, help="MgO cubic cells per direction (2: 64 atoms)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--old", type=Path, help="a checkout (its hipot/) whose driver to profile as well")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return
    paths = [("evaluator", REPO), ("driver", REPO)]
    if args.old:
        paths += [("evaluator (old)", args.old), ("driver (old)", args.old)]
    rows = []
    for name, root in paths:
        env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   OMP_NUM_THREADS=str(args.threads))
        kind = "evaluator" if name.startswith("evaluator") else "driver" if name == "driver" else "old"
        cmd = [sys.executable, str(HERE), "--child", kind, "--model", args.model, "--backend", args.backend,
               "--reps", str(args.reps), "--threads", str(args.threads)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            raise RuntimeError(f"{name}: {res.stdout[-2000:]}\n{res.stderr[-3000:]}")
        row = json.loads(line[0][7:])
        row["path"] = name
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "model": args.model, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
