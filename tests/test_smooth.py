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


def _same_weights(**kw):
    """Tiny models of one set of weights: the fade options change no parameter."""
    import torch

    base = make_tiny(species=[11, 17])
    other = make_tiny(species=[11, 17], **kw)
    other.load_state_dict(base.state_dict())
    return base, other.to(torch.float64).eval()


def test_fade_from_r_on_leaves_shorter_bonds_alone_and_is_continuous():
    """smooth_from = r_on: the model equals the plain one with the same weights while every
    neighbour is closer than r_on, differs beyond it, is continuous at the cutoff, and its forces
    are -dE/dr inside the fading window (where the fade's own derivative acts)."""
    rc, r_on = 4.0, 3.0
    plain, faded = _same_weights(smooth_invariant=True, smooth_from=r_on)
    inside = np.linspace(1.8, r_on - 1e-3, 7)
    e_p, f_p = _sweep(plain, inside)
    e_f, f_f = _sweep(faded, inside)
    np.testing.assert_allclose(e_f, e_p, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f_f, f_p, rtol=0, atol=1e-12)
    window = np.linspace(r_on + 0.05, rc - 0.05, 9)
    assert np.max(np.abs(_sweep(faded, window)[0] - _sweep(plain, window)[0])) > 1e-4   # the fade acts
    e, f = _sweep(faded, [rc - 1e-9, rc + 1e-9])
    assert abs(e[0] - e[1]) < 1e-12 and abs(f[0] - f[1]) < 1e-12
    h = 1e-5
    for d in window:
        (e_lo, e_hi), _ = _sweep(faded, [d - h, d + h])
        _, (f_d,) = _sweep(faded, [d])
        assert abs(-(e_hi - e_lo) / (2 * h) - f_d) < 1e-6 * max(1.0, abs(f_d)), d


def test_fade_over_the_whole_range_is_the_default():
    """smooth_from = 0 is the envelope f(r / r_c), as models made before the option had it."""
    d = np.linspace(1.5, 4.5, 13)
    _, a = _same_weights(smooth_invariant=True)
    _, b = _same_weights(smooth_invariant=True, smooth_from=0.0)
    np.testing.assert_array_equal(_sweep(a, d)[0], _sweep(b, d)[0])
    import pytest

    from conftest import tiny_config

    with pytest.raises(ValueError, match="smooth_from"):
        tiny_config(smooth_invariant=True, smooth_from=4.0)   # at the cutoff: nothing left to fade over
    with pytest.raises(ValueError, match="needs smooth_invariant"):
        tiny_config(smooth_from=3.0)


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
