"""LAMMPS on one GPU: time per MD step of `pair_style hipot` (1 or 2 ranks sharing the card)
against `hipot md` (ASE, the same model) and the model alone (`Evaluator.step`, graph already on
the GPU), on the same rattled Si and MgO supercells, NVT at 300 K, float32. Three parts, so that
one device call can run them in separate processes under its own time limits, then one table:

    python3 benchmarks/lammps/gpu.py lammps --ranks 1 --json lmp1.json     # one lmp process, every structure
    python3 benchmarks/lammps/gpu.py lammps --ranks 2 --json lmp2.json     # mpiexec -n 2 lmp, the same
    python3 benchmarks/lammps/gpu.py python --json py.json                 # model alone, hipot md, edge order
    python3 benchmarks/lammps/gpu.py table lmp1.json py.json lmp2.json     # the markdown table

(--kinds Si MgO and --atoms 4096 32768 by default; --device cpu --atoms 64 is a dry run.)
LAMMPS: each structure is read, run `--warm` steps (first call, CUDA-graph capture, kernels
loaded) and then `--steps` steps, whose loop time and `timing yes` report (the pair style's parts,
its graph nodes and exchanged rows) are what is reported. The model alone: median of 5 steps
after 2. `hipot md`: two runs of different length after a warm-up run, the difference per step.
Edge order (the model alone, no CUDA graph, on one input in three orders): the graph builder's,
LAMMPS's (edges grouped by centre, what the kernels got from the pair style before commit
`7cd63eb`) and the interleaved order (hipot.edge_order; every engine's default from `7cd63eb` to
`b2c61a4`, measured slower there, so edges now run as given).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

US = 1e6


def structures(kinds: list[str], sizes: list[int]):
    from hipot.bench.speed import structure

    for kind in kinds:
        for n in sizes:
            yield kind, structure(kind, n)


def species_of(atoms) -> list[str]:
    symbols = atoms.get_chemical_symbols()
    return sorted(set(symbols), key=symbols.index)


def lammps_part(args) -> dict:
    """Every structure in one `lmp` process (`mpiexec -n RANKS` for several ranks)."""
    import ase.io

    work = Path(tempfile.mkdtemp(prefix="hipot-lmp-"))
    script, cases = [], []
    for kind, atoms in structures(args.kinds, args.atoms):
        name = f"{kind}{len(atoms)}"
        species = species_of(atoms)
        ase.io.write(work / f"{name}.data", atoms, format="lammps-data", specorder=species, masses=True)
        steps = args.steps if len(atoms) <= 8192 else args.steps_large
        cases.append({"kind": kind, "atoms": len(atoms), "steps": steps})
        script.append(f"""clear
units metal
atom_style atomic
boundary p p p
read_data {name}.data
pair_style hipot {args.model} device {args.device} dtype float32 timing yes
pair_coeff * * {' '.join(species)}
velocity all create 300 4928459 loop geom
fix 1 all nvt temp 300 300 0.1
thermo {steps}
run {args.warm}
run {steps}
print "CASE_DONE {name}"
""")
    (work / "in.lmp").write_text("".join(script))
    lmp = shutil.which("lmp") or str(Path(sys.executable).parent / "lmp")
    cmd = [lmp, "-in", "in.lmp", "-log", "log.lammps"]
    if args.ranks > 1:
        cmd = [shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec"), "-n", str(args.ranks)] + cmd
    started = time.perf_counter()
    # its own session, so that a run past --timeout is stopped with all its ranks, and what it
    # finished is still read
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    wall = time.perf_counter() - started
    rows = []
    for case, segment in zip(cases, out.split("CASE_DONE")):
        loops = re.findall(r"Loop time of (\S+) on (\d+) procs for (\d+) steps", segment)
        if len(loops) < 2:
            break
        loop = float(loops[-1][0])
        report = segment.split("pair hipot timing")[-1]
        values = {m.group(1): float(m.group(2)) for m in re.finditer(r"^\s{2}(\w+)\s+(\S+)\s+\S+$", report, re.M)}
        counts = {k: values.pop(k) for k in ("graph_nodes", "exchanged_rows") if k in values}
        calls = values.pop("steps", case["steps"] + 1)
        pair = float(re.search(r"^Pair\s+\|\s+\S+\s+\|\s+(\S+)", segment, re.M).group(1))
        rows.append({**case, "ranks": args.ranks, "s_per_step": loop / case["steps"],
                     "lammps_rest_s_per_step": (loop - pair) / case["steps"],
                     "parts_s_per_step": {k: v / calls for k, v in values.items()}, "per_rank": counts,
                     "timing_report": "pair hipot timing" + report[:1200]})
    result = {"part": f"lammps, {args.ranks} rank(s)", "returncode": proc.returncode, "wall_s": wall, "rows": rows}
    if proc.returncode != 0 or len(rows) < len(cases):
        result["tail"] = out[-3000:] + err[-3000:]
    return result


def python_part(args) -> dict:
    """The model alone, `hipot md`, and the edge-order comparison, per structure, in this process
    (the JSON file rewritten after each structure, so that a run stopped early leaves its rows)."""
    import torch

    from hipot import Evaluator
    from hipot.execution import ExecutionOptions
    from hipot.graph import build_graph
    from hipot.tasks.md import md

    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)  # noqa: E731

    def median(fn, repeats: int = 5, warmup: int = 2) -> float:
        for _ in range(warmup):
            fn()
        sync()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))

    ev = Evaluator(args.model, device=args.device, dtype="float32")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="hipot-md-"))
    for kind, atoms in structures(args.kinds, args.atoms):
        row = {"kind": kind, "atoms": len(atoms)}
        g = build_graph([atoms], ev.model.cutoff, ev.model.species, device=ev.device, dtype=torch.float32)
        row["edges"] = g.num_edges
        row["model_s_per_step"] = median(lambda: ev.step(g))
        # edge order: the same input, three orders, no CUDA graph
        inp = g.potential_input()
        grouped = torch.argsort(inp.center, stable=True)
        lammps_order = dataclasses.replace(inp, center=inp.center[grouped], neighbor=inp.neighbor[grouped],
                                           edge_vec=inp.edge_vec[grouped])
        base = ev.options(g)
        given = dataclasses.replace(base, edge_order="given")
        spread = dataclasses.replace(base, edge_order="interleaved")
        row["order_s_per_step"] = {
            "builder": median(lambda: ev.potential.predict(inp, given), 3, 1),
            "grouped_by_centre": median(lambda: ev.potential.predict(lammps_order, given), 3, 1),
            "interleaved": median(lambda: ev.potential.predict(lammps_order, spread), 3, 1)}

        def run_md(n: int, tag: str) -> float:
            t = time.perf_counter()
            md(atoms.copy(), ev, ensemble="nvt-nhc", temperature=300, steps=n, interval=10_000,
               trajectory=str(work / f"md_{tag}.traj"))
            sync()
            return time.perf_counter() - t

        n = args.md_steps if len(atoms) <= 8192 else args.md_steps_large
        run_md(3, "warm")  # one-time costs (kernels, CUDA-graph capture)
        short = run_md(3, "short")
        row["md_s_per_step"] = (run_md(3 + n, "long") - short) / n
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"part": "python", "rows": rows}, indent=1) + "\n")
        del g, inp, lammps_order
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return {"part": "python", "rows": rows}


def table(paths: list[Path]) -> str:
    """One row per structure: LAMMPS (1 rank, 2 ranks), hipot md and the model alone, us/atom/step."""
    parts = [json.loads(p.read_text()) for p in paths if p.is_file()]
    by = {}
    for part in parts:
        for r in part.get("rows", []):
            key = (r["kind"], r["atoms"])
            d = by.setdefault(key, {})
            if part["part"].startswith("lammps"):
                d[f"lmp{r['ranks']}"] = r
            else:
                d["py"] = r
    lines = ["| structure | atoms | LAMMPS 1 rank | 2 ranks | hipot md | model alone | LAMMPS/md | LAMMPS/model "
             "| nodes, rows (2 ranks, per rank) | order: builder / grouped / interleaved |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (kind, n), d in sorted(by.items()):
        us = lambda s: f"{s / n * US:.1f}" if s else "—"  # noqa: E731
        l1, l2, py = d.get("lmp1", {}), d.get("lmp2", {}), d.get("py", {})
        s1, s2, smd, smodel = l1.get("s_per_step"), l2.get("s_per_step"), py.get("md_s_per_step"), py.get("model_s_per_step")
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "—"  # noqa: E731
        counts = l2.get("per_rank", {})
        order = py.get("order_s_per_step", {})
        lines.append(f"| {kind} | {n:,} | {us(s1)} | {us(s2)} | {us(smd)} | {us(smodel)} | {ratio(s1, smd)} | "
                     f"{ratio(s1, smodel)} | {counts.get('graph_nodes', 0):,.0f}, {counts.get('exchanged_rows', 0):,.0f} | "
                     + " / ".join(us(order.get(k)) for k in ("builder", "grouped_by_centre", "interleaved")) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["lammps", "python", "table"])
    ap.add_argument("files", nargs="*", type=Path, help="table: the parts' JSON files")
    ap.add_argument("--kinds", nargs="+", default=["Si", "MgO"])
    ap.add_argument("--atoms", type=int, nargs="+", default=[4096, 32768])
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50, help="LAMMPS steps timed, up to 8,192 atoms")
    ap.add_argument("--steps-large", type=int, default=20, help="LAMMPS steps timed, larger")
    ap.add_argument("--md-steps", type=int, default=20)
    ap.add_argument("--md-steps-large", type=int, default=10)
    ap.add_argument("--model", default="hienet-v3")
    ap.add_argument("--device", default="cuda", help="cuda (the point of this script) or cpu (a dry run)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds for the lmp process")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.part == "table":
        print(table(args.files))
        return
    out = lammps_part(args) if args.part == "lammps" else python_part(args)
    import torch

    out.update(card=torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU", torch=torch.__version__,
               date=time.strftime("%Y-%m-%d"),
               commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=Path(__file__).parent).stdout.strip())
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    for r in out["rows"]:
        if "timing_report" in r:
            print(f"{r['kind']} {r['atoms']} ranks {r['ranks']}: {r['s_per_step'] / r['atoms'] * US:.1f} us/atom/step\n"
                  + r["timing_report"], flush=True)
    if "tail" in out:
        print(out["tail"], flush=True)


if __name__ == "__main__":
    main()
