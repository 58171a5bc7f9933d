"""`hipot distill` from start to end: teacher-labelled data in stages that each survive an
interruption, the smooth starting model, and training with the `distill` preset (resumed from
its checkpoint when one exists). The same command continues an interrupted run."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms

from ..io import jsonable, write_json
from .label import label, label_in_parts, write_extxyz
from .recipe import Recipe
from .md import md_in_groups
from .perturb import perturbed, supercell
from .sampling import relaxed_substitutions
from .seeds import read_seeds
from .student import smooth_student
from .workers import Teacher

MANIFEST = "data/manifest.json"


def _read(path: Path) -> list[Atoms]:
    import ase.io

    return ase.io.read(path, ":", format="extxyz") if path.stat().st_size else []


def _evenly(items: list, n: int | None) -> list:
    if n is None or n >= len(items):
        return list(items)
    return [items[int(k)] for k in np.linspace(0, len(items) - 1, n)] if n > 0 else []


def make_data(recipe: Recipe, teacher: Teacher, out: str | Path, progress: bool = False) -> dict:
    """The labelled training parts (OUT/data/part-*.extxyz) and the labelled held-out set
    (OUT/data/test.extxyz) of `recipe`. Stages: perturbed copies of the seeds (no model),
    teacher-relaxed substitutions (OUT/data/substituted.extxyz), teacher MD (OUT/md/), labels in
    parts. Each stage's output is kept, so a rerun after an interruption picks up where it
    stopped; OUT/data/manifest.json records the recipe, and data of another recipe are refused.
    Returns the manifest."""
    out = Path(out)
    data_dir = out / "data"
    manifest_path = out / MANIFEST
    key = jsonable(recipe.data_key())
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("recipe") != key:
            raise ValueError(f"{out} holds distillation data of another recipe ({manifest_path}); "
                             "use another --out, or the same settings as before")
        if manifest.get("parts") is not None:
            return manifest
    else:
        write_json(manifest_path, {"recipe": key})
    from ..pretrained import model_config

    cfg = recipe.data
    species = model_config(recipe.teacher).species
    seeds = read_seeds(recipe.seeds, species, recipe.max_atoms, recipe.limit, cfg.seed)
    if not seeds:
        raise ValueError("no seed structure the teacher can label (elements, --max-atoms)")
    structures = perturbed(seeds, cfg.rattled, cfg.rattle_sigma, cfg.strained, cfg.max_strain,
                           np.random.default_rng(cfg.seed))
    subs: list[Atoms] = []
    if cfg.substitutions:
        subs_path = data_dir / "substituted.extxyz"
        if not subs_path.exists():
            write_extxyz(subs_path, relaxed_substitutions(
                seeds, teacher, species, cfg.substitutions, cfg.substitution_relax_steps,
                np.random.default_rng(cfg.seed + 1), data_dir / "substituted-parts", cfg.substitution_split,
                cfg.batch_size, cfg.substitution_part, progress))
        subs = _read(subs_path)  # the file's numbers, also in the run that wrote it
        structures += subs
    if cfg.temperatures and cfg.md_steps:
        pool = seeds + [s for s in subs if s.info.get("kind") == "substituted-relaxed"]
        chosen = _evenly(pool, cfg.md_seeds)
        starts = [supercell(a, cfg.md_min_atoms) for a in chosen for _ in cfg.temperatures]
        temps = [float(t) for _ in chosen for t in cfg.temperatures]
        structures += md_in_groups(starts, temps, teacher, out / "md", cfg.md_steps, cfg.md_every, cfg.timestep_fs,
                                   cfg.friction_per_fs, cfg.seed, cfg.batch_size, cfg.max_force, cfg.md_group,
                                   progress)
    parts, n = label_in_parts(structures, teacher, data_dir, cfg.part_size, cfg.max_force, cfg.batch_size, progress)
    test = None
    if recipe.test:
        test_path = data_dir / "test.extxyz"
        if not test_path.exists():
            held_out = read_seeds(recipe.test, species, recipe.max_atoms)
            write_extxyz(test_path, label(held_out, teacher.local, cfg.max_force, cfg.batch_size))
        test = str(test_path)
    manifest = {"recipe": key, "seeds": len(seeds), "made": dict(Counter(s.info.get("kind", "seed") for s in structures)),
                "atoms_made": int(sum(len(s) for s in structures)), "labelled": n, "parts": [str(p) for p in parts], "test": test}
    write_json(manifest_path, manifest)
    return manifest


def distill(recipe: Recipe, out: str | Path, device: str = "auto", overrides: Sequence[dict] = (),
            progress: bool = True) -> Path:
    """Make (or reuse) the teacher-labelled data in OUT/data, then train the smooth student from
    the teacher's weights in OUT/train with PRESETS['distill'], the recipe's training settings and
    `overrides` (in that order). Returns the exported model folder. Run again with the same OUT to
    continue an interrupted distillation (data stages are kept, training resumes from its
    checkpoint; `overrides` such as more steps apply on top)."""
    from ..distributed import barrier, setup
    from ..training import load_config, resume, train
    from ..training.config import PRESETS, merge
    from ..training.trainer import CHECKPOINT

    out = Path(out)
    # under torchrun rank 0 makes the data and the starting model while the others wait for them
    w, _ = setup(device)
    if w.is_main:
        data_only(recipe, out, device, progress)
        # (a run continued from a travel pack has its checkpoint and needs no starting model)
        if not (out / "train" / CHECKPOINT).exists() and not (out / "student_init" / "config.json").exists():
            smooth_student(recipe.teacher, out / "student_init", recipe.smooth_from)
    barrier()
    manifest = finished_manifest(out, recipe)
    run_dir = out / "train"
    if (run_dir / CHECKPOINT).exists():
        _check_student(run_dir / CHECKPOINT, recipe)
        return resume(run_dir, list(overrides))
    doc = merge(PRESETS["distill"], recipe.training)
    doc = merge(doc, {"data": {"train": manifest["parts"], "test": [manifest["test"]] if manifest["test"] else []},
                      "finetune": {"start": str(out / "student_init")},
                      "run": {"out": str(run_dir), "device": device, "progress": progress}})
    cfg = load_config(None, None, [doc, *overrides])
    return train(cfg)


def _check_student(checkpoint: Path, recipe: Recipe) -> None:
    """A run continues only the student its recipe describes: a checkpoint of a student with
    another fade (an older recipe, or a pack of another run) is refused, not trained on."""
    import torch

    cfg = torch.load(checkpoint, map_location="cpu", weights_only=True)["model_config"]
    have = float(cfg.get("smooth_from", 0.0))
    if have != recipe.smooth_from:
        raise ValueError(f"{checkpoint} trains a student whose messages fade from {have} A, but the recipe "
                         f"says smooth_from {recipe.smooth_from}: continue it with its own recipe, or start "
                         "a new run folder (hipot.distill.travel.data_only keeps the data of a pack)")


def data_only(recipe: Recipe, out: str | Path, device: str = "auto", progress: bool = True) -> dict:
    """Make (or reuse) the teacher-labelled data of `recipe` in OUT/data; returns the manifest."""
    out = Path(out)
    manifest_path = out / MANIFEST
    if manifest_path.exists() and json.loads(manifest_path.read_text()).get("parts") is not None:
        return finished_manifest(out, recipe)
    with Teacher(recipe.teacher, device, recipe.data.workers) as teacher:
        manifest = make_data(recipe, teacher, out, progress)
    print(f"hipot distill: {manifest['labelled']} structures labelled by {recipe.teacher} from "
          f"{manifest['seeds']} seeds -> {out / 'data'}")
    return manifest


def finished_manifest(out: Path, recipe: Recipe) -> dict:
    """The finished data manifest of OUT (written by rank 0), checked against the recipe."""
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest.get("recipe") != jsonable(recipe.data_key()) or manifest.get("parts") is None:
        raise ValueError(f"{out / MANIFEST}: the distillation data are unfinished or of another recipe")
    return manifest
