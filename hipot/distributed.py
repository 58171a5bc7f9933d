"""torchrun support shared by inference, tasks and training: which process am I, which device is mine."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .device import resolve_device


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


def setup(device: str | torch.device = "auto", timeout: timedelta | None = None) -> tuple[World, torch.device]:
    """Join the process group when launched by torchrun (NCCL on GPUs, gloo on CPUs) and pick this
    rank's device: 'auto' and 'cuda' mean cuda:LOCAL_RANK under torchrun. Safe to call twice.
    `timeout` bounds collectives (barriers); long uneven runs pass a generous one."""
    w = world()
    dev = resolve_device("auto" if str(device) == "cuda" and w.size > 1 else device)
    if dev.type == "cuda":
        if dev.index is None:  # set_device needs an index
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    if w.size > 1 and not dist.is_initialized():
        kw = {"timeout": timeout} if timeout is not None else {}
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", **kw)
    return w, dev


def shard(n: int, w: World) -> range:
    """This rank's contiguous share of n items (sizes differ by at most one)."""
    per, extra = divmod(n, w.size)
    start = w.rank * per + min(w.rank, extra)
    return range(start, start + per + (1 if w.rank < extra else 0))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class PartialResults:
    """Checkpoints of a run split across torchrun ranks, kept next to its final output so that an
    interrupted run, restarted with the same command, skips what is already done.

    Each rank appends one JSON line per finished item to its own file in `.{output}.parts/`
    (flushed and fsynced per batch). On start every rank reads all part files (any world size),
    ignoring a truncated last line, and works on the items of its shard not yet done; at the end
    rank 0 merges everything in input order (`collect`) and, once the final output is written,
    removes the folder (`cleanup`). `key` identifies the run (inputs and settings): part files
    from a different run are discarded, never mixed in.
    """

    def __init__(self, output: str | os.PathLike, n: int, key: str, w: World | None = None):
        from pathlib import Path

        self.output = Path(output)
        self.n = n
        self.key = key
        self.world = w or world()
        self.dir = self.output.parent / f".{self.output.name}.parts"
        self.own = self.dir / f"rank{self.world.rank}.jsonl"

    def _read(self, path) -> dict[int, dict]:
        """Complete records of one part file; a torn last line (killed mid-write) is ignored."""
        import json

        out: dict[int, dict] = {}
        try:
            text = path.read_text()
        except FileNotFoundError:
            return out
        for line in text.split("\n")[:-1]:  # whatever follows the last newline is incomplete
            try:
                rec = json.loads(line)
                out[int(rec["i"])] = rec["d"]
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def done(self) -> dict[int, dict]:
        """Every record written so far by any rank, by item index."""
        out: dict[int, dict] = {}
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("rank*.jsonl")):
                out.update(self._read(path))
        return {i: d for i, d in out.items() if 0 <= i < self.n}

    def start(self) -> list[int]:
        """Prepare the folder (rank 0), then return this rank's items that still need doing."""
        import json
        import shutil

        meta = self.dir / "run.json"
        if self.world.is_main:
            ok = False
            if meta.is_file():
                try:
                    old = json.loads(meta.read_text())
                    ok = old.get("key") == self.key and old.get("n") == self.n
                except ValueError:
                    ok = False
            if not ok and self.dir.exists():
                shutil.rmtree(self.dir)  # another run's partial results: never mix them in
            self.dir.mkdir(parents=True, exist_ok=True)
            if not ok:
                tmp = meta.with_suffix(".tmp")
                tmp.write_text(json.dumps({"key": self.key, "n": self.n}))
                tmp.replace(meta)
        barrier()
        done = self.done()
        # Cut a torn last line (killed mid-write) off our own file, so appends start on a fresh line.
        if self.own.exists():
            text = self.own.read_text()
            if text and not text.endswith("\n"):
                tmp = self.own.with_suffix(".tmp")
                tmp.write_text(text[: text.rfind("\n") + 1])
                tmp.replace(self.own)
        return [i for i in shard(self.n, self.world) if i not in done]

    @staticmethod
    def _line(i: int, d: dict) -> str:
        import json

        return json.dumps({"i": i, "d": d}, separators=(",", ":")) + "\n"

    def append(self, records) -> None:
        """Append (index, JSON-able dict) records and make them durable before going on."""
        text = "".join(self._line(int(i), d) for i, d in records)
        if not text:
            return
        with open(self.own, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def collect(self) -> list[dict] | None:
        """After every rank is done: on rank 0 all records in input order, elsewhere None."""
        barrier()
        if not self.world.is_main:
            return None
        done = self.done()
        missing = [i for i in range(self.n) if i not in done]
        if missing:
            raise RuntimeError(f"{len(missing)} item(s) missing from the partial results in {self.dir} "
                               f"(first: {missing[:5]}); a rank failed? Rerun the same command to finish them.")
        return [done[i] for i in range(self.n)]

    def cleanup(self) -> None:
        import shutil

        if self.world.is_main and self.dir.exists():
            shutil.rmtree(self.dir)


def finish() -> None:
    """Leave the process group (end of a torchrun command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
