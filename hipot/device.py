"""Device and dtype from what users write ('auto', 'cuda:1', 'float64'): the one resolver."""
from __future__ import annotations

import os

import torch


_LOCAL_RANK = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto': this process's GPU when CUDA is there (the local rank set by torchrun, MPICH or Open MPI
    picks one GPU per process), else the CPU. Anything else as torch reads it."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        local = next((os.environ[k] for k in _LOCAL_RANK if k in os.environ), None)
        return torch.device("cuda", int(local) % torch.cuda.device_count()) if local is not None else torch.device("cuda")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r} (use 'auto', 'cpu', 'cuda' or 'cuda:N')") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this torch has no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "float64": torch.float64, "single": torch.float32, "double": torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
    return table[dtype]
