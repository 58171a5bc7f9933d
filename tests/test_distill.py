"""`hipot distill`: teacher-labelled data in resumable stages and a smooth student that starts
from the teacher, with a tiny teacher for a few steps on the CPU."""
from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from hipot import predict
from hipot.checkpoint import ModelFileError, load_model_dir, save_model
from hipot.cli import main
from hipot.distill import Recipe
from hipot.distill.perturb import substituted, supercell
from hipot.pretrained import load_model
from conftest import SHARED, make_tiny

REPO = Path(__file__).resolve().parents[1]


def _setup(tmp_path, monkeypatch) -> Path:
    """A tiny teacher, two seeds, two held-out structures and a small recipe naming them."""
    import yaml

    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path / "cache"))
    save_model(make_tiny(species=[1, 6, 8, 11, 14, 17, 29]), tmp_path / "teacher")
    ase.io.write(tmp_path / "seeds.extxyz", [bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64)])
    ase.io.write(tmp_path / "held_out.extxyz", [bulk("Cu", "fcc", a=3.6), bulk("NaCl", "rocksalt", a=5.5) * (1, 1, 2)])
    recipe = {"teacher": str(tmp_path / "teacher"), "seeds": [str(tmp_path / "seeds.extxyz")],
              "test": [str(tmp_path / "held_out.extxyz")],
              "data": {"substitution_relax_steps": 3, "temperatures": [600], "md_steps": 4, "md_every": 2,
                       "md_min_atoms": 8, "part_size": 10},
              "training": {"data": {"batch_size": 4}, "run": {"dtype": "float64", "checkpoint_every": 1}}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "recipe.yaml"


def _args(recipe, out, *more) -> list[str]:
    return ["distill", "--config", str(recipe), "--out", str(out), "--device", "cpu", "-q", *more]


@pytest.mark.slow
def test_distill_end_to_end(tmp_path, monkeypatch):
    recipe = _setup(tmp_path, monkeypatch)
    out = tmp_path / "run"
    assert main(_args(recipe, out, "--epochs", "1", "--install-as", "hienet-v3-smooth")) == 0
    teacher, _ = load_model_dir(tmp_path / "teacher")
    # every kind of structure of the data mix, labelled with the teacher's predictions
    frames = [f for p in sorted((out / "data").glob("part-*.extxyz")) for f in ase.io.read(p, ":")]
    kinds = {f.info.get("kind", "seed") for f in frames}
    assert {"seed", "rattled", "strained", "substituted", "substituted-relaxed", "md"} <= kinds
    seeds = ase.io.read(tmp_path / "seeds.extxyz", ":")
    for f in frames:   # a substitution has other elements than its seed
        if f.info.get("kind") == "substituted":
            assert set(f.numbers) != set(seeds[int(f.info["source"].split(":")[1])].numbers)
    assert len({p.name for p in (out / "data").glob("part-*.extxyz")}) > 1   # labels in parts
    ref = predict(frames, model=teacher, device="cpu", dtype="float64")
    for f, r in zip(frames, ref):
        assert abs(f.info["REF_energy"] - r["energy"]) < 1e-4  # the teacher labels in float32
        np.testing.assert_allclose(f.arrays["REF_forces"], r["forces"], atol=1e-4)
    # the held-out set is labelled too, never trained on, and scored at the end
    assert len(ase.io.read(out / "data" / "test.extxyz", ":")) == 2
    assert (out / "train" / "test_metrics.json").exists()
    # the student is smooth, starts from the teacher's weights and is found by name
    init, _ = load_model_dir(out / "student_init")
    assert init.config.smooth_invariant and not teacher.config.smooth_invariant
    for (n, a), b in zip(teacher.state_dict().items(), init.state_dict().values()):
        assert torch.equal(a.float(), b.float()), n
    student = load_model("hienet-v3-smooth", device="cpu")
    assert student.config.smooth_invariant


def test_distill_resumes_in_pieces(tmp_path, monkeypatch):
    """A run stopped after its first training step goes on with the same command: the data are
    not made again, training continues from its checkpoint; another recipe on the same folder is
    refused."""
    import yaml

    recipe = _setup(tmp_path, monkeypatch)
    out = tmp_path / "run"
    assert main(_args(recipe, out, "--max-steps", "1")) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "data").iterdir()}
    assert main(_args(recipe, out, "--max-steps", "3")) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "data").iterdir()} == stamps
    ck = torch.load(out / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["global_step"] == 3
    assert yaml.safe_load((out / "train" / "config.yaml").read_text())["finetune"]["start"] == str(out / "student_init")
    with pytest.raises(ValueError, match="another recipe"):
        main(_args(recipe, out, "--seed", "5", "--max-steps", "4"))


def test_substitution_changes_elements_and_volume():
    rng = np.random.default_rng(0)
    a = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    pool = [3, 9, 11, 17, 19, 35, 55]
    seen = set()
    for _ in range(20):
        b = substituted(a, pool, rng, split_probability=1.0)
        assert set(b.numbers) <= set(pool) and set(b.numbers) != {11, 17}
        assert 3 <= len(set(b.numbers)) <= 3 and b.info["kind"] == "substituted"   # split: a ternary
        assert np.allclose(b.get_scaled_positions(), a.get_scaled_positions())
        seen.add(round(b.get_volume() / a.get_volume(), 6))
    assert len(seen) > 1   # the cell follows the new elements' sizes
    assert len(supercell(bulk("Si"), 24)) >= 24


def test_recipe_of_the_repository_reads():
    recipe = Recipe.load(REPO / "benchmarks" / "smooth" / "distill_recipe.yaml")
    assert recipe.teacher == "hienet-v3" and recipe.data.substitutions == 1 and recipe.test
    if (SHARED / "data").is_dir():
        for p in recipe.seeds + recipe.test:
            assert (REPO / p).exists(), p
    with pytest.raises(ValueError, match="unknown"):
        Recipe.from_dict({"data": {"rattle": 3}})


def test_smooth_name_without_distillation_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path))
    with pytest.raises(ModelFileError, match="hipot distill"):
        load_model("hienet-v3-smooth")
