"""Option values checked and applied before a verb does any work: numbers in their range, the
CPU threads, and output names that never overwrite an earlier run's files silently."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from .common import CLIError, say


# What an option's value must satisfy (besides being a finite number), for `check_numbers`.
_RULES = {"> 0": lambda v: v > 0, ">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1,
          "finite": lambda v: True, "in (0, 0.5)": lambda v: 0 < v < 0.5, "in (0, 0.1)": lambda v: 0 < v < 0.1,
          ">= 5": lambda v: v >= 5}


def check_numbers(args: argparse.Namespace, **rules: str) -> None:
    """Numeric options checked before anything is read, loaded or written: each named option (an
    attribute of args; None: not given) must be a finite number satisfying its rule (a key of
    _RULES: '> 0', '>= 0', '>= 1', ...), else a CLIError naming the option."""
    for name, rule in rules.items():
        value = getattr(args, name, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and not (math.isfinite(v) and _RULES[rule](v)):
                raise CLIError(f"--{name.replace('_', '-')} must be {'a finite number' if rule == 'finite' else rule}"
                               f" (got {v:g}); nothing was run")


def default_threads() -> int | None:
    """Threads when --threads is not given: None (leave PyTorch as it is) when $OMP_NUM_THREADS is
    set; else the cores this process may use, less those other work keeps busy (the 1-minute load
    average), shared among the torchrun ranks of this node, at least 1. PyTorch's own default (one
    thread per core) made every command 10-60x slower on a machine with other work running:
    threads waiting for busy cores at every operation."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = int(round(os.getloadavg()[0]))
    except (OSError, AttributeError):
        busy = 0
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, (cores - min(busy, cores)) // ranks)


def apply_threads(args: argparse.Namespace) -> int | None:
    """Set PyTorch's CPU threads for a verb that has --threads: the value given, or `default_threads`.
    Returns the number there was before (None: unchanged), for a caller that restores it."""
    if not hasattr(args, "threads"):
        return None
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1 (got {args.threads}); nothing was run")
    n = args.threads if args.threads is not None else default_threads()
    if n is None:
        return None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before


def numbered(path: str | os.PathLike, k: int) -> str:
    """The k-th name of an output: eos.png, eos-2.png, eos-3.png, ... (k = 1, 2, 3, ...)."""
    p = Path(path)
    return str(p) if k == 1 else str(p.with_name(f"{p.stem}-{k}{p.suffix}"))


def claim_outputs(args: argparse.Namespace, **defaults: str | None) -> None:
    """Outputs are never overwritten silently: for each option (an attribute of args, None when not
    given) a file that exists is refused when its name was given, and a default name (`defaults`,
    None: no file unless given) that exists is replaced by the first numbered one free for all the
    defaults together (eos.png -> eos-2.png; phonons-2.png with thermal-2.csv), which is said on
    stderr. --overwrite writes over them instead. Called before any work, so that a refusal costs
    nothing; sets the attributes to the names to write."""
    overwrite = getattr(args, "overwrite", False)
    for name in defaults:
        given = getattr(args, name, None)
        if given is not None and Path(given).exists() and not overwrite:
            raise CLIError(f"{given} exists (--{name.replace('_', '-')}); give another name, remove it, or pass "
                           "--overwrite; nothing was run")
    chosen = [n for n, d in defaults.items() if getattr(args, n, None) is None and d is not None]
    k = 1
    while not overwrite and any(Path(numbered(defaults[n], k)).exists() for n in chosen):
        k += 1
    for n in chosen:
        setattr(args, n, numbered(defaults[n], k))
    if k > 1:
        taken = ", ".join(str(defaults[n]) for n in chosen)
        say(args, f"hipot {args.command}: {taken} exist(s) from an earlier run: writing "
                  f"{', '.join(getattr(args, n) for n in chosen)} (--overwrite writes over them)")
