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
            "--benchmarks", "wbm,dcdft,elastic,diatomics,phonons",
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
    assert all(it["energy_steps_mev"] for it in load("dcdft")["items"])   # the stress checks the E(V) curve


@pytest.mark.slow
@needs_data
def test_quick_vibration_benchmarks_with_tiny_model(tmp_path):
    """Heat capacity and thermal conductivity end to end with --quick: raw results, the report's
    sections with the published HIENet numbers on the same compounds, the log-log kappa plot."""
    pytest.importorskip("phono3py")
    import torch

    from hipot.checkpoint import save_model
    from hipot.cli import main

    model_dir = tmp_path / "tiny"
    save_model(make_tiny(dtype=torch.float32, species=list(range(1, 90)), cutoff=4.0), model_dir)
    out = tmp_path / "report" / "ACCURACY.md"
    assert main(["evaluate", "--quick", "--model", str(model_dir), "--device", "cpu", "--peers", "none", "--data",
                 str(DATA), "--benchmarks", "heat_capacity,kappa", "--limit", "heat_capacity=1,kappa=1",
                 "--out", str(out)]) == 0
    raw = out.parent / "accuracy" / "raw-quick"
    (folder,) = [p for p in raw.iterdir() if p.is_dir()]
    (kappa,) = json.loads((folder / "kappa.json").read_text())["items"]
    assert kappa["kappa_dft"] > 0 and ("kappa_300" in kappa) and kappa["n_fc3_displacements"] > 0
    assert kappa["protocol"] == "quick" and 0 <= kappa["kappa_srme"] <= 2   # scored against the DFT modes
    (cv,) = json.loads((folder / "heat_capacity.json").read_text())["items"]
    assert cv["cv_ref_per_atom"] > 0 and "cv_per_atom" in cv
    text = out.read_text()
    assert "## 6. Heat capacity" in text and "## 7. Thermal conductivity" in text
    assert "HIENet (published)" in text and "κ_SRME" in text and "κ_SRME HIENet (published)" in text
    assert (out.parent / "accuracy" / "quick-kappa.png").exists()
    assert not (folder / "kappa.parts").exists()   # per-compound partial results removed once done


def test_quick_run_never_writes_over_a_full_report(tmp_path, monkeypatch):
    from hipot.cli import main
    from hipot.cli.evaluate import QUICK_OUT, refuse_overwrite

    full = tmp_path / "ACCURACY.md"
    full.write_text("# Accuracy against DFT: hienet-v3\n\nGenerated by `hipot evaluate --device cuda`\n")
    with pytest.raises(SystemExit, match="full run"):
        main(["evaluate", "--quick", "--out", str(full), "--device", "cpu", "--peers", "none"])
    refuse_overwrite(full, tmp_path / "raw", quick=True, force=True)       # --force lets it
    refuse_overwrite(full, tmp_path / "raw", quick=False, force=False)     # a full run replaces a full run
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "run.json").write_text('{"quick": false}')
    with pytest.raises(SystemExit, match="raw results of a full run"):
        refuse_overwrite(tmp_path / "new.md", tmp_path / "raw", quick=True, force=False)
    assert not QUICK_OUT.startswith("benchmarks/")


def test_missing_numbers_are_null_and_read_as_missing(tmp_path):
    """Raw results are strict JSON (NaN written as null); the summaries treat null as missing."""
    from hipot.evaluate import dcdft, elastic
    from hipot.evaluate.runner import write_json

    items = [{"element": "Al", "v0": float("nan"), "v0_ref": 16.5, "b0": float("nan"), "b0_ref": 78.0,
              "energy_steps_mev": [0.0, 12.0, float("nan")], "b0_stress": float("nan")},
             {"element": "Cu", "v0": 12.0, "v0_ref": 11.95, "b0": 140.0, "b0_ref": 141.0,
              "energy_steps_mev": [0.1, 0.2], "b0_stress": 139.0}]
    write_json(tmp_path / "d.json", {"items": items})
    raw = json.loads((tmp_path / "d.json").read_text())
    assert raw["items"][0]["v0"] is None
    sm = dcdft.summarize(raw)
    assert sm["failed_fits"] == 1 and sm["curves_with_steps"] == 1 and sm["step_max_mev"] == 12.0
    assert np.isclose(sm["v0_rel_mae_pct"], 100 * 0.05 / 11.95)
    el = elastic.summarize({"items": [{"mp_id": "x", "k_vrh": None, "g_vrh": None, "k_vrh_ref": 1, "g_vrh_ref": 1}]})
    assert el["failed"] == 1 and el["cutoff_warnings"] is None
