"""`hipot distill`: teacher-labelled data in resumable stages and a smooth student that starts
from the teacher, with a tiny teacher for a few steps on the CPU."""
from __future__ import annotations

import os
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
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
    recipe = {"teacher": str(tmp_path / "teacher"), "smooth_from": 3.0, "seeds": [str(tmp_path / "seeds.extxyz")],
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
    assert main(_args(recipe, out, "--epochs", "1", "--install-as", "my-smooth")) == 0
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
    assert init.config.smooth_from == 3.0   # the recipe's fade, which the data do not depend on
    for (n, a), b in zip(teacher.state_dict().items(), init.state_dict().values()):
        assert torch.equal(a.float(), b.float()), n
    student = load_model("my-smooth", device="cpu")   # installed under its name in the cache
    assert student.config.smooth_invariant and student.config.smooth_from == 3.0
    with pytest.raises(SystemExit, match="belongs to a model hipot"):   # a fetched model's name is taken
        main(_args(recipe, out, "--install-as", "hienet-v3"))


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


def test_models_are_listed_with_their_licences(capsys):
    assert main(["fetch", "--list"]) == 0
    text = capsys.readouterr().out
    assert "hienet-v3-smooth" in text and "hienet-v3\n" in text and text.count("licence: GPL-3.0") == 2


def test_a_shipped_model_loads_by_name_and_refuses_damage(tmp_path, monkeypatch, capsys):
    """A model in hipot/weights/NAME loads by name with nothing fetched; edited weights are refused
    (the checksum in its config.json) with the way to repair them."""
    from hipot import pretrained

    monkeypatch.setenv("HIPOT_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setitem(pretrained.SHIPPED, "tiny-shipped", pretrained.Shipped("MIT (test)", "a tiny test model"))
    tiny = make_tiny(species=[14])
    save_model(tiny, tmp_path / "weights" / "tiny-shipped")
    net = load_model("tiny-shipped", device="cpu", dtype="float64")
    for a, b in zip(net.state_dict().values(), tiny.state_dict().values()):
        assert torch.equal(a, b)
    assert pretrained.fetch("tiny-shipped") == tmp_path / "weights" / "tiny-shipped"
    assert not (tmp_path / "empty-cache").exists()   # nothing fetched or cached
    assert main(["fetch", "--list"]) == 0
    assert "licence: MIT (test)" in capsys.readouterr().out
    weights = tmp_path / "weights" / "tiny-shipped" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="reinstall hipot"):
        load_model("tiny-shipped", device="cpu")


def test_batched_langevin_conserves_energy_and_resumes(tmp_path):
    """Without friction the BAOAB steps are velocity Verlet: the total energy of every run stays
    put (a wrong force sign or a missing half kick would not); a run killed after its first
    snapshot interval continues to the same snapshots as one that was never stopped."""
    from ase import units

    from hipot.distill.md import STATE, _initial_velocities, batched_langevin
    from hipot.evaluator import Evaluator

    # a smooth tiny model: the official layer's jump at the cutoff would break conservation
    teacher = Evaluator(make_tiny(species=[11, 14, 17], smooth_invariant=True), device="cpu", dtype="float64")
    starts = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    temps = [800.0, 300.0]
    snaps = batched_langevin(starts, temps, teacher, tmp_path / "nve", steps=40, every=10,
                             timestep_fs=0.5, friction_per_fs=0.0, seed=3)
    assert [int(s.info["md_step"]) for s in snaps] == [10, 10, 20, 20, 30, 30, 40, 40]
    z = np.load(tmp_path / "nve" / STATE)
    rng = np.random.default_rng(3)   # the same seed draws the same starting velocities
    for k, a in enumerate(starts):
        rows, m = slice(8 * k, 8 * (k + 1)), a.get_masses()[:, None]
        v0 = _initial_velocities(a, temps[k], rng)
        kin0 = 0.5 * np.sum(m * v0 ** 2)
        e0 = teacher.evaluate([a])[0]["energy"] + kin0
        b = Atoms(a.numbers, z["positions"][rows], cell=a.cell, pbc=True)
        e_end = teacher.evaluate([b])[0]["energy"] + 0.5 * np.sum(m * z["velocities"][rows] ** 2)
        kin_end = 0.5 * np.sum(m * z["velocities"][rows] ** 2)
        assert abs(e_end - e0) < 1e-3 * kin0, (k, e_end, e0, kin0)
        assert abs(kin_end - kin0) > 1e2 * abs(e_end - e0)   # negative control: energy did move between kinds
    # resumption: stop after 20 steps (the state written at step 20), then go on to 40
    part = batched_langevin(starts, [800.0, 300.0], teacher, tmp_path / "cut", steps=20, every=10,
                            timestep_fs=0.5, friction_per_fs=0.02, seed=3)
    assert len(part) == 4
    again = batched_langevin(starts, [800.0, 300.0], teacher, tmp_path / "cut", steps=40, every=10,
                             timestep_fs=0.5, friction_per_fs=0.02, seed=3)
    whole = batched_langevin(starts, [800.0, 300.0], teacher, tmp_path / "whole", steps=40, every=10,
                             timestep_fs=0.5, friction_per_fs=0.02, seed=3)
    assert len(again) == len(whole) == 8
    for a, b in zip(again, whole):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-6)   # extxyz keeps 8 decimals
    # friction on: the trajectories differ from the NVE ones (the thermostat acts)
    assert not np.allclose(whole[-1].positions, snaps[-1].positions, atol=1e-3)


def test_travel_pack_continues_elsewhere(tmp_path, monkeypatch):
    """A run packed after 2 steps into small pieces is rebuilt in another folder (its paths
    rewritten) and continues there to step 4 from the EMA weights with fresh Adam moments; a
    damaged piece is refused."""
    from hipot.distill import travel

    recipe = _setup(tmp_path, monkeypatch)
    monkeypatch.setattr(travel, "PIECE_BYTES", 20_000)
    out = tmp_path / "run"
    assert main(_args(recipe, out, "--max-steps", "2", "--pack-to", str(tmp_path / "pack"))) == 0
    doc = __import__("json").loads((tmp_path / "pack" / "pack.json").read_text())
    assert len(doc["state"]["weights"]) > 1 and doc["state"]["global_step"] == 2
    assert all((tmp_path / "pack" / p["file"]).stat().st_size <= 20_000 for p in doc["data"] + doc["state"]["weights"])
    ema = torch.load(out / "train" / "checkpoints" / "last.pt", weights_only=True)["ema"]["model"]

    elsewhere = tmp_path / "elsewhere"
    assert travel.unpack(tmp_path / "pack", elsewhere) == 2
    ck = torch.load(elsewhere / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["optimizer"] is None and ck["global_step"] == 2
    for k, v in ema.items():
        assert torch.equal(ck["model"][k], v.float()), k
    import yaml

    cfg = yaml.safe_load((elsewhere / "train" / "config.yaml").read_text())
    assert all(str(elsewhere) in p and Path(p).exists() for p in cfg["data"]["train"])
    # the recipe's teacher is not needed to continue: hide it
    (tmp_path / "teacher").rename(tmp_path / "teacher-gone")
    assert main(_args(recipe, elsewhere, "--max-steps", "4")) == 0
    ck = torch.load(elsewhere / "train" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["global_step"] == 4 and ck["optimizer"] is not None
    # unpacking again does not throw the newer state away
    assert travel.unpack(tmp_path / "pack", elsewhere) == 4
    # the pack's model as a model folder: the EMA weights in the student's architecture
    exported, _ = load_model_dir(travel.export_model(tmp_path / "pack", tmp_path / "exported"))
    assert exported.config.smooth_invariant
    for k, v in exported.state_dict().items():
        assert torch.equal(v, ema[k].float()), k
    # the data alone travel on to a student of another fade, which starts afresh from them; the
    # trained run of this fade refuses that recipe instead of training on
    travel.data_only(tmp_path / "pack", tmp_path / "data-pack")
    assert "state" not in __import__("json").loads((tmp_path / "data-pack" / "pack.json").read_text())
    other = tmp_path / "recipe-other.yaml"
    other.write_text(recipe.read_text().replace("smooth_from: 3.0", "smooth_from: 2.0"))
    with pytest.raises(ValueError, match="fade from 3.0"):
        main(_args(other, elsewhere, "--max-steps", "5"))
    (tmp_path / "teacher-gone").rename(tmp_path / "teacher")   # a new student starts from the teacher
    fresh = tmp_path / "fresh"
    assert main(_args(other, fresh, "--from-pack", str(tmp_path / "data-pack"), "--max-steps", "1")) == 0
    assert load_model_dir(fresh / "student_init")[0].config.smooth_from == 2.0
    assert torch.load(fresh / "train" / "checkpoints" / "last.pt", weights_only=True)["global_step"] == 1
    # shipped as hipot/weights/NAME would be (benchmarks/smooth/ship.py): whole, licensed, loadable
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship", REPO / "benchmarks" / "smooth" / "ship.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    (tmp_path / "GPL").write_text("GPL-3.0 text")
    folder = ship.ship(tmp_path / "pack", "tiny-smooth", "this CPU", tmp_path / "GPL", tmp_path / "weights")
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "README.md", "config.json", "model.safetensors"]
    shipped, meta = load_model_dir(folder)
    assert meta["made_on"] == "this CPU" and meta["steps"] == 2 and "2 steps" in (folder / "README.md").read_text()
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, ema[k].float()), k
    with pytest.raises(SystemExit, match="exists"):   # never over weights already shipped
        ship.ship(tmp_path / "pack", "tiny-smooth", "this CPU", tmp_path / "GPL", tmp_path / "weights")
    piece = tmp_path / "pack" / doc["state"]["weights"][0]["file"]
    piece.write_bytes(b"x" + piece.read_bytes()[1:])
    with pytest.raises(ValueError, match="damaged"):
        travel.unpack(tmp_path / "pack", tmp_path / "third")


def test_unfinished_data_travel_and_are_finished_elsewhere(tmp_path, monkeypatch):
    """Data stopped before their labels travel with what the stages kept (relaxed parts, MD
    states and snapshots) and are finished on another machine from those files, into the labels
    the first one made (to the 8 decimals of the snapshots read back); a folder with data of its
    own is not overwritten by such a pack."""
    import io
    import json

    from hipot.distill import travel

    recipe = _setup(tmp_path, monkeypatch)
    out = tmp_path / "run"
    assert main(_args(recipe, out, "--data-only")) == 0
    whole = {p.name: p.read_bytes() for p in (out / "data").glob("part-*.extxyz")}
    # the run as a kill during the labels leaves it: manifest without parts, no label part yet
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    (out / "data" / "manifest.json").write_text(json.dumps({"recipe": manifest["recipe"]}))
    for name in whole:
        (out / "data" / name).unlink()
    (out / "data" / ".part-0000.extxyz.tmp1").write_text("half")   # an interrupted write stays behind
    travel.pack(out, tmp_path / "pack")
    doc = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert doc["data_finished"] is False and "state" not in doc

    elsewhere = tmp_path / "elsewhere"
    assert travel.unpack(tmp_path / "pack", elsewhere) == 0
    kept = sorted(str(f.relative_to(elsewhere)) for f in elsewhere.rglob("*") if f.is_file())
    assert "data/substituted.extxyz" in kept and any(k.startswith("md/") for k in kept)
    assert not any(Path(k).name.startswith(".") for k in kept)
    stamps = {k: (elsewhere / k).stat().st_mtime_ns for k in kept}
    # finished there (it has the teacher): the same labels, and a finished pack again
    assert main(_args(recipe, elsewhere, "--data-only", "--pack-to", str(tmp_path / "pack2"))) == 0
    # the relaxations and MD were taken from the pack, not made again (only the manifest is new)
    assert [k for k, t in stamps.items() if (elsewhere / k).stat().st_mtime_ns != t] == ["data/manifest.json"]
    assert sorted(p.name for p in (elsewhere / "data").glob("part-*.extxyz")) == sorted(whole)
    for name in whole:
        made = ase.io.read(elsewhere / "data" / name, ":")
        ref = ase.io.read(io.StringIO(whole[name].decode()), ":", format="extxyz")
        assert len(made) == len(ref)
        for a, b in zip(made, ref):
            assert a.get_chemical_formula() == b.get_chemical_formula()
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-7)
            assert abs(a.info["REF_energy"] - b.info["REF_energy"]) < 1e-6
            np.testing.assert_allclose(a.arrays["REF_forces"], b.arrays["REF_forces"], atol=1e-6)
    assert json.loads((tmp_path / "pack2" / "pack.json").read_text())["data_finished"] is True
    # the unfinished pack does not overwrite the finished folder
    assert travel.unpack(tmp_path / "pack", elsewhere) == 0
    assert json.loads((elsewhere / "data" / "manifest.json").read_text()).get("parts")


def test_teacher_workers_take_their_share_of_one_gpu(monkeypatch):
    """On a GPU each of N teacher processes limits itself to 0.9/N of the memory (through an index
    torch accepts, also for a plain 'cuda') and recomputes above 1/N of the edge threshold; on the
    CPU nothing of that is set."""
    import os

    import torch

    from hipot.distill import workers
    from hipot.execution import RECOMPUTE_EDGES

    made, fractions = [], []
    monkeypatch.setattr(workers, "Evaluator", lambda model, **kw: made.append(kw) or object())
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda f, device=None: fractions.append((f, device)))
    monkeypatch.setattr("hipot.device.resolve_device", lambda d: torch.device(d))
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_CUDA_ALLOC_CONF"}
    monkeypatch.setattr(os, "environ", env)   # what _init sets stays in this test
    monkeypatch.setattr(workers, "_exit_with_parent", lambda parent, every: None)   # no watcher in pytest
    workers._init("teacher", "cuda", 1, 4)
    assert fractions == [(0.9 / 4, None)]
    assert made[-1]["recompute_edges"] == RECOMPUTE_EDGES["cuda"] // 4 and made[-1]["cuda_graphs"] is False
    assert "expandable_segments" in env["PYTORCH_CUDA_ALLOC_CONF"]
    workers._init("teacher", "cuda:1", 1, 2)
    assert fractions[-1] == (0.45, 1)
    workers._init("teacher", "cpu", 1, 4)
    assert len(fractions) == 2 and made[-1]["recompute_edges"] is None


_HOLDER = """
import os, sys, time
from hipot.distill.workers import Teacher

def hold(teacher, path):
    open(path + ".tmp", "w").write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(300)

if __name__ == "__main__":
    for _ in Teacher(sys.argv[1], device="cpu", workers=2).map(hold, [(sys.argv[2] + "/a",), (sys.argv[2] + "/b",)]):
        pass
"""


def _running(pid: int) -> bool:
    """pid is a live process (a zombie left for a parent that does not reap it counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_teacher_workers_end_when_their_parent_is_killed(tmp_path):
    """A parent stopped by SIGTERM runs no cleanup (`timeout` in benchmarks/device/distill.sh sends
    it): its teacher workers must not go on holding the device and the cores for their whole job
    (here 300 s), but end within seconds."""
    import signal
    import subprocess
    import sys
    import time

    save_model(make_tiny(dtype=torch.float32), tmp_path / "tiny")
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    root = str(Path(__file__).resolve().parents[1])   # hipot importable from a script outside the checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "tiny"), str(tmp_path)], env=env)
    try:
        pids = []
        deadline = time.monotonic() + 180
        while len(pids) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.5)
            pids = [int((tmp_path / n).read_text()) for n in "ab" if (tmp_path / n).exists()]
        assert len(pids) == 2 and all(map(_running, pids)), "the two workers did not start"
        time.sleep(3)
        assert all(map(_running, pids))   # negative control: they hold their job while the parent lives
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(map(_running, pids)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(map(_running, pids)), "teacher workers outlived their parent"
    finally:
        parent.kill()
        for pid in pids:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("program", [True, False])
def test_travel_compression_with_and_without_the_xz_program(monkeypatch, program):
    """The pack's data are xz whether made by the `xz` program (threads) or by Python's lzma."""
    import lzma
    import shutil

    from hipot.distill import travel

    if not program:
        monkeypatch.setattr(shutil, "which", lambda name: None)
    elif shutil.which("xz") is None:
        pytest.skip("no xz program here")
    raw = b"".join(f"Si {k * 0.001:.8f} 0.0 0.0\n".encode() for k in range(200_000))
    packed = travel._xz(raw)
    assert lzma.decompress(packed) == raw and len(packed) < len(raw) // 5


class _SmallMemory:
    """An evaluator whose device holds at most `fits` structures a batch: larger batches raise
    torch's out-of-memory error (what a teacher worker's share of one GPU did in MD)."""

    def __init__(self, evaluator, fits: int):
        self.evaluator, self.fits, self.calls = evaluator, fits, []

    def evaluate(self, structures, batch_size=64, stress=True, **kw):
        self.calls.append(batch_size)
        if min(batch_size, len(structures)) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.evaluator.evaluate(structures, batch_size=batch_size, stress=stress, **kw)


def test_teacher_out_of_memory_halves_the_batch(tmp_path):
    """A batch that runs out of device memory is labelled again in halves, to the same labels; MD
    keeps the batch that fitted for its later steps; one structure that does not fit still fails."""
    from hipot.distill.label import label
    from hipot.distill.md import batched_langevin
    from hipot.evaluator import Evaluator

    teacher = Evaluator(make_tiny(species=[11, 14, 17]), device="cpu", dtype="float64")
    frames = [bulk("NaCl", "rocksalt", a=5.64 + 0.02 * k) for k in range(6)]
    small = _SmallMemory(teacher, fits=2)
    got, ref = label(frames, small, batch_size=8), label(frames, teacher, batch_size=8)
    assert small.calls == [8, 3, 1]   # 6 structures: halved from 6, not from 8
    assert len(got) == len(ref) == 6
    for a, b in zip(got, ref):
        assert abs(a.info["REF_energy"] - b.info["REF_energy"]) < 1e-10
        np.testing.assert_allclose(a.arrays["REF_forces"], b.arrays["REF_forces"], atol=1e-10)
    starts = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("NaCl", "rocksalt", a=5.64, cubic=True)]
    small = _SmallMemory(teacher, fits=1)
    snaps = batched_langevin(starts, [300.0, 300.0], small, tmp_path / "md", steps=4, every=2, seed=1)
    whole = batched_langevin(starts, [300.0, 300.0], teacher, tmp_path / "md2", steps=4, every=2, seed=1)
    assert small.calls == [64, 1, 1, 1, 1, 1]   # 2 structures: halved once to 1, then kept for 4 steps
    for a, b in zip(snaps, whole):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)
    with pytest.raises(torch.OutOfMemoryError):   # negative control: nothing smaller to try
        label(frames[:1], _SmallMemory(teacher, fits=0), batch_size=4)


@pytest.mark.slow
def test_workers_make_the_same_data(tmp_path, monkeypatch):
    """Two teacher processes make exactly the data one makes: relaxation, MD and label jobs are
    fixed by the data, not by the number of workers."""
    import yaml

    recipe = _setup(tmp_path, monkeypatch)
    doc = yaml.safe_load(recipe.read_text())
    doc["data"].update({"md_group": 1, "substitution_part": 1})
    frames = {}
    for workers in (1, 2):
        doc["data"]["workers"] = workers
        path = tmp_path / f"recipe{workers}.yaml"
        path.write_text(yaml.safe_dump(doc))
        out = tmp_path / f"run{workers}"
        if workers == 1:
            assert main(_args(path, out, "--data-only")) == 0
        else:   # `python -m hipot`: spawned workers import its __main__ and must not run the command again
            import subprocess
            import sys

            res = subprocess.run([sys.executable, "-m", "hipot", *_args(path, out, "--data-only")],
                                 capture_output=True, text=True, timeout=600)
            assert res.returncode == 0, res.stderr
            assert res.stdout.count("structures labelled") == 1, res.stdout
        assert len(list((out / "md").glob("g*"))) > 1 and len(list((out / "data" / "substituted-parts").iterdir())) > 1
        frames[workers] = [f for p in sorted((out / "data").glob("part-*.extxyz")) for f in ase.io.read(p, ":")]
    assert len(frames[1]) == len(frames[2]) > 10
    for a, b in zip(frames[1], frames[2]):
        assert a.info.get("kind") == b.info.get("kind")
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_allclose(a.arrays["REF_forces"], b.arrays["REF_forces"], rtol=0, atol=1e-6)
