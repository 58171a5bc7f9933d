"""hipot evaluate: metrics, data loaders and the whole --quick pipeline with a tiny model (CPU)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hipot.evaluate.common import subset
from hipot.evaluate.metrics import birch_murnaghan_fit, classification, regression, sign_flips, vrh_moduli

from conftest import SHARED, make_tiny

DATA = SHARED / "data"
needs_data = pytest.mark.skipif(not (DATA / "matcalc_benchmarks").is_dir(), reason="../shared/data not found")


def test_birch_murnaghan_recovers_parameters():
    v0, b0, b1, e0 = 17.0, 0.5, 4.3, -3.0
    v = np.linspace(0.94, 1.06, 11) * v0
    eta = (v0 / v) ** (2 / 3)
    e = e0 + 9 * v0 * b0 / 16 * ((eta - 1) ** 3 * b1 + (eta - 1) ** 2 * (6 - 4 * eta))
    assert np.allclose(birch_murnaghan_fit(v, e), (v0, b0, b1, e0), rtol=1e-6)


def test_vrh_of_isotropic_solid():
    k, g = 100.0, 40.0
    c = np.zeros((6, 6))
    c[:3, :3] = k - 2 * g / 3
    c[np.arange(3), np.arange(3)] = k + 4 * g / 3
    c[np.arange(3, 6), np.arange(3, 6)] = g
    assert np.allclose(vrh_moduli(c), (k, g))


def test_scores():
    r = regression([1.0, 2.0, np.nan], [1.5, 2.0, 3.0])
    assert r["n"] == 2 and np.isclose(r["mae"], 0.25)
    c = classification([-1, -1, 1, 1], [-1, 1, -1, 1])   # tp, fp, fn, tn = 1 each
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (1, 1, 1, 1)
    assert np.isclose(c["f1"], 0.5) and np.isclose(c["daf"], 1.0)
    assert sign_flips([1, 0.001, -1, -2, 3], tol=0.01) == 2


def test_subsets_are_prefixes():
    assert subset(100, 10) == subset(100, 30)[:10] and len(set(subset(100, None))) == 100


@needs_data
def test_wbm_labels_reproduced_from_element_refs():
    from hipot.evaluate.data import element_refs, load_wbm
    from hipot.evaluate.wbm import formation_energy

    entries, mu = load_wbm(DATA), element_refs(DATA)
    assert len(entries) == 972
    err = [formation_energy(e.energy, e, mu, add_correction=True) - e.e_form for e in entries]
    assert np.max(np.abs(err)) < 1e-6


def test_missing_peer_is_skipped(monkeypatch):
    from hipot.evaluate.models import PeerUnavailable, load_peer

    monkeypatch.setitem(sys.modules, "sevenn", None)   # makes `import sevenn` raise ImportError
    with pytest.raises(PeerUnavailable, match="sevenn"):
        load_peer("sevennet-0", "cpu")


@pytest.mark.slow
@needs_data
def test_quick_pipeline_with_tiny_model(tmp_path, monkeypatch):
    """The whole command on a tiny random model, run as on a bare GPU machine (no pymatgen, no
    phonopy): every benchmark runs and writes raw JSON; `--report-only` where they are installed
    then fills in hull distances, RMSDs and phonon frequencies and writes the report."""
    import torch

    from hipot.checkpoint import save_model
    from hipot.cli import main

    model_dir = tmp_path / "tiny"
    save_model(make_tiny(dtype=torch.float32, species=list(range(1, 90)), cutoff=4.0), model_dir)
    out, raw = tmp_path / "ACCURACY.md", tmp_path / "raw"
    args = ["evaluate", "--quick", "--model", str(model_dir), "--device", "cpu", "--peers", "none", "--data", str(DATA),
            "--limit", "wbm=2,dcdft=2,elastic=1,diatomics=2,phonons=2", "--out", str(out), "--raw", str(raw)]
    with monkeypatch.context() as m:
        for name in [k for k in sys.modules if k.split(".")[0] in ("pymatgen", "phonopy")] + ["pymatgen", "phonopy"]:
            m.setitem(sys.modules, name, None)   # `import pymatgen...` now raises ImportError
        assert main(args) == 0

    def load(bench: str) -> dict:
        files = list(raw.glob(f"*/{bench}.json"))
        assert files, bench
        return json.loads(files[0].read_text())

    for bench in ("wbm", "dcdft", "elastic", "diatomics", "phonons"):
        data = load(bench)
        assert "error" not in data, data.get("traceback")
        assert data["items"], bench
    assert all(it["rmsd"] is None and it["e_hull_dft"] is None for it in load("wbm")["items"])
    assert "freq_model" not in load("phonons")["items"][0]

    assert main(["evaluate", "--report-only", str(raw), "--out", str(out)]) == 0
    assert all(it["rmsd"] is not None and it["e_hull_dft"] is not None for it in load("wbm")["items"])
    assert "freq_model" in load("phonons")["items"][0]
    text = out.read_text()
    for heading in ("## 1. WBM", "## 2. dcdft", "## 3. MP elasticity", "## 4. Homonuclear diatomics", "## 5. Phonons"):
        assert heading in text
    assert (tmp_path / "accuracy" / "quick-wbm_formation_energy.png").exists()
    assert main(["evaluate", "--report-only", str(raw), "--out", str(out)]) == 0   # idempotent
    assert out.read_text() == text
