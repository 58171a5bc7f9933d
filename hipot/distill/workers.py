"""The teacher in several processes. Labelling, relaxing and integrating many small structures is
bound largely by per-structure host work (graph building, the optimiser's bookkeeping): a lent
H100 machine spent 3.7 ms per small structure and relaxation step with the GPU mostly idle.
Worker processes, each holding its own copy of the teacher on the same device, run independent
pieces of a stage side by side (measured: 4 workers 1.2x one, 8 workers 1.8x;
benchmarks/smooth/README.md). Pieces are fixed by the data, not by the number of workers, so
the data made do not depend on it."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Sequence

from ..evaluator import Evaluator

_TEACHER: Evaluator | None = None  # the worker process's teacher
PARENT_POLL_S = 1.0  # how often a worker checks that the process that started it is still there


def _exit_with_parent(parent: int, every: float) -> None:
    """End this worker once its parent is gone. A parent stopped by SIGTERM (`timeout`, a batch
    system) or SIGKILL runs no cleanup, and its workers would go on holding the GPU and the cores
    for as long as their job lasts (seen here: two MD workers kept both cores for 40 minutes)."""
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os._exit(1)


def _init(model: Any, device: str, threads: int, workers: int) -> None:
    import torch

    from ..device import resolve_device
    from ..execution import RECOMPUTE_EDGES

    global _TEACHER
    threading.Thread(target=_exit_with_parent, args=(os.getppid(), PARENT_POLL_S), daemon=True).start()
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    recompute = None
    if dev.type == "cuda":
        # The workers share one GPU. Measured on an H100 (2026-12-07): 8 workers with CUDA graphs
        # (a memory pool per captured size) and then 4-8 workers without them, each keeping its
        # own allocator cache, filled its 80 GB and failed. Each worker gets its share of the
        # memory, recomputes per-edge activations above its share of the edge threshold and
        # returns freed segments (set before the first allocation reads it).
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
        # (an index, or None for the current device: torch refuses a 'cuda' device without one)
        torch.cuda.set_per_process_memory_fraction(0.9 / workers, dev.index)
        recompute = RECOMPUTE_EDGES["cuda"] // workers
    _TEACHER = Evaluator(model, device=dev, cuda_graphs=False, recompute_edges=recompute)


def _call(fn: Callable, args: tuple) -> Any:
    return fn(_TEACHER, *args)


class Teacher:
    """The teacher model for a data stage: `map(fn, jobs)` calls fn(evaluator, *job) for every job,
    in this process (workers=1) or spread over `workers` processes, and yields (index, result) as
    jobs finish. `fn` must be a module-level function (it is sent to the workers by name)."""

    def __init__(self, model: Any = "hienet-v3", device: str = "auto", workers: int = 1):
        self.model, self.device, self.workers = model, device, max(1, int(workers))
        self._local: Evaluator | None = None
        self._pool: ProcessPoolExecutor | None = None

    @property
    def local(self) -> Evaluator:
        """The teacher in this process (made on first use)."""
        if self._local is None:
            self._local = Evaluator(self.model, device=self.device, cuda_graphs=False)
        return self._local

    def map(self, fn: Callable, jobs: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        if self.workers == 1 or len(jobs) <= 1:
            for k, job in enumerate(jobs):
                yield k, fn(self.local, *job)
            return
        if self._pool is None:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 1) // self.workers)
            # spawn: a forked child must not inherit an initialised CUDA context
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init,
                                             initargs=(self.model, self.device, threads, self.workers))
        futures = {self._pool.submit(_call, fn, tuple(job)): k for k, job in enumerate(jobs)}
        for f in as_completed(futures):
            yield futures[f], f.result()

    def run(self, fn: Callable, jobs: Sequence[tuple], desc: str | None = None) -> list[Any]:
        """`map` to the end: the results in job order, with a progress bar (`desc`) counting the
        structures of each job (its first item)."""
        bar = None
        if desc is not None and jobs:
            from tqdm import tqdm

            bar = tqdm(total=sum(len(j[0]) for j in jobs), desc=desc, unit="structure")
        out: list[Any] = [None] * len(jobs)
        for k, result in self.map(fn, jobs):
            out[k] = result
            if bar is not None:
                bar.update(len(jobs[k][0]))
        if bar is not None:
            bar.close()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Teacher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
