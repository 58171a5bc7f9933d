"""The atom-by-atom ('padded') kernel in plain PyTorch: the choice on a CPU, several times faster
there than edge by edge.

The edges of a run of atoms are laid out as (atoms, K) slots, K the run's largest neighbour
count, so that each atom's sum over its neighbours and over the input's 2l1+1 components is one
matrix product, (2l3+1, K(2l1+1)) @ (K(2l1+1), mul), batched over atoms. No per-edge message
tensor is formed, and the products are large enough for a CPU's GEMM. Runs group atoms of similar
neighbour counts (little padding). The schedule needs the neighbour counts on the host, which is
why GPUs take the edge kernel.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ...execution import ExecutionOptions
from .base import TensorProductKernel


def atom_runs(center: Tensor, num_nodes: int, max_slots: int = 1 << 15) -> list[tuple[Tensor, Tensor, int]]:
    """Runs of atoms that have edges, in decreasing order of neighbour count, with their edges in slots.

    Each run is (atoms (n,), slots (n K,), K): K is the run's largest neighbour count and slot
    (a, k) holds the k-th edge of the run's a-th atom, or E where that atom has fewer edges. A run
    holds at most `max_slots` slots (or one atom), so padding stays small and bounded. Atoms
    without edges (isolated atoms, LAMMPS's ghost atoms) are in no run: they cost nothing."""
    n_edges = center.numel()
    device = center.device
    counts = torch.bincount(center, minlength=num_nodes)
    by_count = torch.argsort(counts, descending=True, stable=True)
    edge_order = torch.argsort(center, stable=True)
    first = torch.cumsum(counts, 0) - counts  # first position of each atom's edges in edge_order
    counts_sorted = counts[by_count].tolist()
    with_edges = counts_sorted.index(0) if 0 in counts_sorted else num_nodes  # counts descend
    runs = []
    start = 0
    while start < with_edges:
        k = counts_sorted[start]
        n = max(1, min(with_edges - start, max_slots // k))
        atoms = by_count[start : start + n]
        rank = torch.arange(k, device=device)
        valid = rank < counts[atoms].unsqueeze(1)  # (n, K)
        pos = (first[atoms].unsqueeze(1) + rank).clamp(max=n_edges - 1)
        slots = torch.where(valid, edge_order[pos], n_edges).reshape(-1)
        runs.append((atoms, slots, k))
        start += n
    return runs


class PaddedKernel(TensorProductKernel):
    name = "padded"

    def convolve(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, center: Tensor, neighbor: Tensor,
                 num_nodes: int) -> dict[int, Tensor]:
        return self._runs(xs, sh, weight, None, center, neighbor, num_nodes, recompute=False)

    def forward(self, xs: dict[int, Tensor], sh: Tensor, hidden: Tensor, last: Tensor, center: Tensor,
                neighbor: Tensor, num_nodes: int, options: ExecutionOptions) -> dict[int, Tensor]:
        """With `options.recompute`, each run computes its weights from `hidden` itself and is
        recomputed in the backward pass: nothing per edge but `hidden` is kept."""
        if not options.recompute:
            return self.convolve(xs, sh, hidden @ last, center, neighbor, num_nodes)
        return self._runs(xs, sh, hidden, last, center, neighbor, num_nodes, recompute=True)

    def _runs(self, xs: dict[int, Tensor], sh: Tensor, weight: Tensor, last: Tensor | None, center: Tensor,
              neighbor: Tensor, num_nodes: int, recompute: bool) -> dict[int, Tensor]:
        """With `last`, `weight` is the radial MLP's last hidden layer and the weights are `weight @ last`."""
        plan = self.plan
        xs_t = [xs[g.l1].transpose(1, 2) for g in plan.groups]  # (N, 2l1+1, mul): channels last
        keys = [(gi, p) for gi, g in enumerate(plan.groups) for p in range(len(g.paths))]
        parts: dict[tuple[int, int], list[Tensor]] = {key: [] for key in keys}
        order: list[Tensor] = []
        for atoms, slots, k in atom_runs(center, num_nodes):
            order.append(atoms)
            args = (slots, sh, weight, neighbor, *xs_t) if last is None else (slots, sh, weight, neighbor, last, *xs_t)
            run = partial(self._run, atoms.numel(), k, last is not None)
            outs = checkpoint(run, *args, use_reentrant=False) if recompute else run(*args)
            for key, out in zip(keys, outs):
                parts[key].append(out)
        # back to the atoms' order; atoms in no run read a zero row after the runs' rows
        done = sum(a.numel() for a in order)
        inverse = torch.full((num_nodes,), done, dtype=torch.long, device=center.device)
        if order:
            inverse[torch.cat(order)] = torch.arange(done, device=center.device)
        by_l3: dict[int, list[Tensor]] = {}
        for (gi, p), runs in parts.items():
            g = plan.groups[gi]
            d3 = g.widths[p]
            zero = sh.new_zeros((1, g.mul, d3))
            if runs and done == num_nodes:
                out = torch.cat(runs) if len(runs) > 1 else runs[0]
            else:  # some atoms (or all: a LAMMPS rank without local atoms) have no edges
                out = torch.cat([*runs, zero])
            by_l3.setdefault((d3 - 1) // 2, []).append(torch.index_select(out, 0, inverse))
        return plan.by_l3(by_l3)

    def _run(self, n: int, k: int, has_last: bool, slots: Tensor, sh: Tensor, weight: Tensor,
             neighbor: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        """One run of `n` atoms with `k` slots each: (n, mul, 2l3+1) outputs per group and path."""
        plan = self.plan
        last, xs_t = (rest[0], rest[1:]) if has_last else (None, rest)
        n_edges = sh.shape[0]
        # Empty slots read edge 0's weights and neighbour; their harmonics are zero, which zeroes
        # their contribution and their gradients.
        first = slots.clamp(max=max(n_edges - 1, 0))
        sh_pad = torch.index_select(sh, 0, first).masked_fill((slots == n_edges).unsqueeze(-1), 0.0)
        w_pad = torch.index_select(weight, 0, first)
        if last is not None:
            w_pad = w_pad @ last
        nb_pad = torch.index_select(neighbor, 0, first)
        outs = []
        for gi, (group, weights) in enumerate(zip(plan.groups, plan.split_weights(w_pad))):
            d1, mul = 2 * group.l1 + 1, group.mul
            cg = plan.harmonics_table(gi, sh)
            y = (sh_pad @ cg).view(n, k, d1, cg.shape[1] // d1)
            x = torch.index_select(xs_t[gi], 0, nb_pad)  # (n K, 2l1+1, mul)
            for w, y_p in zip(weights.split(mul, dim=1), y.split(group.widths, dim=3)):
                a = (x * w.unsqueeze(1)).view(n, k * d1, mul)
                yt = y_p.reshape(n, k * d1, y_p.shape[3]).transpose(1, 2)  # (n, 2l3+1, K(2l1+1))
                outs.append(torch.bmm(yt, a).transpose(1, 2))  # (n, mul, 2l3+1)
        return tuple(outs)
