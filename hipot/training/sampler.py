"""Which structures each process trains on at each step: shuffled per epoch, balanced by atoms.

Every epoch is a fixed function of (seed, epoch): the training order is a seeded permutation,
cut into global batches of batch_size x world_size structures; each global batch is split
among the processes so that their atom counts are as equal as possible (largest structure
first, to the process with the fewest atoms so far). A run can therefore resume at any step of
any epoch from just (epoch, step), and every process computes its share without communication.
"""
from __future__ import annotations

import numpy as np


class AtomBalancedSampler:
    def __init__(self, sizes: np.ndarray, batch_size: int, world_size: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True):
        if len(sizes) < world_size:
            raise ValueError(f"{len(sizes)} training structures cannot feed {world_size} processes")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self.seed, self.shuffle = seed, shuffle

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches (indices into the data set). A last batch with fewer
        structures than processes is dropped (each process needs at least one)."""
        n = len(self.sizes)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        step = self.batch_size * self.world_size
        chunks = [order[k:k + step] for k in range(0, n, step)]
        return [c for c in chunks if len(c) >= self.world_size]

    def split(self, chunk: np.ndarray) -> list[np.ndarray]:
        """One global batch -> one index array per process, atom counts balanced."""
        load = np.zeros(self.world_size, dtype=np.int64)
        owner = np.empty(len(chunk), dtype=np.int64)
        for k in np.argsort(-self.sizes[chunk], kind="stable"):
            r = int(np.argmin(load))
            owner[k] = r
            load[r] += self.sizes[chunk[k]]
        return [chunk[owner == r] for r in range(self.world_size)]

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This process's batches for the epoch."""
        return [self.split(c)[self.rank] for c in self.global_batches(epoch)]

    def __len__(self) -> int:
        """Steps per epoch."""
        return len(self.global_batches(0))


def fixed_batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of a fixed index list (validation)."""
    return [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
