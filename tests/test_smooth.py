"""The smooth HIENet option: energy and forces continuous where a neighbour crosses the cutoff."""
from __future__ import annotations

import numpy as np
from ase import Atoms

from hipot import predict
from conftest import make_tiny


def _sweep(model, distances):
    frames = [Atoms("NaCl", positions=[[0, 0, 0], [d, 0, 0]]) for d in distances]
    res = predict(frames, model=model, device="cpu", dtype="float64")
    return np.array([r["energy"] for r in res]), np.array([r["forces"][1, 0] for r in res])


def test_pair_through_cutoff_is_continuous_only_when_smooth():
    rc = 4.0
    eps = 1e-9
    d = [rc - eps, rc + eps]
    e_smooth, f_smooth = _sweep(make_tiny(smooth_invariant=True, species=[11, 17]), d)
    e_plain, f_plain = _sweep(make_tiny(smooth_invariant=False, species=[11, 17]), d)
    # float64 round-off; the envelope vanishes at the cutoff with its first p derivatives
    assert abs(e_smooth[0] - e_smooth[1]) < 1e-12
    assert abs(f_smooth[0] - f_smooth[1]) < 1e-12
    assert abs(f_smooth[1]) == 0.0  # beyond the cutoff nothing is felt
    # the official (V3-like) layer jumps: the test above can fail
    assert abs(e_plain[0] - e_plain[1]) > 1e-4


def test_smooth_curve_has_no_kinks():
    """Energy along a pair sweep: second differences stay small everywhere, also at the cutoff."""
    d = np.linspace(3.0, 4.5, 301)
    e, f = _sweep(make_tiny(smooth_invariant=True, species=[11, 17]), d)
    h = d[1] - d[0]
    # force = -dE/dd of the second atom; compare with central differences of the energy
    fd = -(e[2:] - e[:-2]) / (2 * h)
    assert np.max(np.abs(fd - f[1:-1])) < 1e-3 * max(1.0, np.max(np.abs(f)))
    assert np.all(e[d > 4.0] == e[-1])  # flat beyond the cutoff


def test_smooth_model_hint_is_the_readme_command(tmp_path, monkeypatch):
    """Asking for hienet-v3-smooth before it is made names the README's command and sends to
    benchmarks/smooth/README.md for its cost, instead of a run time of its own (issue 26, item 8)."""
    import re
    from pathlib import Path

    import pytest

    from hipot.checkpoint import ModelFileError
    from hipot.pretrained import load_model

    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path))
    with pytest.raises(ModelFileError) as e:
        load_model("hienet-v3-smooth", device="cpu")
    msg = str(e.value)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    command = re.search(r"^hipot distill .*--install-as hienet-v3-smooth$", readme, re.M).group(0)
    assert command in msg and "benchmarks/smooth/README.md" in msg
    assert not re.search(r"\d+ (minutes|min|h)\b", msg)
