"""torchrun support shared by inference, tasks and training: which process am I, which device is mine."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place in a torchrun launch (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: str | torch.device = "auto") -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPUs) and pick this
    rank's device: 'auto' and 'cuda' mean cuda:LOCAL_RANK under torchrun. Safe to call twice."""
    w = world()
    device = str(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and w.size > 1:
        device = f"cuda:{w.local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if w.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return w, dev


def shard(n: int, w: World) -> range:
    """This rank's contiguous share of n items (sizes differ by at most one)."""
    per, extra = divmod(n, w.size)
    start = w.rank * per + min(w.rank, extra)
    return range(start, start + per + (1 if w.rank < extra else 0))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
