"""Every documented command on bad input and interruptions: one line on stderr, exit status 2
(130 for Ctrl-C), the right frame named, nothing computed before the input is checked, nothing
half-written; and the options that go on past bad input (--skip-bad)."""
from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from conftest import make_tiny, rattled
from hipot import __version__, predict
from hipot.checkpoint import ModelFileError, load_model_dir, save_model
from hipot.cli import main
from hipot.evaluator import Evaluator
from hipot.tasks.common import find_bad, read_labelled

SPECIES = [1, 6, 8, 14, 29]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model folder and an 8-frame file whose frames 3 (unknown element) and 6 (two atoms
    0.05 A apart) the model cannot take."""
    d = tmp_path_factory.mktemp("cli")
    model = make_tiny(species=SPECIES)
    save_model(model, d / "tiny")
    frames = [rattled(bulk("Si", "diamond", a=5.5), 0.05, seed=s) for s in range(8)]
    frames[3] = bulk("Au", "fcc", a=4.1)
    frames[6] = Atoms("CH", positions=[[0, 0, 0], [0.05, 0, 0]])
    for k, a in enumerate(frames):
        a.info["name"] = f"s{k}"
    ase.io.write(d / "in.extxyz", frames)
    return d, model, frames


def _no_model_load(monkeypatch):
    """Make loading a model fail loudly: the checks must come first."""
    def refuse(*a, **kw):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(Evaluator, "__init__", refuse)


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"hipot {__version__}"


def test_predict_names_every_bad_frame_by_its_index_before_loading(files, tmp_path, monkeypatch, capsys):
    d, _, _ = files
    _no_model_load(monkeypatch)
    out = tmp_path / "p.extxyz"
    base = ["predict", str(d / "in.extxyz"), "-o", str(out), "--model", str(d / "tiny"), "--device", "cpu", "-q"]
    assert main(base) == 2
    err = _err(capsys)
    assert "2 of 8 structure(s)" in err and "--skip-bad" in err
    assert f"{d / 'in.extxyz'} frame 3: element(s) Au not supported" in err
    assert f"{d / 'in.extxyz'} frame 6: atoms 0 and 1 overlap (0.0500 A apart" in err
    # the index is the frame's place in the file, whatever --index selects
    assert main(base + ["--index", "5:"]) == 2
    err = _err(capsys)
    assert "1 of 3 structure(s)" in err and "frame 6:" in err and "frame 1:" not in err
    assert not out.exists() and not list(tmp_path.glob(".*parts"))


def test_predict_skip_bad_records_the_bad_frames(files, tmp_path, capsys):
    d, model, frames = files
    out = tmp_path / "p.extxyz"
    assert main(["predict", str(d / "in.extxyz"), "-o", str(out), "--model", str(d / "tiny"), "--device", "cpu",
                 "--dtype", "float64", "--batch-size", "3", "--skip-bad", "-q"]) == 0
    assert "skipped 2 of 8" in _err(capsys)
    got = ase.io.read(out, ":")
    assert [a.info["name"] for a in got] == [f"s{k}" for k in range(8)]
    good = [k for k in range(8) if k not in (3, 6)]
    ref = predict([frames[k] for k in good], model=model, device="cpu", dtype="float64")
    for k, r in zip(good, ref):
        assert "hipot_error" not in got[k].info
        assert abs(got[k].get_potential_energy() - r["energy"]) < 1e-7
    for k in (3, 6):
        assert got[k].calc is None and f"frame {k}:" in got[k].info["hipot_error"]


def test_relax_skip_bad_and_labels(files, tmp_path, monkeypatch, capsys):
    d, _, _ = files
    out = tmp_path / "r.extxyz"
    args = ["relax", str(d / "in.extxyz"), "-o", str(out), "--model", str(d / "tiny"), "--device", "cpu",
            "--steps", "2", "--json", str(tmp_path / "r.json"), "-q"]
    with monkeypatch.context() as mp:
        _no_model_load(mp)
        assert main(args) == 2
        assert "frame 6: atoms 0 and 1" in _err(capsys)
    assert main(args + ["--skip-bad"]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["structures"]
    assert [r["index"] for r in rows] == list(range(8))
    assert "frame 3: element(s) Au" in rows[3]["error"] and rows[3]["steps"] == 0 and not rows[3]["converged"]
    assert ase.io.read(out, "6").info["hipot_error"].startswith(f"{d / 'in.extxyz'} frame 6")


def test_predict_accepts_examples_and_refuses_other_formats(files, tmp_path, capsys):
    d, _, _ = files
    out = tmp_path / "si.extxyz"
    common = ["--model", str(d / "tiny"), "--device", "cpu", "-q"]
    assert main(["predict", "example:Si", "-o", str(out), *common]) == 0
    assert np.isfinite(ase.io.read(out).get_potential_energy())
    assert main(["predict", "example:Si", "-o", str(tmp_path / "si.cif"), *common]) == 2
    assert "the only format that carries every result" in _err(capsys) and not (tmp_path / "si.cif").exists()
    # relax writes the format of the suffix (a relaxed structure is useful as CIF too)
    assert main(["relax", "example:Si", "-o", str(tmp_path / "si.cif"), "--steps", "2", *common]) == 0
    assert len(ase.io.read(tmp_path / "si.cif")) == 2


@pytest.mark.parametrize("content,expect", [
    (b"", "cannot read structures"),
    (b"3\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3\nSi 0 0 0\n", "cannot read"),
    (b"\x00\xffgarbage\xfe\x01", "cannot read"),
])
def test_unreadable_inputs_are_one_line(files, tmp_path, monkeypatch, capsys, content, expect):
    d, _, _ = files
    _no_model_load(monkeypatch)
    bad = tmp_path / "bad.extxyz"
    bad.write_bytes(content)
    cif = tmp_path / "bad.cif"
    cif.write_bytes(content)
    for path in (bad, cif):
        for verb in (["predict", str(path), "-o", str(tmp_path / "o.extxyz")], ["eos", str(path)]):
            assert main([*verb, "--model", str(d / "tiny"), "--device", "cpu", "-q"]) == 2
            err = _err(capsys)
            assert err.startswith(f"hipot {verb[0]}: error: {path}") and ("cannot read" in err or "no structures" in err)


def test_garbled_cif_is_one_line_without_the_readers_warnings(files, tmp_path, monkeypatch, capsys):
    """ASE's CIF reader warns with the garbled row's bytes before it fails: those warnings are held
    back, only hipot's one-line error is shown; a readable file's warnings still come, naming it
    (issue 26, item 5)."""
    import warnings

    d, _, _ = files
    _no_model_load(monkeypatch)
    good = tmp_path / "si.cif"
    ase.io.write(good, bulk("Si", "diamond", a=5.43))
    text = good.read_text()
    garbled = tmp_path / "garbled.cif"
    row = next(ln for ln in text.splitlines() if ln.strip().startswith("Si  Si2"))
    garbled.write_bytes(text.replace("_cell_length_a       ", "_cell_length_a       3.8\x0195x")
                        .replace(row, row.replace("Si2", "Si2  \xff\xfe")).encode("latin-1"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", str(garbled), "-o", str(tmp_path / "o.extxyz"), "--model", str(d / "tiny"),
                     "--device", "cpu", "-q"]) == 2
    err = _err(capsys)
    assert not caught, [str(w.message) for w in caught]
    assert len(err.splitlines()) == 1 and err.startswith(f"hipot predict: error: {garbled}: cannot read")
    from hipot.tasks.common import read_labelled

    warned = tmp_path / "warned.cif"
    warned.write_text(text.replace(row, row + "  extra"))  # a row with one token too many: read, with a warning
    with pytest.warns(UserWarning, match=f"{warned}: Wrong number"):
        assert len(read_labelled(str(warned))[0]) == 1


@pytest.mark.parametrize("verb", [
    ["md", "example:Si", "--temperature", "-100"], ["md", "example:Si", "--temperature", "nan"],
    ["md", "example:Si", "--steps", "-1"], ["md", "example:Si", "--timestep", "0"],
    ["md", "example:Si", "--interval", "0"], ["md", "example:Si", "--tdamp", "-5"],
    ["relax", "example:Si", "-o", "r.extxyz", "--fmax", "0"], ["relax", "example:Si", "-o", "r.extxyz", "--steps", "-5"],
    ["eos", "example:Si", "--points", "3"], ["phonons", "example:Si", "--displacement", "-0.01"],
    ["elastic", "example:Si", "--strain", "0.5"], ["predict", "example:Si", "-o", "p.extxyz", "--batch-size", "0"],
])
def test_bad_option_values_are_refused_before_any_work(files, tmp_path, monkeypatch, capsys, verb):
    """A negative temperature, a step count below zero, a zero timestep...: one line naming the
    option, exit 2, before the model loads and before any file is written (issue 26, item 3: a
    negative temperature used to start the run and leave NaN rows in md.traj and md.log)."""
    d, _, _ = files
    _no_model_load(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main([*verb, "--model", str(d / "tiny"), "--device", "cpu", "-q"]) == 2
    err = _err(capsys)
    option = next(v for v in verb[2:] if v.startswith("--"))
    assert err.startswith(f"hipot {verb[0]}: error: {option} must be") and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_threads_option_and_default(files, tmp_path, monkeypatch, capsys):
    """--threads N is what PyTorch uses during the command; without it, $OMP_NUM_THREADS is left to
    PyTorch, and otherwise the cores not busy with other work are taken (PyTorch's default of one
    thread per core made commands 10-60x slower on a loaded machine: issue 26, item 2). The
    count is restored afterwards."""
    import os

    import torch

    from hipot.cli.options import default_threads

    d, _, _ = files
    seen = []
    evaluate = Evaluator.evaluate
    monkeypatch.setattr(Evaluator, "evaluate", lambda *a, **kw: seen.append(torch.get_num_threads()) or evaluate(*a, **kw))
    before = torch.get_num_threads()
    cmd = ["predict", "example:Si", "-o", str(tmp_path / "p.extxyz"), "--model", str(d / "tiny"), "--device", "cpu",
           "-q"]
    for n in (1, 2):
        assert main([*cmd[:3], str(tmp_path / f"p{n}.extxyz"), *cmd[4:], "--threads", str(n)]) == 0
        assert seen[-1] == n and torch.get_num_threads() == before
    assert main([*cmd, "--threads", "0"]) == 2 and "--threads must be >= 1" in _err(capsys)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))  # every core busy
    assert default_threads() == 1
    assert main(cmd) == 0 and seen[-1] == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_threads() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() is None


def test_folder_missing_file_and_index_past_the_end(files, tmp_path, monkeypatch, capsys):
    d, _, _ = files
    _no_model_load(monkeypatch)
    common = ["--model", str(d / "tiny"), "--device", "cpu", "-q"]
    assert main(["predict", str(tmp_path), "-o", str(tmp_path / "o.extxyz"), *common]) == 2
    assert "is a folder" in _err(capsys)
    assert main(["md", str(tmp_path / "nothere.extxyz"), *common]) == 2
    assert "no such file" in _err(capsys)
    for index in ("20", "20:"):
        assert main(["predict", str(d / "in.extxyz"), "--index", index, "-o", str(tmp_path / "o.extxyz"), *common]) == 2
        assert "holds 8 frame(s)" in _err(capsys)
    assert main(["relax", str(d / "in.extxyz"), "--index", "x:y", "-o", str(tmp_path / "o.extxyz"), *common]) == 2
    assert "--index" in _err(capsys)


def test_device_without_cuda(files, tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    d, _, _ = files
    _no_model_load(monkeypatch)
    assert main(["predict", "example:Si", "-o", str(tmp_path / "o.extxyz"), "--model", str(d / "tiny"),
                 "--device", "cuda", "-q"]) == 2
    assert "no CUDA device" in _err(capsys)


def test_missing_extra_is_named_before_any_work(monkeypatch, tmp_path, capsys):
    import importlib

    import hipot.optional

    real = importlib.import_module

    def fake(name, *a, **kw):
        if name in ("spglib", "phonopy", "pymatgen"):
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real(name, *a, **kw)

    monkeypatch.setattr(hipot.optional, "import_module", fake)
    _no_model_load(monkeypatch)
    emt = ["--model", "ase:emt", "-q"]
    for verb in (["eos", "example:Cu"], ["phonons", "example:Cu"], ["elastic", "example:Cu"],
                 ["screen", "--elements", "Cu", "Au", "--out", str(tmp_path / "sc")],
                 ["relax", "example:Cu", "-o", str(tmp_path / "r.extxyz"), "--symmetry"]):
        assert main([*verb, *emt]) == 2
        err = _err(capsys)
        assert "is not installed: pip install 'hipot[tasks]'" in err, err
    assert not (tmp_path / "sc").exists() and not (tmp_path / "r.extxyz").exists()
    assert main(["eos", "example:Cu", "--no-relax", "--plot", str(tmp_path / "e.png"), *emt]) == 0  # no spglib needed


def test_unwritable_output_fails_before_computing(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    emt = ["--model", "ase:emt", "-q"]
    assert main(["eos", "example:Cu", "--json", str(blocker / "eos.json"), "--plot", str(tmp_path / "e.png"), *emt]) == 2
    assert f"cannot write {blocker / 'eos.json'}: {blocker} is not a folder" in _err(capsys)
    assert not (tmp_path / "e.png").exists()  # nothing was computed
    assert main(["eos", "example:Cu", "--json", "/proc/hipot-test/eos.json", *emt]) == 2  # read-only even for root
    assert "is not writable" in _err(capsys)
    assert main(["relax", "example:Cu", "-o", str(tmp_path), *emt]) == 2
    assert "it is a folder" in _err(capsys)
    assert main(["screen", "--elements", "Cu", "--out", str(blocker), *emt]) == 2
    assert "it is a file" in _err(capsys)


def test_ctrl_c_says_how_far_it_got(files, tmp_path, monkeypatch, capsys):
    d, _, frames = files
    out = tmp_path / "p.extxyz"
    args = ["predict", str(d / "in.extxyz"), "-o", str(out), "--model", str(d / "tiny"), "--device", "cpu",
            "--batch-size", "2", "--skip-bad", "-q"]
    calls = {"n": 0}
    original = Evaluator.evaluate

    def interrupt_second(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    with monkeypatch.context() as mp:
        mp.setattr(Evaluator, "evaluate", interrupt_second)
        assert main(args) == 130
    err = _err(capsys)
    # the two skipped frames are recorded at the start, then one batch of two
    assert "interrupted: 4 of 8 structure(s) done; rerun the same command to resume" in err
    assert not out.exists() and (tmp_path / ".p.extxyz.parts").is_dir()
    assert main(args) == 0 and len(ase.io.read(out, ":")) == 8
    # a command that keeps nothing says so
    with monkeypatch.context() as mp:
        mp.setattr(Evaluator, "evaluate", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
        assert main(["eos", "example:Si", "--no-relax", "--model", str(d / "tiny"), "--device", "cpu",
                     "--plot", str(tmp_path / "e.png"), "-q"]) == 130
    assert "keeps no partial results" in _err(capsys)


def test_large_cell_on_cpu_is_announced(files, capsys):
    from hipot.cli.common import estimate_cpu_cost, warn_if_large

    d, _, _ = files
    big = bulk("Si", "diamond", a=5.43, cubic=True) * (6, 6, 6)  # 1,728 atoms
    assert warn_if_large("predict", [big], ["big.extxyz frame 0"], str(d / "tiny"), "cpu")
    err = capsys.readouterr().err
    assert "big.extxyz frame 0 has 1,728 atoms" in err and "GiB of memory" in err
    assert not warn_if_large("predict", [bulk("Si")], ["small"], str(d / "tiny"), "cpu")
    assert not warn_if_large("predict", [big], ["big"], str(d / "tiny"), "cpu", quiet=True)
    gib, (lo, hi) = estimate_cpu_cost(160_000, threads=2)
    assert 5 < gib < 20 and lo < hi and hi > 60


def test_find_bad_names_periodic_images():
    tiny_cell = Atoms("Si", cell=[0.05, 4, 4], pbc=True)
    ((k, msg),) = find_bad([tiny_cell], None, ["c"])
    assert k == 0 and "its own periodic image" in msg
    assert find_bad([bulk("Si")], [14]) == []


def test_read_labelled_positions(tmp_path):
    frames = [bulk("Si")] * 5
    ase.io.write(tmp_path / "f.extxyz", frames)
    f = str(tmp_path / "f.extxyz")
    assert read_labelled(f, "::2")[1] == [f"{f} frame {k}" for k in (0, 2, 4)]
    assert read_labelled(f, "-1")[1] == [f"{f} frame 4"]
    assert read_labelled(f, "-2:")[1] == [f"{f} frame 3", f"{f} frame 4"]
    assert read_labelled("example:Si")[1] == ["example:Si"]


def test_edited_or_truncated_model_is_refused(tmp_path, monkeypatch):
    from hipot import load_model

    save_model(make_tiny(), tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    doc = json.loads(cfg.read_text())
    assert set(doc["sha256"]) == {"model", "model.safetensors"}
    doc["model"]["cutoff"] = 6.0
    cfg.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="model section was changed"):
        load_model_dir(tmp_path / "m")
    # a cached pretrained model: the message says how to repair it
    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path / "cache"))
    save_model(make_tiny(), tmp_path / "cache" / "hienet-v3")
    w = tmp_path / "cache" / "hienet-v3" / "model.safetensors"
    load_model("hienet-v3", device="cpu")  # intact: loads
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match=r"corrupt(.|\n)*hipot fetch hienet-v3 --force"):
        load_model("hienet-v3", device="cpu")


def test_task_cli_defaults_come_from_the_functions():
    import inspect

    from hipot.cli import build_parser
    from hipot.tasks.md import md
    from hipot.tasks.relax import relax

    p = build_parser()
    a = p.parse_args(["relax", "x.extxyz", "-o", "y.extxyz"])
    sig = inspect.signature(relax).parameters
    assert (a.fmax, a.steps, a.optimizer, a.batch_size, a.batch_atoms) == (
        sig["fmax"].default, sig["steps"].default, sig["optimizer"].default, sig["batch_size"].default,
        sig["max_atoms"].default)
    m = p.parse_args(["md", "x"])
    assert m.timestep == inspect.signature(md).parameters["timestep"].default
    assert p.parse_args(["predict", "x", "-o", "y", "--max-atoms", "7"]).batch_atoms == 7  # the former name


def test_relax_progress_counts_optimiser_steps(capsys):
    from ase.calculators.emt import EMT

    from hipot.tasks.relax import relax

    relax([rattled(bulk("Cu", "fcc", a=3.7) * (2, 2, 2), 0.1)], EMT(), steps=5, fmax=1e-6, progress=True)
    assert "5 optimiser steps" in capsys.readouterr().err


def test_official_shim_lives_with_the_benchmarks():
    from hipot.bench.speed import SHIM, load_official_shim

    assert SHIM.parent.name == "benchmarks" and not (Path(__file__).parents[1] / "hipot/bench/official.py").exists()
    assert hasattr(load_official_shim(), "add_official_to_path")
    with pytest.raises(SystemExit, match="--official-shim"):
        load_official_shim("/no/such/official.py")


def test_molecule_md_through_the_one_calculator(files, tmp_path):
    from hipot.calculator import HIPotCalculator
    from hipot.tasks.common import as_calculator

    d, model, _ = files
    calc = as_calculator(str(d / "tiny"), device="cpu", dtype="float64")
    assert type(calc) is HIPotCalculator
    a = molecule("CH4")
    a.calc = calc
    assert np.isfinite(a.get_potential_energy())
