"""Host work of the pair style's ghost-feature exchange (`hipot/lammps/driver.py`, `_Exchange`), the
LAMMPS communication itself left out: one forward + one reverse exchange of HIENet-V3's widest
features on a domain of `--local` atoms and `--ghosts` ghosts, on the CPU. `--driver` times
another version of driver.py, e.g. the one before the rewrite:

    git show 4e78eb9:hipot/lammps/driver.py > /tmp/driver_4e78eb9.py
    python3 benchmarks/lammps/exchange_host.py --driver /tmp/driver_4e78eb9.py
    python3 benchmarks/lammps/exchange_host.py
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
import time

import torch


def load_driver(path: str | None):
    if path is None:
        from hipot.lammps import driver
        return driver
    spec = importlib.util.spec_from_file_location("hipot.lammps._timed_driver", path)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "hipot.lammps"
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--driver", help="a driver.py to time (default: this checkout's)")
    ap.add_argument("--local", type=int, default=512)
    ap.add_argument("--ghosts", type=int, default=1959)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    driver = load_driver(args.driver)
    gen = torch.Generator().manual_seed(0)
    nodes = torch.cat([torch.arange(args.local), args.local + torch.randperm(args.ghosts, generator=gen)[: args.ghosts * 3 // 4]])
    n = nodes.numel()
    # as wide as HIENet-V3's widest exchanged row (1,440 numbers an atom)
    xs = {0: torch.randn(n, 288, 1), 1: torch.randn(n, 128, 3), 2: torch.randn(n, 64, 5), 3: torch.randn(n, 64, 7)}
    cpu = torch.device("cpu")
    extra = [driver._HostBuffer(cpu)] if "host" in inspect.signature(driver._Exchange).parameters else []
    ex = driver._Exchange(lambda *a: None, nodes, args.local, args.local + args.ghosts, cpu, torch.float32, *extra)
    ex(xs, False), ex(xs, True)  # warm-up
    t = time.perf_counter()
    for _ in range(args.repeats):
        ex(xs, False), ex(xs, True)
    print(f"{(time.perf_counter() - t) / args.repeats * 1e3:.2f} ms per forward + reverse exchange "
          f"({args.local} local atoms, {args.ghosts} ghosts, {n} nodes)")


if __name__ == "__main__":
    main()
