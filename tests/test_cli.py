"""`hipot predict` end to end on the built-in example, with a small model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.io import read

from hipot import predict
from hipot.checkpoint import save_model
from hipot.cli import main
from conftest import make_tiny

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "structures.extxyz"


def test_predict_cli_round_trip(tmp_path):
    model = make_tiny(species=[1, 8, 11, 12, 14, 17, 29, 78])
    save_model(model, tmp_path / "tiny")
    out = tmp_path / "pred.extxyz"
    assert main(["predict", str(EXAMPLE), "-o", str(out), "--model", str(tmp_path / "tiny"), "--device", "cpu",
                 "--dtype", "float64", "--batch-size", "4", "-q"]) == 0
    frames = read(EXAMPLE, ":")
    got = read(out, ":")
    ref = predict(frames, model=model, device="cpu", dtype="float64")
    assert len(got) == len(frames)
    for a, r, f in zip(got, ref, frames):
        assert a.info["name"] == f.info["name"]
        np.testing.assert_allclose(a.positions, f.positions)
        assert abs(a.get_potential_energy() - r["energy"]) < 1e-8
        np.testing.assert_allclose(a.get_forces(), r["forces"], atol=1e-8)
        np.testing.assert_allclose(a.calc.results["energies"], r["energies"], atol=1e-8)
        if a.pbc.all():
            np.testing.assert_allclose(a.get_stress(), r["stress"], atol=1e-10)
        else:
            assert "stress" not in a.calc.results


def test_predict_cli_unknown_element(tmp_path, capsys):
    save_model(make_tiny(species=[1, 8]), tmp_path / "tiny")
    out = tmp_path / "pred.extxyz"
    code = main(["predict", str(EXAMPLE), "-o", str(out), "--model", str(tmp_path / "tiny"), "--device", "cpu", "-q"])
    assert code == 2
    assert "not supported by this model" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written
