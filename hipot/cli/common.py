"""Arguments and helpers shared by the command-line verbs."""
from __future__ import annotations

import argparse


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype, --backend: how every verb picks and places its model."""
    p.add_argument("--model", default="hienet-v3", help="model name, hipot model folder or official .pth (default: hienet-v3)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default: float32")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "cueq"],
                   help="tensor-product kernels: cuEquivariance on a GPU when installed (auto), or force one")
