"""Distillation of a teacher into a smooth HIENet (`hipot distill`).

The student (the teacher's weights with `ModelConfig.smooth_invariant=True`, energy continuous at
the cutoff) is trained on what the teacher predicts over a broad set of structures. The data path,
one module each: seed files (`seeds`) -> copies made without a model: rattled, strained,
element-substituted (`perturb`) -> structures the teacher leads to: relaxations of the
substitutions (`sampling`) and snapshots of Langevin MD of all MD cells at once (`md`) ->
teacher labels written in parts (`label`) -> the smooth starting model (`student`) -> training
with the `distill` preset (`run`). What is made and how much: `recipe` (a YAML file, e.g.
`benchmarks/smooth/distill_recipe.yaml`). A run split across machines travels as a pack of
bounded files (`travel`)."""
from .recipe import DistillSet, Recipe
from .run import distill, make_data
from .seeds import read_seeds
from .student import smooth_student

__all__ = ["DistillSet", "Recipe", "distill", "make_data", "read_seeds", "smooth_student"]
