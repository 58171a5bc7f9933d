"""Channel-wise tensor products: the plan (`plan.py`) and the kernels that execute it, one module
each (`edges`, `padded`, `cueq`), swapped in one place (`use_kernel`)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .base import TensorProductKernel
from .cueq import CueqKernel, cuequivariance_available
from .edges import EdgeKernel
from .padded import PaddedKernel, atom_runs
from .plan import ChannelwisePlan, Path, PathGroup, uvu_paths

BACKENDS = ("auto", "torch", "edges", "padded", "cueq")

__all__ = ["BACKENDS", "ChannelwisePlan", "CueqKernel", "EdgeKernel", "PaddedKernel", "Path", "PathGroup",
           "TensorProductKernel", "atom_runs", "cuequivariance_available", "kernel_factory", "resolve_backend",
           "use_kernel", "uvu_paths"]


def resolve_backend(backend: str, device: torch.device) -> str:
    """The kernel a backend name means on `device`: 'auto' is cuEquivariance on a GPU where its
    CUDA kernels are installed, else 'torch'; 'torch' is 'edges' on a GPU and 'padded' on a CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        backend = "cueq" if device.type == "cuda" and cuequivariance_available() else "torch"
    if backend == "torch":
        backend = "edges" if device.type == "cuda" else "padded"
    if backend == "cueq" and not cuequivariance_available(kernels=device.type == "cuda"):
        raise RuntimeError("backend 'cueq' needs cuequivariance, cuequivariance-torch and, on a GPU, "
                           "cuequivariance-ops-torch (pip install 'hipot[gpu]')")
    return backend


def kernel_factory(name: str, device: torch.device) -> Callable[[ChannelwisePlan], TensorProductKernel]:
    """plan -> kernel module for a resolved backend name."""
    if name == "edges":
        return EdgeKernel
    if name == "padded":
        return PaddedKernel
    if name == "cueq":
        method = "uniform_1d" if device.type == "cuda" else "naive"
        return lambda plan: CueqKernel(plan, method=method)
    raise ValueError(f"unknown kernel {name!r}")


def use_kernel(model: nn.Module, factory: Callable[[ChannelwisePlan], TensorProductKernel]) -> int:
    """Replace every tensor-product kernel in `model` by `factory(its plan)`, on the old kernel's
    device and dtype (NequIP's replace_submodules). Returns how many were replaced."""
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, TensorProductKernel)]
    for parent, name, old in swaps:
        new = factory(old.plan)
        ref = next(iter(parent.parameters()), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        setattr(parent, name, new)
    return len(swaps)
