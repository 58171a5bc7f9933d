"""Simulation tasks over any model: relax, md, phonons, eos, elastic, kappa, screen (functions returning dataclasses)."""
from .common import example, read_structures

__all__ = ["example", "read_structures"]
