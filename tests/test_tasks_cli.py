"""The task verbs end to end: every command on a bundled example (EMT as a fast stand-in model),
torchrun split + merge of predict and relax (2 gloo processes), restart after an interruption."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule

from conftest import make_tiny, rattled
from hipot import predict
from hipot.checkpoint import save_model
from hipot.cli import main
from hipot.evaluator import Evaluator
from hipot.tasks import relax_runs as relax_module
from hipot.tasks.relax import relax

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    model = make_tiny(species=[1, 6, 8, 14, 29])
    save_model(model, d / "tiny")
    frames = [rattled(bulk("Si", "diamond", a=5.5), 0.1, seed=s) for s in range(3)]
    frames += [rattled(bulk("Cu", "fcc", a=3.7) * (2, 1, 1), 0.1, seed=4), molecule("CH4")]
    for k, a in enumerate(frames):
        a.info["name"] = f"s{k}"
    ase.io.write(d / "in.extxyz", frames)
    return d, model, frames


def _keys(path) -> set[str]:
    return set(json.loads(Path(path).read_text()))


@pytest.mark.slow
def test_verbs_on_bundled_examples(tmp_path, capsys):
    os.chdir(tmp_path)
    emt = ["--model", "ase:emt", "-q"]
    assert main(["relax", "example:Cu", "-o", "cu.extxyz", "--json", "r.json", *emt]) == 0
    (s,) = json.loads(Path("r.json").read_text())["structures"]
    assert {"energy", "fmax", "steps", "converged"} <= set(s) and s["converged"]
    assert ase.io.read("cu.extxyz").info["relax_converged"]

    assert main(["eos", "example:Cu", "--json", "e.json", "--plot", "e.png", *emt]) == 0
    assert {"v0", "b0", "b0_prime", "e0", "volumes", "energies"} <= _keys("e.json") and Path("e.png").stat().st_size

    assert main(["elastic", "example:Cu", "--json", "el.json", *emt]) == 0
    el = json.loads(Path("el.json").read_text())
    assert np.array(el["c"]).shape == (6, 6) and 120 < el["k_vrh"] < 150

    assert main(["phonons", "example:Cu", "--supercell", "3", "3", "3", "--json", "p.json", *emt]) == 0
    p = json.loads(Path("p.json").read_text())
    assert p["has_imaginary"] is False and Path("phonons.png").stat().st_size and Path("thermal.csv").is_file()

    assert main(["md", "example:Cu", "--repeat", "2", "2", "2", "--steps", "20", "--json", "m.json", *emt]) == 0
    m = json.loads(Path("m.json").read_text())
    assert m["steps"] == 20 and m["etot_drift"] is not None and Path("md.log").is_file()

    assert main(["screen", "--elements", "Cu", "Au", "--max-atoms", "2", "--out", "sc", "--json", "s.json", *emt]) == 0
    sc = json.loads(Path("s.json").read_text())
    assert sc["n_candidates"] == 4 and {h["prototype"] for h in sc["hull"]} == {"A1", "L1_0"}
    assert Path("sc/hull.png").stat().st_size and Path("sc/screen.csv").is_file()
    assert not list(Path("sc").glob(".*parts"))  # partial results removed once merged

    # Bad input: one line, exit status 2, nothing written.
    capsys.readouterr()
    assert main(["eos", "example:H2O", "--json", "bad.json", *emt]) == 2
    assert "periodic in all three directions" in capsys.readouterr().err and not Path("bad.json").exists()
    assert main(["relax", "nothere.cif", "-o", "x.extxyz", *emt]) == 2
    assert not Path("x.extxyz").exists()


def _torchrun(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hipot", *args]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_torchrun_predict_split_and_merge(tiny_dir):
    d, model, frames = tiny_dir
    _torchrun(["predict", "in.extxyz", "-o", "tr.extxyz", "--model", "tiny", "--device", "cpu", "--dtype", "float64",
               "--batch-size", "2", "-q"], d)
    got = ase.io.read(d / "tr.extxyz", ":")
    ref = predict(frames, model=model, device="cpu", dtype="float64")
    assert [a.info["name"] for a in got] == [f"s{k}" for k in range(5)]  # input order
    for a, r in zip(got, ref):
        assert abs(a.get_potential_energy() - r["energy"]) < 1e-7
        np.testing.assert_allclose(a.get_forces(), r["forces"], atol=1e-7)  # extxyz precision
    assert not list(d.glob(".tr.extxyz.parts"))


@pytest.mark.slow
def test_torchrun_relax_split_and_merge(tiny_dir):
    d, model, frames = tiny_dir
    _torchrun(["relax", "in.extxyz", "-o", "rel.extxyz", "--model", "tiny", "--device", "cpu", "--dtype", "float64",
               "--fmax", "1e-4", "--steps", "8", "--json", "rel.json", "-q"], d)
    got = ase.io.read(d / "rel.extxyz", ":")
    ref = relax(frames, model, device="cpu", dtype="float64", fmax=1e-4, steps=8)
    assert [a.info["name"] for a in got] == [f"s{k}" for k in range(5)]
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a.positions, r.atoms.positions, atol=1e-7)
        assert abs(a.get_potential_energy() - r.energy) < 1e-7 and a.info["relax_steps"] == r.steps
    assert [s["index"] for s in json.loads((d / "rel.json").read_text())["structures"]] == list(range(5))


def _interrupt_after(monkeypatch, owner, attr: str, calls: int) -> None:
    """Make owner.attr raise KeyboardInterrupt on its call number `calls + 1` (a kill mid-run)."""
    module = owner
    original = getattr(module, attr)
    count = {"n": 0}

    def wrapped(*a, **kw):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt
        return original(*a, **kw)

    monkeypatch.setattr(module, attr, wrapped)


def _tamper(parts: Path, sentinel: float) -> int:
    """Mark the first finished record with a sentinel energy and append a torn line (a kill mid-write);
    returns that record's index."""
    (part,) = parts.glob("rank*.jsonl")
    lines = part.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["d"]["energy"] = sentinel
    lines[0] = json.dumps(rec)
    part.write_text("\n".join(lines) + "\n" + '{"i": 4, "d": {"energy": 1.0, "for')
    return rec["i"]


def test_predict_resumes_after_interruption(tiny_dir, monkeypatch):
    d, model, frames = tiny_dir
    out = d / "res.extxyz"
    args = ["predict", str(d / "in.extxyz"), "-o", str(out), "--model", str(d / "tiny"), "--device", "cpu",
            "--dtype", "float64", "--batch-size", "2", "-q"]
    with monkeypatch.context() as mp:
        _interrupt_after(mp, Evaluator, "evaluate", 1)
        assert main(args) == 130  # Ctrl-C: one line, exit status 130, the finished part kept
    assert not out.exists()
    done = _tamper(d / ".res.extxyz.parts", 12345.0)
    assert main(args) == 0
    got = ase.io.read(out, ":")
    ref = predict(frames, model=model, device="cpu", dtype="float64")
    assert got[done].get_potential_energy() == 12345.0  # taken from the partial file, not recomputed
    for k, (a, r) in enumerate(zip(got, ref)):
        if k != done:
            assert abs(a.get_potential_energy() - r["energy"]) < 1e-7
    assert not (d / ".res.extxyz.parts").exists()


@pytest.mark.slow
def test_relax_resumes_after_interruption(tiny_dir, monkeypatch):
    d, model, frames = tiny_dir
    out = d / "rres.extxyz"
    def command(steps: int) -> list[str]:
        return ["relax", str(d / "in.extxyz"), "-o", str(out), "--model", str(d / "tiny"), "--device", "cpu",
                "--dtype", "float64", "--fmax", "1e-4", "--steps", str(steps), "--batch-size", "2", "-q"]

    args = command(5)
    with monkeypatch.context() as mp:
        _interrupt_after(mp, relax_module, "to_record", 2)
        assert main(args) == 130  # Ctrl-C: one line, exit status 130, the finished part kept
    done = _tamper(d / ".rres.extxyz.parts", -999.0)
    assert main(args) == 0
    got = ase.io.read(out, ":")
    ref = relax(frames, model, device="cpu", dtype="float64", fmax=1e-4, steps=5)
    assert got[done].get_potential_energy() == -999.0
    for k, (a, r) in enumerate(zip(got, ref)):
        if k != done:
            assert abs(a.get_potential_energy() - r.energy) < 1e-7
    # A different command (other settings) never reuses these partial results.
    with monkeypatch.context() as mp:
        _interrupt_after(mp, relax_module, "to_record", 1)
        assert main(command(6)) == 130
    assert main(args) == 0  # the original command again: starts over, not from the --steps 6 records
    got2 = ase.io.read(out, ":")
    for a, r in zip(got2, ref):
        assert abs(a.get_potential_energy() - r.energy) < 1e-7


def test_dispersion_on_the_verbs(tiny_dir, tmp_path):
    """--dispersion d3bj: the energies include D3, outputs name it, and it is part of the run key."""
    pytest.importorskip("dftd3")
    from hipot import HIPotCalculator

    d, model, frames = tiny_dir
    os.chdir(tmp_path)
    common = ["--model", str(d / "tiny"), "--device", "cpu", "--dtype", "float64", "-q"]
    assert main(["predict", str(d / "in.extxyz"), "-o", "p.extxyz", "--dispersion", "d3bj", *common]) == 0
    calc = HIPotCalculator(model, device="cpu", dtype="float64", dispersion="d3bj")
    for a, f in zip(ase.io.read("p.extxyz", ":"), frames):
        assert a.info["model"].endswith("+D3(BJ)")
        b = f.copy()
        b.calc = calc
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-7
    assert main(["relax", str(d / "in.extxyz"), "--index", "0", "-o", "r.extxyz", "--steps", "2", "--json", "r.json",
                 "--dispersion", "d3bj", *common]) == 0
    assert json.loads(Path("r.json").read_text())["model"].endswith("+D3(BJ)")
    assert main(["eos", "example:Cu", "--model", "ase:emt", "--dispersion", "d3bj", "-q"]) == 2


def test_relax_symmetry_on_the_example_file(tmp_path, capsys, monkeypatch):
    """`hipot relax examples/structures.extxyz --symmetry` (issue 26, item 1): the molecule without
    a cell (frame 5) relaxes without the symmetry constraint and the command says so; every frame
    has a result. A structure whose symmetry spglib cannot analyse is a failed result with the
    reason, not a crash; an error before anything finished leaves no empty trajectory files and
    no hidden folder of partial results."""
    example = ROOT / "examples" / "structures.extxyz"
    frames = ase.io.read(example, ":")
    species = sorted({int(z) for a in frames for z in a.numbers})
    save_model(make_tiny(species=species), tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    common = ["--model", str(tmp_path / "tiny"), "--device", "cpu", "--steps", "2", "--symmetry"]
    assert main(["relax", str(example), "-o", "out.extxyz", "--trajectory", "t.traj", "--json", "r.json", *common]) == 0
    err = capsys.readouterr().err
    assert f"1 structure(s) without a 3D cell relax without the symmetry constraint ({example} frame 5)" in err
    out = ase.io.read("out.extxyz", ":")
    assert len(out) == len(frames) and not any("hipot_error" in a.info for a in out)
    assert all(Path(f"t.{k}.traj").stat().st_size > 100 for k in range(len(frames)))

    from ase.constraints import FixSymmetry

    calls = []

    def refuse(self, atoms, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("too close distance between atoms")
        return original(self, atoms, *a, **kw)

    original = FixSymmetry.__init__
    monkeypatch.setattr(FixSymmetry, "__init__", refuse)
    assert main(["relax", str(example), "-o", "out2.extxyz", "--trajectory", "u.traj", *common, "-q"]) == 0
    failed = [a.info.get("hipot_error") for a in ase.io.read("out2.extxyz", ":")]
    assert failed[1] and "symmetry analysis failed (spglib: too close distance" in failed[1]
    assert not any(failed[:1] + failed[2:]) and not Path("u.1.traj").exists()

    def crash(*a, **kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Evaluator, "evaluate", crash)  # after the relaxations and their trajectories start
    with pytest.raises(RuntimeError):
        main(["relax", str(example), "-o", "out3.extxyz", "--trajectory", "v.traj", *common, "-q"])
    assert not list(Path(".").glob("v.*")) and not list(Path(".").glob(".out3*"))


def test_outputs_are_never_overwritten_silently(tmp_path, capsys, monkeypatch):
    """A later run in the same folder writes eos-2.png (a default name, numbered, and said so),
    refuses a name that was given (before any work) unless --overwrite, and keeps md's trajectory
    and log together (md-2.traj, md-2.log) unless it continues them with --restart (issue 26, item 6)."""
    monkeypatch.chdir(tmp_path)
    eos = ["eos", "example:Cu", "--model", "ase:emt", "--no-relax", "--points", "5"]
    assert main(eos) == 0 and Path("eos.png").is_file()
    first = Path("eos.png").read_bytes()
    capsys.readouterr()
    assert main(eos) == 0
    assert "eos.png exist(s) from an earlier run: writing eos-2.png" in capsys.readouterr().err
    assert Path("eos-2.png").is_file() and Path("eos.png").read_bytes() == first
    assert main(eos + ["--plot", "eos.png", "-q"]) == 2
    assert "eos.png exists (--plot)" in capsys.readouterr().err
    assert main(eos + ["--json", "e.json", "-q"]) == 0 and main(eos + ["--json", "e.json", "-q"]) == 2
    assert "e.json exists (--json)" in capsys.readouterr().err
    Path("eos.png").write_text("an earlier plot")
    assert main(eos + ["--plot", "eos.png", "--overwrite", "-q"]) == 0 and Path("eos.png").read_bytes() == first
    assert sorted(p.name for p in Path(".").glob("eos*.png")) == ["eos-2.png", "eos-3.png", "eos.png"]  # -3: e.json's run

    md = ["md", "example:Cu", "--repeat", "2", "1", "1", "--model", "ase:emt", "--steps", "2", "-q"]
    assert main(md) == 0 and main(md) == 0
    assert all(Path(p).is_file() for p in ("md.traj", "md.log", "md-2.traj", "md-2.log"))
    assert main(md + ["--restart", "--steps", "4"]) == 0 and not Path("md-3.traj").exists()
    assert main(md + ["--trajectory", "md.traj"]) == 2
    assert "md.traj exists (--trajectory)" in capsys.readouterr().err
