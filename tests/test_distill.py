"""`hipot distill`: teacher-labelled data and a smooth student that starts from the teacher."""
from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from hipot import predict
from hipot.checkpoint import ModelFileError, load_model_dir, save_model
from hipot.cli import main
from hipot.pretrained import load_model
from conftest import make_tiny


@pytest.mark.slow
def test_distill_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path / "cache"))
    teacher = make_tiny(species=[11, 14, 17])
    save_model(teacher, tmp_path / "teacher")
    ase.io.write(tmp_path / "seeds.extxyz", [bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64)])
    out = tmp_path / "run"
    assert main(["distill", "--seeds", str(tmp_path / "seeds.extxyz"), "--out", str(out), "--teacher",
                 str(tmp_path / "teacher"), "--device", "cpu", "--md-steps", "4", "--max-steps", "2", "-q",
                 "--set", "run.dtype=float64", "--install-as", "hienet-v3-smooth"]) == 0
    # the labels are the teacher's predictions
    frames = ase.io.read(out / "data.extxyz", ":")
    kinds = {f.info.get("kind", "seed") for f in frames}
    assert {"seed", "rattled", "strained", "md"} <= kinds
    ref = predict(frames, model=teacher, device="cpu", dtype="float64")
    for f, r in zip(frames, ref):
        assert abs(f.info["REF_energy"] - r["energy"]) < 1e-5  # the teacher labels in float32
        np.testing.assert_allclose(f.arrays["REF_forces"], r["forces"], atol=1e-5)
    # the student is smooth, starts from the teacher's weights and is found by name
    init, _ = load_model_dir(out / "student_init")
    assert init.config.smooth_invariant and not teacher.config.smooth_invariant
    for (n, a), b in zip(teacher.state_dict().items(), init.state_dict().values()):
        assert torch.equal(a.float(), b.float()), n
    student = load_model("hienet-v3-smooth", device="cpu")
    assert student.config.smooth_invariant


def test_smooth_name_without_distillation_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path))
    with pytest.raises(ModelFileError, match="hipot distill"):
        load_model("hienet-v3-smooth")
