"""Distillation data: structures labelled by a teacher model (energies, forces, stresses).

A student (e.g. the smooth HIENet, `ModelConfig.smooth_invariant=True`) is trained on what the
teacher predicts over a broad set of structures: the seed crystals and molecules themselves,
rattled and strained copies, and snapshots of short Langevin runs driven by the teacher at
several temperatures. The labels are written as extxyz with the keys the trainer reads
(REF_energy, REF_forces, REF_stress).
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms, units

from .graph import StructureError
from .evaluator import Evaluator


@dataclass
class DistillSet:
    """How many of each kind of structure to make per seed."""

    rattled: int = 2
    rattle_sigma: tuple[float, float] = (0.02, 0.12)  # A, drawn uniformly per copy
    strained: int = 1
    max_strain: float = 0.04  # random symmetric strain, each component within +-max_strain
    temperatures: list[float] = field(default_factory=lambda: [300.0, 900.0, 1500.0])
    md_seeds: int | None = None  # run MD from at most this many seeds (evenly spaced); None: all
    md_min_atoms: int = 24  # MD cells are supercells of at least this many atoms
    md_steps: int = 60
    md_every: int = 30  # a snapshot every md_every steps (at most md_steps // 2)
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.02
    max_force: float = 50.0  # eV/A: teacher labels beyond this are dropped as unphysical
    batch_size: int = 64
    seed: int = 0


def read_seeds(paths: Sequence[str | Path], supported: Sequence[int], max_atoms: int = 64,
               limit: int | None = None, seed: int = 0) -> list[Atoms]:
    """Seed structures from ASE-readable files or JSON lists of records holding a pymatgen
    `structure` (the matcalc benchmark format), keeping those the teacher can label."""
    out: list[Atoms] = []
    ok = set(int(z) for z in supported)
    for path in map(Path, paths):
        if path.name.endswith((".json", ".json.gz")) and _is_record_list(path):
            frames = _read_records(path)
        else:
            import ase.io

            frames = ase.io.read(path, ":")
        for k, a in enumerate(frames):
            if 0 < len(a) <= max_atoms and set(a.numbers.tolist()) <= ok:
                a = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
                a.info["source"] = f"{path.name}:{k}"
                out.append(a)
    if limit is not None and len(out) > limit:
        rng = np.random.default_rng(seed)
        out = [out[k] for k in sorted(rng.choice(len(out), limit, replace=False))]
    return out


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _is_record_list(path: Path) -> bool:
    with _open(path) as f:
        head = f.read(4096)
    return head.lstrip().startswith("[") and '"structure"' in head


def _read_records(path: Path) -> list[Atoms]:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    with _open(path) as f:
        records = json.load(f)
    return [AseAtomsAdaptor.get_atoms(Structure.from_dict(r["structure"])) for r in records]


def perturbed(seeds: Sequence[Atoms], cfg: DistillSet, rng: np.random.Generator) -> list[Atoms]:
    """The seeds, rattled copies and (for periodic cells) strained and rattled copies."""
    out = []
    for a in seeds:
        out.append(a.copy())
        for _ in range(cfg.rattled):
            b = a.copy()
            b.positions += rng.normal(scale=rng.uniform(*cfg.rattle_sigma), size=b.positions.shape)
            b.info["kind"] = "rattled"
            out.append(b)
        if a.pbc.all():
            for _ in range(cfg.strained):
                b = a.copy()
                eps = rng.uniform(-cfg.max_strain, cfg.max_strain, (3, 3))
                b.set_cell(b.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
                b.positions += rng.normal(scale=0.03, size=b.positions.shape)
                b.info["kind"] = "strained"
                out.append(b)
    return out


def _evaluate_safely(evaluator: Evaluator, structures: list[Atoms], batch_size: int) -> list[dict | None]:
    """Teacher results; None for structures the model refuses (e.g. atoms run into each other)."""
    try:
        return evaluator.evaluate(structures, batch_size=batch_size)
    except StructureError:
        out: list[dict | None] = []
        for a in structures:
            try:
                out.append(evaluator.evaluate([a])[0])
            except StructureError:
                out.append(None)
        return out


def supercell(atoms: Atoms, min_atoms: int) -> Atoms:
    """Repeat a periodic cell along its shortest vectors until it holds at least min_atoms atoms
    (a 2-atom cell's dynamics moves every image alike)."""
    if not atoms.pbc.all():
        return atoms.copy()
    reps = np.ones(3, dtype=int)
    lengths = atoms.cell.lengths()
    while len(atoms) * reps.prod() < min_atoms:
        reps[np.argmin(lengths * reps)] += 1
    out = atoms.repeat(tuple(reps))
    out.info.update(atoms.info)
    return out


def md_snapshots(seeds: Sequence[Atoms], evaluator: Evaluator, cfg: DistillSet,
                 rng: np.random.Generator, progress: bool = False) -> list[Atoms]:
    """Langevin dynamics (BAOAB) of all seeds at once, driven by the teacher in batches;
    every `md_every` steps a snapshot of each still-sane structure."""
    snaps: list[Atoms] = []
    dt = cfg.timestep_fs * units.fs
    gamma = cfg.friction_per_fs / units.fs
    c1 = np.exp(-gamma * dt)
    every = max(1, min(cfg.md_every, cfg.md_steps // 2))  # at least two snapshots per run
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cfg.temperatures) * cfg.md_steps, desc="teacher MD", unit="step")
    for temp in cfg.temperatures:
        kt = units.kB * temp
        systems = [supercell(a, cfg.md_min_atoms) for a in seeds]
        masses = [a.get_masses()[:, None] for a in systems]
        vel = [rng.normal(size=a.positions.shape) * np.sqrt(kt / m) for a, m in zip(systems, masses)]
        alive = list(range(len(systems)))
        forces = {k: r["forces"] for k, r in zip(alive, _evaluate_safely(evaluator, systems, cfg.batch_size)) if r}
        alive = [k for k in alive if k in forces]
        for step in range(1, cfg.md_steps + 1):
            for k in alive:
                a, m, v = systems[k], masses[k], vel[k]
                v += 0.5 * dt * forces[k] / m
                a.positions += 0.5 * dt * v
                v *= c1
                v += np.sqrt((1 - c1**2) * kt / m) * rng.normal(size=v.shape)
                a.positions += 0.5 * dt * v
            results = _evaluate_safely(evaluator, [systems[k] for k in alive], cfg.batch_size)
            still = []
            for k, r in zip(alive, results):
                if r is None or not np.all(np.isfinite(r["forces"])):
                    continue
                forces[k] = r["forces"]
                vel[k] += 0.5 * dt * forces[k] / masses[k]
                still.append(k)
            alive = still
            if step % every == 0:
                for k in alive:
                    s = systems[k].copy()
                    s.wrap()
                    s.info.update(kind="md", temperature=temp)
                    snaps.append(s)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return snaps


def label(structures: Sequence[Atoms], evaluator: Evaluator, cfg: DistillSet) -> list[Atoms]:
    """The teacher's energy, forces and (3D-periodic cells) stress as REF_* labels."""
    out = []
    for a, r in zip(structures, _evaluate_safely(evaluator, list(structures), cfg.batch_size)):
        if r is None or np.abs(r["forces"]).max(initial=0.0) > cfg.max_force:
            continue
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
        b.info.update({k: v for k, v in a.info.items() if k in ("source", "kind", "temperature")})
        b.info["REF_energy"] = r["energy"]
        b.arrays["REF_forces"] = np.asarray(r["forces"])
        if "stress" in r:
            b.info["REF_stress"] = np.asarray(r["stress"])
        out.append(b)
    return out


def make_distillation_set(seeds: Sequence[Atoms], teacher: Evaluator, out: str | Path,
                          cfg: DistillSet | None = None, progress: bool = False) -> tuple[Path, int]:
    """Perturbed copies and teacher-MD snapshots of the seeds, labelled by the teacher, written
    atomically as extxyz. Returns the path and the number of structures."""
    import ase.io

    cfg = cfg or DistillSet()
    rng = np.random.default_rng(cfg.seed)
    structures = perturbed(seeds, cfg, rng)
    if cfg.temperatures and cfg.md_steps:
        md_seeds = list(seeds)
        if cfg.md_seeds is not None and cfg.md_seeds < len(md_seeds):
            md_seeds = [md_seeds[int(k)] for k in np.linspace(0, len(md_seeds) - 1, cfg.md_seeds)]
        structures += md_snapshots(md_seeds, teacher, cfg, rng, progress)
    labelled = label(structures, teacher, cfg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    ase.io.write(tmp, labelled, format="extxyz")
    tmp.replace(out)
    return out, len(labelled)


def smooth_student(teacher: str | Path, out: str | Path) -> Path:
    """The teacher's architecture and weights with `smooth_invariant` on, saved as a model folder:
    the starting point of the distillation (it differs from the teacher only where a neighbour is
    near the cutoff)."""
    from .checkpoint import save_model
    from .config import ModelConfig
    from .model import HIENet
    from .pretrained import load_model

    net = load_model(str(teacher), device="cpu", dtype="float32", backend="torch")
    cfg = ModelConfig.from_dict({**net.config.to_dict(), "smooth_invariant": True})
    student = HIENet(cfg)
    student.load_state_dict(net.state_dict())
    return save_model(student, out, metadata={"distilled_from": str(teacher), "stage": "initial"})


# Training settings of the distillation, merged over the fine-tuning preset: labels are exact
# (no noise to average out), so larger batches and a short cosine schedule.
DISTILL_TRAINING: dict = {
    "data": {"batch_size": 16, "valid_fraction": 0.05},
    "loss": {"kind": "huber", "huber_delta": 0.01, "energy_weight": 1.0, "forces_weight": 1.0,
             "stress_weight": 0.01, "stress_unit": "kbar"},
    "optim": {"lr": 2e-4, "weight_decay": 0.0, "ema_decay": 0.995, "grad_clip": 10.0},
    "schedule": {"per": "step", "warmup": 0.2, "warmup_start": 0.1, "min_factor": 0.02},
    "run": {"epochs": 3, "checkpoint_every": 200},
    "finetune": {"refit_shift": False},
}


def distill(seeds: Sequence[str | Path], out: str | Path, teacher: str = "hienet-v3", device: str = "auto",
            limit: int | None = None, max_atoms: int = 64, data_cfg: DistillSet | None = None,
            overrides: Sequence[dict] = (), progress: bool = True) -> Path:
    """Make (or reuse) the teacher-labelled data in OUT/data.extxyz, then train the smooth student
    from the teacher's weights in OUT/train. Returns the exported model folder. Run again with the
    same OUT to continue an interrupted distillation."""
    from .distributed import barrier, setup
    from .training import load_config, resume, train
    from .training.config import PRESETS, merge
    from .training.trainer import CHECKPOINT

    out = Path(out)
    data = out / "data.extxyz"
    # under torchrun rank 0 makes the data and the starting model while the others wait for them
    w, _ = setup(device)
    if w.is_main and not data.exists():
        evaluator = Evaluator(teacher, device=device)
        structures = read_seeds(seeds, evaluator.model.species, max_atoms, limit)
        if not structures:
            raise ValueError("no seed structure the teacher can label (elements, size)")
        _, n = make_distillation_set(structures, evaluator, data, data_cfg, progress)
        print(f"hipot distill: {n} structures labelled by {teacher} from {len(structures)} seeds -> {data}")
        del evaluator
    if w.is_main and not (out / "student_init" / "config.json").exists():
        smooth_student(teacher, out / "student_init")
    barrier()
    run_dir = out / "train"
    if (run_dir / CHECKPOINT).exists():
        return resume(run_dir, list(overrides))
    doc = merge(PRESETS["finetune"], DISTILL_TRAINING)
    doc = merge(doc, {"data": {"train": [str(data)]}, "finetune": {"start": str(out / "student_init")},
                      "run": {"out": str(run_dir), "device": device, "progress": progress}})
    cfg = load_config(None, None, [doc, *overrides])
    return train(cfg)
