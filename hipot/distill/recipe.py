"""What a distillation makes and trains on: the data mix (`DistillSet`) and the whole recipe
(`Recipe`: teacher, seed files, held-out test files, data mix, training overrides), read from a
YAML file such as `benchmarks/smooth/distill_recipe.yaml`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DistillSet:
    """The data mix: how many structures of each kind are made per seed."""

    rattled: int = 2
    """Rattled copies per seed."""
    rattle_sigma: tuple[float, float] = (0.02, 0.12)
    """A, the rattle's standard deviation, drawn uniformly per copy."""
    strained: int = 1
    """Strained (and lightly rattled) copies per periodic seed."""
    max_strain: float = 0.04
    """Each component of the random symmetric strain within +-max_strain."""
    substitutions: int = 1
    """Element-substituted copies per periodic seed (WBM-style chemistry), each relaxed by the teacher."""
    substitution_split: float = 0.5
    """Probability that a substitution also shares one element's sites between two new elements."""
    substitution_relax_steps: int = 40
    """FIRE steps (with the cell) of the teacher's relaxation of a substitution; start and end are kept."""
    temperatures: list[float] = field(default_factory=lambda: [300.0, 900.0, 1500.0])
    """K, Langevin MD driven by the teacher; [] for none."""
    md_seeds: int | None = None
    """MD from at most this many structures (evenly spaced over seeds and relaxed substitutions); None: all."""
    md_min_atoms: int = 24
    """MD cells are supercells of at least this many atoms."""
    md_steps: int = 60
    md_every: int = 20
    """A snapshot every md_every steps (the starting frame is not one)."""
    timestep_fs: float = 2.0
    friction_per_fs: float = 0.02
    max_force: float = 50.0
    """eV/A: teacher labels beyond this are dropped as unphysical."""
    batch_size: int = 64
    """Structures per teacher call."""
    workers: int = 1
    """Teacher processes working side by side on the data (each with its own copy of the teacher on
    the same device): the stages are bound by per-structure host work, so a GPU machine with many
    cores makes the data several times faster with several. The data do not depend on it."""
    md_group: int = 128
    """MD runs integrated together in one group (one worker's job; the group's random seed is
    seed + its index)."""
    substitution_part: int = 256
    """Substitutions relaxed per job (and per file kept for resumption)."""
    part_size: int = 2000
    """Structures per labelled file (the unit of resumption)."""
    seed: int = 0


@dataclass
class Recipe:
    """A whole distillation. Paths are relative to the current folder."""

    seeds: list[str] = field(default_factory=list)
    """Seed files: ASE-readable, or JSON with pymatgen structure dicts (matcalc benchmark files)."""
    test: list[str] = field(default_factory=list)
    """Held-out structures (never trained on), labelled by the teacher and scored once at the end
    (RUN/train/test_metrics.json: student against teacher)."""
    teacher: str = "hienet-v3"
    smooth_from: float = 0.0
    """The student's `ModelConfig.smooth_from` (A): where its invariant messages begin to fade (0:
    over the whole range). The data do not depend on it."""
    max_atoms: int = 64
    """Largest seed (and test) structure."""
    limit: int | None = None
    """At most this many seeds (drawn with data.seed)."""
    data: DistillSet = field(default_factory=DistillSet)
    training: dict[str, Any] = field(default_factory=dict)
    """Training config (sections data, loss, optim, schedule, run, ...) merged over PRESETS['distill']."""

    def data_key(self) -> dict[str, Any]:
        """What the labelled data depend on: a rerun with other values must not reuse them."""
        d = dataclasses.asdict(self)
        d.pop("training")
        d.pop("smooth_from")
        for k in ("batch_size", "workers"):   # how fast the data are made, not what they are
            d["data"].pop(k)
        return d

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Recipe":
        doc = dict(doc or {})
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(doc) - known
        if bad:
            raise ValueError(f"unknown recipe key(s) {sorted(bad)}; known: {sorted(known)}")
        data = doc.pop("data", None) or {}
        dkeys = {f.name for f in dataclasses.fields(DistillSet)}
        bad = set(data) - dkeys
        if bad:
            raise ValueError(f"unknown key(s) {sorted(bad)} in the recipe's data section; known: {sorted(dkeys)}")
        if "rattle_sigma" in data:
            data["rattle_sigma"] = tuple(data["rattle_sigma"])
        for k in ("seeds", "test"):
            if isinstance(doc.get(k), str):
                doc[k] = [doc[k]]
        return cls(data=DistillSet(**data), **doc)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})
