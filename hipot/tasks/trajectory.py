"""The trajectory files of relaxations: one per structure, created with its first frame."""
from __future__ import annotations

from pathlib import Path

from ase import Atoms


class TrajectoryWriter:
    """Frames of one relaxation: ASE .traj, or extxyz for any other suffix. The file is created
    with its first frame, so a relaxation that fails before one leaves no empty file."""

    def __init__(self, path: Path):
        self.path = path
        self._traj = self._fh = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".traj":
            from ase.io import Trajectory

            self._traj = Trajectory(str(self.path), "w")
        else:
            self._fh = open(self.path, "w")

    def write(self, atoms: Atoms) -> None:
        if self._traj is None and self._fh is None:
            self._open()
        if self._traj is not None:
            self._traj.write(atoms)
        else:
            import ase.io

            ase.io.write(self._fh, atoms, format="extxyz")
            self._fh.flush()

    def close(self) -> None:
        if self._traj is not None:
            self._traj.close()
        if self._fh is not None:
            self._fh.close()


def trajectory_path(trajectory: str | Path, index: int, count: int) -> Path:
    """The trajectory file of structure `index`: the path itself for one structure, else stem.INDEX.suffix."""
    p = Path(trajectory)
    return p if count == 1 else p.with_name(f"{p.stem}.{index}{p.suffix or '.traj'}")
