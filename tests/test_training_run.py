"""Training end to end on tiny models and data: overfitting, exact resume (also after SIGKILL),
DDP gradients, export to the calculator, fine-tuning, the CLI."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.io import read, write

from conftest import make_tiny
from hipot import HIENet, HIPotCalculator, predict
from hipot.checkpoint import load_model_dir, save_model
from hipot.training import load_config
from hipot.training.trainer import CHECKPOINT, Trainer, resume

TINY = dict(cutoff=4.0, num_radial=4, invariant_channels=8, hidden_irreps=["8x0e+4x1e+4x2e", "8x0e"],
            radial_hidden=[8], readout_hidden=8, dropout=0.0, dropout_attn=0.0)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and the CI machine's cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def structures(n: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k % 3 == 2:
            a = molecule("CO2")
            a.rattle(0.05, seed=k)
        else:
            a = bulk("Cu", "fcc", a=3.6 + 0.05 * rng.normal(), cubic=True)
            a.rattle(0.05, seed=k)
        out.append(a)
    return out


@pytest.fixture(scope="module")
def teacher() -> HIENet:
    return make_tiny(seed=1, species=[6, 8, 29])


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, teacher) -> Path:
    """20 structures (Cu cells with stress, CO2 molecules without) labelled by a random tiny
    'teacher' model: a target a small student can fit exactly (as in distillation)."""
    frames = structures()
    for a, r in zip(frames, predict(frames, model=teacher, device="cpu", dtype="float64")):
        a.info["REF_energy"] = r["energy"]
        a.arrays["REF_forces"] = r["forces"]
        if "stress" in r:
            a.info["REF_stress"] = r["stress"]
    path = tmp_path_factory.mktemp("data") / "teacher.extxyz"
    write(path, frames)
    return path


def config(data_file, out, **sections):
    base = {"data": {"train": [str(data_file)], "valid_fraction": 0.2, "batch_size": 4},
            "model": dict(TINY),
            "loss": {"kind": "mse", "stress_weight": 1.0, "stress_unit": "eV/A^3", "forces_weight": 10.0},
            "optim": {"lr": 0.02, "weight_decay": 0.0, "ema_decay": 0.9},
            "schedule": {"warmup": 1, "min_factor": 0.1},
            "run": {"epochs": 3, "out": str(out), "device": "cpu", "dtype": "float64", "progress": False,
                    "checkpoint_every": 2}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_config(overrides=[base])


def test_small_model_overfits_20_structures(data_file, tmp_path):
    cfg = config(data_file, tmp_path / "run", data={"valid_fraction": 0.0, "batch_size": 5},
                 optim={"ema_decay": None}, run={"epochs": 15, "checkpoint_every": 0})
    tr = Trainer(cfg)
    tr.run()
    first, last = tr.history[0], tr.history[-1]
    assert last["train_loss"] < 0.01 * first["train_loss"]
    assert last["train_f_mae"] < 0.1 * first["train_f_mae"]
    assert last["train_f_mae"] < 3.0  # meV/A, of forces of ~60 meV/A
    assert last["train_stress_mae"] < 0.5 * first["train_stress_mae"]
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr") and len(rows) == 16
    assert (tmp_path / "run" / "learning_curve.png").stat().st_size > 1000


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_run(a: Path, b: Path) -> None:
    ca = torch.load(a / CHECKPOINT, weights_only=True)
    cb = torch.load(b / CHECKPOINT, weights_only=True)
    assert ca["global_step"] == cb["global_step"]
    for key in ("model",):
        for k in ca[key]:
            assert torch.equal(ca[key][k], cb[key][k]), k
    for k in ca["ema"]["model"]:
        assert torch.equal(ca["ema"]["model"][k], cb["ema"]["model"][k]), k
    untimed = lambda h: [{k: v for k, v in row.items() if k != "time_s"} for row in h]  # noqa: E731
    assert untimed(ca["history"]) == untimed(cb["history"])
    assert len((a / "metrics.csv").read_text().splitlines()) == len((b / "metrics.csv").read_text().splitlines())


def test_resume_gives_the_same_weights(data_file, tmp_path):
    dropout = {"dropout": 0.1, "dropout_attn": 0.1}  # the resumed run must also restore the RNG
    Trainer(config(data_file, tmp_path / "full", model=dropout)).run()
    # stop after 5 steps (mid-epoch, between two checkpoints), then resume
    Trainer(config(data_file, tmp_path / "cut", model=dropout, run={"max_steps": 5})).run()
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["global_step"] == 5
    resume(tmp_path / "cut", [{"run": {"max_steps": None}}])
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    with pytest.raises(FileExistsError):
        Trainer(config(data_file, tmp_path / "full"))


@pytest.mark.slow
def test_resume_after_sigkill(data_file, tmp_path):
    """A subprocess killed by SIGKILL between two checkpoints of its run, resumed, ends with the
    same weights as an uninterrupted run. The test proves the kill landed mid-run: the process
    died of the signal (it had not exited), its checkpoint is of a step before the last, and the
    run folder holds no exported model."""
    Trainer(config(data_file, tmp_path / "full", run={"checkpoint_every": 1})).run()
    total = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)["global_step"]
    out = tmp_path / "killed"
    cfg = config(data_file, out, run={"checkpoint_every": 1})
    from hipot.training.config import save_config

    save_config(cfg, tmp_path / "cfg.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "hipot", "train", "--config", str(tmp_path / "cfg.yaml"), "-q"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = out / CHECKPOINT
    t0 = time.time()
    while not ck.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.005)
    time.sleep(0.05)  # into the steps after the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill: nothing was tested"
    step = torch.load(ck, weights_only=True)["global_step"]
    assert 1 <= step < total and not (out / "model").exists()
    resume(out)
    assert_same_run(tmp_path / "full", out)
    print(f"killed after step {step} of {total}")


def test_ctrl_c_stops_after_a_step_with_a_checkpoint(data_file, tmp_path, monkeypatch, capsys):
    """Ctrl-C (SIGINT) during a step: the step finishes, a checkpoint is written, the CLI says how
    far it got and how to go on (exit 130); the resumed run equals an uninterrupted one."""
    from hipot.cli import main
    from hipot.training.config import save_config

    Trainer(config(data_file, tmp_path / "full", run={"checkpoint_every": 0})).run()
    cfg = config(data_file, tmp_path / "cut", run={"checkpoint_every": 0})
    save_config(cfg, tmp_path / "cfg.yaml")
    original = Trainer.train_step

    def step_then_ctrl_c(self, batch):
        loss = original(self, batch)
        if self.global_step == 4:  # during the fifth step (global_step counts finished ones)
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "-q"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: 5 of 12 step(s) done; continue from the last checkpoint with `hipot train --resume" in err
    assert torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)["global_step"] == 5
    monkeypatch.setattr(Trainer, "train_step", original)
    resume(tmp_path / "cut")
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_bad_frames_of_every_file_reported_at_once(data_file, tmp_path):
    from hipot.training import DataError

    frames = read(data_file, ":")
    for name, k in (("a.extxyz", 2), ("b.extxyz", 5)):
        bad = [a.copy() for a in frames]
        for a, f in zip(bad, frames):
            a.info.update(f.info)
            a.arrays["REF_forces"] = f.arrays["REF_forces"]
        bad[k].info["REF_energy"] = float("nan")
        write(tmp_path / name, bad)
    (tmp_path / "c.extxyz").write_text("3\ntruncated\nCu 0 0 0\n")
    cfg = config(tmp_path / "a.extxyz", tmp_path / "run", data={"train": [str(tmp_path / "a.extxyz"),
                 str(tmp_path / "b.extxyz")], "valid": [str(tmp_path / "c.extxyz")]})
    with pytest.raises(DataError) as e:
        Trainer(cfg)
    msg = str(e.value)
    assert msg.startswith("3 bad frame(s)") and "a.extxyz:2: energy label is nan" in msg
    assert "b.extxyz:5: energy label is nan" in msg and "c.extxyz: cannot read frame 0" in msg


def test_valid_every_and_frames_of_a_file(data_file, tmp_path, capsys):
    """Validation every 2nd epoch (and after the last) on the last 4 frames of the training file;
    the other rows leave the validation columns empty; resuming keeps the pattern; the ETA is shown."""
    import csv

    cfg = config(data_file, tmp_path / "run", data={"train": [f"{data_file}@:-4"], "valid": [f"{data_file}@-4:"]},
                 run={"epochs": 3, "valid_every": 2, "max_steps": 4, "checkpoint_every": 0})
    tr = Trainer(cfg)
    assert len(tr.train_set) == 16 and len(tr.valid_set) == 4
    # an extxyz read from its end: frames numbered in the selection, not mistaken for training frames
    assert [s.source for s in tr.valid_set.samples] == [f"{data_file}@-4::{k}" for k in range(4)]
    tr.run()  # stops at the end of epoch 1 (4 steps of 4 structures)
    err = capsys.readouterr().err
    assert "validation frame(s) are also training frames" not in err
    assert "epoch 0, E/atom MAE" in err and "epoch 1, train E/atom MAE" in err  # epoch 1: no validation
    resume(tmp_path / "run", [{"run": {"max_steps": None, "progress": True}}])
    err = capsys.readouterr().err
    assert "eta=" in err and "epoch 2, E/atom MAE" in err and "epoch 3, E/atom MAE" in err
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["valid_f_mae"] != "" for r in rows] == [True, False, True, True]
    assert [r["train_f_mae"] != "" for r in rows] == [False, True, True, True]
    assert list(rows[0])[:5] == ["epoch", "step", "lr", "time_s", "valid_loss"]
    # overlapping training and validation frames are reported
    Trainer(config(data_file, tmp_path / "run2", data={"valid": [f"{data_file}@16:"]}))
    assert "4 validation frame(s) are also training frames" in capsys.readouterr().err


def test_warmup_longer_than_the_run_is_reported(data_file, tmp_path, capsys):
    Trainer(config(data_file, tmp_path / "run", schedule={"warmup": 20}, run={"epochs": 4}))
    assert "warm-up (20 epochs) is not shorter than the run (4 epochs)" in capsys.readouterr().err
    Trainer(config(data_file, tmp_path / "run2", schedule={"warmup": 1}, run={"epochs": 4}))
    assert "warm-up" not in capsys.readouterr().err


def _ddp_worker(rank: int, port: int, chunk: list[int], data_file: str, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel as DDP

    from hipot import distributed
    from hipot.training.config import LossConfig
    from hipot.training.data import InMemoryDataset, collate, read_samples
    from hipot.training.loss import Loss
    from hipot.training.sampler import AtomBalancedSampler
    from hipot.training.trainer import forward_loss

    w, device = distributed.setup("cpu")
    ds = InMemoryDataset(read_samples([data_file]), 4.0)
    sampler = AtomBalancedSampler(ds.sizes(), batch_size=3, world_size=2, rank=rank)
    mine = sampler.split(np.array(chunk))[rank]
    model = DDP(make_tiny(seed=3, species=[6, 8, 29]).train())
    loss, _ = forward_loss(model, collate([ds[int(i)] for i in mine]), Loss(LossConfig()), device, torch.float64, 2)
    loss.backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.module.named_parameters()}, out)
    # the DDP model goes first: freed after the group, its reducer was the group's last owner and
    # joined gloo's threads from a destructor that held the GIL, which one of them was waiting
    # for (a hang seen once, 2026-12-08, torch 2.13 CPU)
    del model, loss
    import gc

    gc.collect()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_gradients_equal_one_process(data_file, tmp_path):
    from hipot.training.config import LossConfig
    from hipot.training.data import InMemoryDataset, collate, read_samples
    from hipot.training.loss import Loss
    from hipot.training.trainer import forward_loss

    chunk = [0, 2, 5, 7, 8, 11]  # Cu cells and CO2 molecules: unequal sizes and label sets
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(port, chunk, str(data_file), str(tmp_path / "g.pt")), nprocs=2)
    ddp_grads = torch.load(tmp_path / "g.pt", weights_only=True)
    ds = InMemoryDataset(read_samples([data_file]), 4.0)
    model = make_tiny(seed=3, species=[6, 8, 29]).train()
    loss, _ = forward_loss(model, collate([ds[i] for i in chunk]), Loss(LossConfig()), torch.device("cpu"), torch.float64)
    loss.backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[n], p.grad, rtol=1e-10, atol=1e-14, msg=n)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(data_file, tmp_path):
    """`torchrun --nproc-per-node 2 -m hipot train` on CPU (gloo) ends with the weights of one
    process trained on the combined batches (float64; only the summation order differs)."""
    cfg = config(data_file, tmp_path / "one", data={"batch_size": 4}, optim={"ema_decay": None},
                 run={"epochs": 2, "checkpoint_every": 1})
    Trainer(cfg).run()
    from hipot.training.config import save_config

    cfg.data.batch_size = 2
    cfg.run.out = str(tmp_path / "two")
    save_config(cfg, tmp_path / "two.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "hipot", "train", "--config", str(tmp_path / "two.yaml"), "-q"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    one = torch.load(tmp_path / "one" / CHECKPOINT, weights_only=True)
    two = torch.load(tmp_path / "two" / CHECKPOINT, weights_only=True)
    assert two["world_size"] == 2 and len(two["rng"]) == 2 and two["global_step"] == one["global_step"]
    for k, v in one["model"].items():
        torch.testing.assert_close(two["model"][k], v, rtol=1e-9, atol=1e-12, msg=k)
    for a, b in zip(one["history"], two["history"]):
        assert a["valid_f_mae"] == pytest.approx(b["valid_f_mae"], rel=1e-8)


def test_exported_model_loads_in_calculator_and_cli(data_file, tmp_path):
    from hipot.cli import main

    run = tmp_path / "run"
    code = main(["train", "--train", str(data_file), "--out", str(run), "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu", "--dtype", "float64", "-q", "--set", f"model={TINY}", "--set", "schedule.warmup=0"])
    assert code == 0
    ck = torch.load(run / CHECKPOINT, weights_only=True)
    ema = HIENet(load_model_dir(run / "model")[0].config)
    ema.load_state_dict(ck["ema"]["model"])
    atoms = read(data_file, 0)
    atoms.calc = HIPotCalculator(model=str(run / "model"), device="cpu", dtype="float64")
    ref = predict([atoms], model=ema.double(), device="cpu", dtype="float64")[0]
    assert abs(atoms.get_potential_energy() - ref["energy"]) < 1e-4  # the export is float32
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-5)
    assert main(["predict", str(data_file), "-o", str(tmp_path / "p.extxyz"), "--model", str(run),
                 "--device", "cpu", "-q"]) == 0  # the run folder itself loads as the model
    assert abs(read(tmp_path / "p.extxyz", 0).get_potential_energy() - atoms.get_potential_energy()) < 1e-4
    cfg = (run / "config.yaml").read_text()
    assert "invariant_channels: 8" in cfg and "avg_num_neighbors" in cfg and "species:" in cfg
    resolved = load_config(run / "config.yaml")  # a resolved config reproduces the model's constants
    model = load_model_dir(run / "model")[0]
    assert resolved.statistics.shift == "given"
    assert resolved.statistics.element_energies["Cu"] == pytest.approx(float(model.shift[2]))
    assert resolved.statistics.scale == pytest.approx(float(model.scale[0]))


def test_finetune_refits_shifts_and_freezes(data_file, teacher, tmp_path):
    """Start from the teacher itself, on labels moved to another energy reference (+0.7 eV per
    Cu, -0.3 eV per O): the shift refit alone recovers them exactly; frozen weights stay put."""
    save_model(teacher, tmp_path / "start")
    frames = read(data_file, ":")
    for a in frames:
        a.info["REF_energy"] += 0.7 * (a.numbers == 29).sum() - 0.3 * (a.numbers == 8).sum()
    write(tmp_path / "shifted.extxyz", frames)
    cfg = config(tmp_path / "shifted.extxyz", tmp_path / "ft", finetune={"start": str(tmp_path / "start"),
                 "freeze": ["embedding", "invariant_layers"]}, optim={"lr": 1e-3}, run={"max_steps": 3})
    tr = Trainer(cfg)
    assert tr.history == []
    tr.run()
    before = tr.history[0]
    assert before["epoch"] == 0 and before["valid_e_atom_mae"] < 1e-4 and before["valid_f_mae"] < 1e-4
    assert torch.equal(tr.model.embedding, teacher.embedding)
    for a, b in zip(tr.model.invariant_layers.parameters(), teacher.invariant_layers.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(tr.model.readout_out, teacher.readout_out)  # the rest trains
    resume(tmp_path / "ft", [{"run": {"max_steps": 5}}])  # frozen again after a resume
    ck = torch.load(tmp_path / "ft" / CHECKPOINT, weights_only=True)
    assert ck["global_step"] == 5 and torch.equal(ck["model"]["embedding"], teacher.embedding)
    with pytest.raises(ValueError, match="no parameter name starts with 'block.0'"):
        Trainer(config(data_file, tmp_path / "ft2", finetune={"start": str(tmp_path / "start"), "freeze": ["block.0"]}))


def test_train_from_store(data_file, tmp_path):
    from hipot.cli import main

    assert main(["data", "build", str(data_file), "-o", str(tmp_path / "store"), "--cutoff", "4.0",
                 "--shard-size", "6", "-q"]) == 0
    cfg = config(tmp_path / "store", tmp_path / "run", run={"max_steps": 2})
    tr = Trainer(cfg)
    assert len(tr.train_set) == 16 and len(tr.valid_set) == 4
    tr.run()
    bad = config(tmp_path / "store", tmp_path / "run2", model={"cutoff": 5.0})
    with pytest.raises(ValueError, match="store built with cutoff 4.0"):
        Trainer(bad)


def test_tensorboard_when_installed(data_file, tmp_path, monkeypatch):
    """With tensorboard importable, per-step loss and per-epoch metrics are logged (a stand-in
    SummaryWriter here: the CI image does not ship tensorboard)."""
    import types

    logged: list[tuple[str, float, int]] = []

    class Writer:
        def __init__(self, logdir):
            self.logdir = logdir

        def add_scalar(self, tag, value, step):
            logged.append((tag, value, step))

        def close(self):
            logged.append(("closed", 0.0, 0))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    cfg = config(data_file, tmp_path / "run", run={"epochs": 1, "tensorboard": True})
    Trainer(cfg).run()
    tags = {t for t, _, _ in logged}
    assert {"train/loss_step", "valid/f_mae", "train/loss", "closed"} <= tags
