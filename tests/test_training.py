"""Training building blocks: config, data readers and validation, store, statistics, loss, sampler, schedule."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import write

from hipot.derivatives import Prediction
from hipot.training.config import PRESETS, LossConfig, TrainConfig, load_config, parse_override, save_config
from hipot.training.data import (EV_PER_KCAL_MOL, KBAR_PER_EV_A3, DataError, InMemoryDataset, LabelKeys, collate,
                                 parse_frames, read_samples, split_frames)
from hipot.training.loss import Loss
from hipot.training.sampler import AtomBalancedSampler
from hipot.training.statistics import compute_statistics, fit_element_energies
from hipot.training.store import H5Store, build_store
from hipot.training.trainer import eta_seconds, lr_factor, validated


def labelled(atoms: Atoms, energy: float, seed: int = 0, stress: bool = True) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.info["REF_energy"] = energy
    atoms.arrays["REF_forces"] = rng.normal(size=(len(atoms), 3))
    if stress:
        atoms.info["REF_stress"] = rng.normal(size=6) * 0.01
    return atoms


def test_config_layers_and_round_trip(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("data: {batch_size: 3}\noptim: {lr: 0.5}\nmodel: {invariant_channels: 16}\n")
    cfg = load_config(y, preset="official", overrides=[parse_override("optim.lr=0.25"),
                                                       parse_override("loss={kind: mse}")])
    assert cfg.data.batch_size == 3  # YAML over preset
    assert cfg.optim.lr == 0.25  # override over YAML
    assert cfg.optim.weight_decay == PRESETS["official"]["optim"]["weight_decay"]
    assert cfg.loss.kind == "mse" and cfg.model == {"invariant_channels": 16}
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"optim": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="stress_unit"):
        load_config(overrides=[{"data": {"stress_unit": "GPa"}}])


def test_reader_units_and_fallback_keys(tmp_path):
    a = labelled(bulk("Cu", "fcc", a=3.6, cubic=True), -10.0)
    a.info["REF_stress"] = np.array([1.0, 2, 3, 4, 5, 6]) * KBAR_PER_EV_A3 / 1000
    write(tmp_path / "a.extxyz", [a])
    (s,) = read_samples([tmp_path / "a.extxyz"], LabelKeys(stress_unit="kbar"))
    assert s.energy == -10.0
    np.testing.assert_allclose(s.forces, a.arrays["REF_forces"])
    np.testing.assert_allclose(s.stress, np.array([[1, 6, 5], [6, 2, 4], [5, 4, 3]]) / 1000)
    # no REF_* keys: the file's own calculator results (here extxyz energy=/forces=)
    from ase.calculators.singlepoint import SinglePointCalculator

    b = bulk("Cu", "fcc", a=3.6)
    b.calc = SinglePointCalculator(b, energy=-3.0, forces=np.ones((1, 3)), stress=np.zeros(6))
    write(tmp_path / "b.extxyz", [b])
    (s,) = read_samples([tmp_path / "b.extxyz"])
    assert s.energy == -3.0 and s.forces.shape == (1, 3) and s.stress is not None


def test_rmd17_npz(tmp_path):
    rng = np.random.default_rng(0)
    z = np.array([6, 1, 8], dtype=np.uint8)
    coords = rng.normal(size=(4, 3, 3)) + np.array([[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]])
    np.savez(tmp_path / "m.npz", nuclear_charges=z, coords=coords, energies=np.arange(4.0),
             forces=np.ones((4, 3, 3)))
    samples = read_samples([tmp_path / "m.npz"])
    assert len(samples) == 4 and not samples[0].pbc.any()
    assert math.isclose(samples[2].energy, 2 * EV_PER_KCAL_MOL)
    np.testing.assert_allclose(samples[1].forces, EV_PER_KCAL_MOL)
    assert math.isclose(EV_PER_KCAL_MOL, 0.0433641, rel_tol=1e-6)


def test_frames_of_a_file(tmp_path):
    """'FILE@SLICE' selects frames (the rMD17 split: 950 + the last 50 of one file), with frame
    numbers that are positions in the file, for every reader."""
    assert parse_frames("-50:") == slice(-50, None) and parse_frames(":950") == slice(None, 950)
    assert parse_frames("::10") == slice(None, None, 10) and parse_frames("7") == slice(7, 8)
    assert parse_frames("-1") == slice(-1, None)
    for bad in ("", "a:b", "1:2:0", "1:2:3:4"):
        with pytest.raises(ValueError):
            parse_frames(bad)
    assert split_frames("x.npz@-50:") == (tmp_path.__class__("x.npz"), slice(-50, None))
    assert split_frames("user@host.extxyz")[1] is None  # no slice after the '@': a plain name
    (tmp_path / "odd@1").write_text("")
    assert split_frames(tmp_path / "odd@1")[1] is None  # an existing file is taken as named

    rng = np.random.default_rng(0)
    z = np.array([6, 1, 8], dtype=np.uint8)
    coords = rng.normal(size=(10, 3, 3)) + np.array([[0, 0, 0], [1.5, 0, 0], [0, 1.5, 0]])
    npz = tmp_path / "m.npz"
    np.savez(npz, nuclear_charges=z, coords=coords, energies=np.arange(10.0), forces=np.ones((10, 3, 3)))
    train, valid = read_samples([f"{npz}@:-3"]), read_samples([f"{npz}@-3:"])
    assert len(train) == 7 and len(valid) == 3
    assert [s.source for s in valid] == [f"{npz}:{k}" for k in (7, 8, 9)]
    assert [round(s.energy / EV_PER_KCAL_MOL) for s in valid] == [7, 8, 9]
    assert not {s.source for s in train} & {s.source for s in valid}
    assert len(read_samples([f"{npz}@:-3"], max_frames=4)) == 4  # max_frames counts the selected frames

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    frames = [labelled(cu, -float(k), seed=k) for k in range(6)]
    write(tmp_path / "d.extxyz", frames)
    sel = read_samples([f"{tmp_path / 'd.extxyz'}@1::2"], index="0")  # the slice replaces data.index
    assert [s.energy for s in sel] == [-1.0, -3.0, -5.0]
    assert [s.source.rsplit(":", 1)[1] for s in sel] == ["1", "3", "5"]
    sel = read_samples([f"{tmp_path / 'd.extxyz'}@-2:"])  # from the end: numbered in the selection
    assert [s.energy for s in sel] == [-4.0, -5.0] and sel[1].source == f"{tmp_path / 'd.extxyz'}@-2::1"
    import ase.db

    with ase.db.connect(str(tmp_path / "d.db")) as db:
        for a in frames:
            db.write(a, REF_energy=a.info["REF_energy"], data={"REF_forces": a.arrays["REF_forces"]})
    sel = read_samples([f"{tmp_path / 'd.db'}@-2:"])
    assert [s.energy for s in sel] == [-4.0, -5.0] and sel[0].source.endswith("d.db:4")
    with pytest.raises(DataError, match="no frames"):
        read_samples([f"{npz}@20:"])


def test_bad_data_reported_with_file_and_frame(tmp_path):
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    good = labelled(cu, -10.0)
    no_forces = labelled(cu, -10.0)
    del no_forces.arrays["REF_forces"]
    nan_energy = labelled(cu, float("nan"))
    unknown = labelled(bulk("Ar", "fcc", a=5.0), -1.0)
    bad_stress = labelled(cu, -10.0)
    bad_stress.info["REF_stress"] = np.ones(4)
    nan_forces = labelled(cu, -10.0)
    nan_forces.arrays["REF_forces"][1, 2] = np.nan
    path = tmp_path / "bad.extxyz"
    write(path, [good, no_forces, nan_energy, unknown, bad_stress, nan_forces])
    with pytest.raises(DataError) as e:
        read_samples([path], species=[29])
    msg = str(e.value)
    assert "5 bad frame(s)" in msg
    assert f"{path}:1: no force labels" in msg
    assert f"{path}:2: energy label is nan" in msg
    assert f"{path}:3: element(s) Ar not supported" in msg
    assert f"{path}:4: stress has shape (4,)" in msg
    assert f"{path}:5: non-finite force labels on atoms [1]" in msg
    assert f"{path}:0" not in msg
    # overlapping atoms are found with the neighbour lists
    close = labelled(Atoms("CO", positions=[[0, 0, 0], [0.05, 0, 0]]), -1.0, stress=False)
    write(tmp_path / "close.extxyz", [good, close])
    with pytest.raises(DataError, match=r"close\.extxyz:1: atoms 0 and 1 overlap"):
        InMemoryDataset(read_samples([tmp_path / "close.extxyz"]), cutoff=4.0)
    # forces of the wrong shape (an ASE database row can hold any array)
    import ase.db

    db_path = tmp_path / "bad.db"
    with ase.db.connect(str(db_path)) as db:
        db.write(cu, REF_energy=-1.0, data={"REF_forces": np.zeros((3, 3))})
    with pytest.raises(DataError, match=r"bad\.db:0: forces have shape \(3, 3\), expected \(4, 3\)"):
        read_samples([db_path])
    # and through the CLI, with exit status 2
    from hipot.cli import main

    assert main(["data", "check", str(path)]) == 2


def test_store_random_access(tmp_path):
    frames = [labelled(bulk("Cu", "fcc", a=3.6 + 0.01 * k, cubic=(k % 2 == 0)), -float(k), seed=k, stress=k % 3 > 0)
              for k in range(11)]
    write(tmp_path / "d.extxyz", frames)
    out = build_store([tmp_path / "d.extxyz"], tmp_path / "store", cutoff=4.0, shard_size=4)
    store = H5Store(out)
    ref = InMemoryDataset(read_samples([tmp_path / "d.extxyz"]), 4.0)
    assert len(store) == 11 and len(store.files) == 3 and store.species() == [29]
    np.testing.assert_array_equal(store.sizes(), ref.sizes())
    for i in (10, 0, 5, 4):
        a, b = store[i], ref[i]
        assert a.energy == b.energy
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.forces, b.forces)
        assert (a.stress is None) == (b.stress is None)
        np.testing.assert_array_equal(a.center, b.center)
        np.testing.assert_array_equal(a.shift, b.shift)
    g1, l1 = collate([store[i] for i in range(11)])
    g2, l2 = collate([ref[i] for i in range(11)])
    torch.testing.assert_close(g1.edge_vectors(), g2.edge_vectors())
    torch.testing.assert_close(l1.stress, l2.stress)


def test_statistics():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(30, 3)).astype(float)
    true = np.array([-1.0, -2.5, 0.3])
    np.testing.assert_allclose(fit_element_energies(counts, counts @ true), true, atol=1e-10)
    frames = [labelled(bulk("Cu", "fcc", a=3.6, cubic=True), -3.0 * 4, seed=k) for k in range(3)]
    ds = InMemoryDataset(read_samples_from(frames), cutoff=3.0)
    st = compute_statistics(ds, [29])
    np.testing.assert_allclose(st.element_energies, [-3.0])
    assert math.isclose(st.avg_num_neighbors, 12.0)  # fcc nearest neighbours at 2.55 A
    f = np.concatenate([s.forces for s in ds.samples])
    assert math.isclose(st.force_rms, float(np.sqrt(np.mean(f ** 2))))


def read_samples_from(frames):
    from hipot.training.data import sample_from_atoms

    return [sample_from_atoms(a, LabelKeys())[0] for a in frames]


def test_loss_huber_and_global_normalisation():
    cfg = LossConfig(kind="huber", huber_delta=0.01, energy_weight=1.0, forces_weight=2.0, stress_weight=0.5,
                     stress_unit="kbar")
    frames = [labelled(bulk("Cu", "fcc", a=3.6, cubic=True), -12.0, seed=k) for k in range(2)]
    frames.append(labelled(Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]]), -5.0, seed=5, stress=False))
    ds = InMemoryDataset(read_samples_from(frames), cutoff=3.0)
    graph, labels = collate([ds[i] for i in range(3)])
    rng = np.random.default_rng(1)
    pred = Prediction(energy=labels.energy + torch.from_numpy(rng.normal(size=3)),
                      energies=torch.zeros(graph.num_atoms),
                      forces=labels.forces + torch.from_numpy(rng.normal(size=(graph.num_atoms, 3)) * 0.01),
                      stress=labels.stress + torch.from_numpy(rng.normal(size=(3, 3, 3)) * 1e-5))
    loss, sums = Loss(cfg)(pred, labels, Loss.counts(labels))
    h = torch.nn.HuberLoss(delta=0.01)
    voigt = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
    ref = (h(pred.energy / labels.num_atoms, labels.energy / labels.num_atoms)
           + 2.0 * h(pred.forces, labels.forces)
           + 0.5 * h(pred.stress[:2][:, voigt[0], voigt[1]] * KBAR_PER_EV_A3,
                     labels.stress[:2][:, voigt[0], voigt[1]] * KBAR_PER_EV_A3))
    torch.testing.assert_close(loss, ref)
    assert math.isclose(Loss(cfg).total(sums), float(ref), rel_tol=1e-12)
    # with global counts twice the local ones and 2 processes, each process's share is half... times 2
    loss2, _ = Loss(cfg)(pred, labels, 2 * Loss.counts(labels), world_size=2)
    torch.testing.assert_close(loss2, ref)


def test_sampler_balanced_and_complete():
    sizes = np.array([1, 50, 3, 40, 7, 9, 2, 30, 12, 5, 6, 8, 60, 4])
    s0 = AtomBalancedSampler(sizes, batch_size=3, world_size=2, rank=0, seed=7)
    s1 = AtomBalancedSampler(sizes, batch_size=3, world_size=2, rank=1, seed=7)
    for epoch in range(3):
        b0, b1 = s0.batches(epoch), s1.batches(epoch)
        assert len(b0) == len(b1) == len(s0) == 3  # 14 structures, 6 per step: the last 2 still make a step
        seen = np.concatenate(b0 + b1)
        assert len(set(seen.tolist())) == len(seen) == 14
        for x, y in zip(b0, b1):
            assert len(x) and len(y)
            big = max(sizes[x].sum(), sizes[y].sum())
            assert abs(sizes[x].sum() - sizes[y].sum()) <= sizes[np.concatenate([x, y])].max() or big == 0
    assert [b.tolist() for b in s0.batches(1)] == [b.tolist() for b in s0.batches(1)]  # a function of (seed, epoch)
    assert [b.tolist() for b in s0.batches(1)] != [b.tolist() for b in s0.batches(2)]


def test_lr_schedule():
    assert lr_factor(0, 20, 200, 0.2, 0.0005) == pytest.approx(0.2)
    assert lr_factor(10, 20, 200, 0.2, 0.0005) == pytest.approx(0.6)
    assert lr_factor(20, 20, 200, 0.2, 0.0005) == pytest.approx(1.0)
    assert lr_factor(110, 20, 200, 0.2, 0.0005) == pytest.approx(0.5 * (1 + 0.0005))
    assert lr_factor(200, 20, 200, 0.2, 0.0005) == pytest.approx(0.0005)


def test_validation_epochs_and_eta():
    assert [e for e in range(8) if validated(e, 7, 3)] == [0, 3, 6, 7]  # every 3rd, row 0 and the last
    assert all(validated(e, 5, 1) for e in range(6))
    assert eta_seconds(100, 0.0, 0) is None  # nothing timed yet
    # 40 steps took 8 s: 0.2 s a step, whatever the pauses for validation and checkpoints
    assert eta_seconds(60, 8.0, 40) == pytest.approx(12.0)
    # plus the validations left at their mean time
    assert eta_seconds(60, 8.0, 40, valids_left=3, valid_seconds=2.0, valids_timed=2) == pytest.approx(15.0)
    assert eta_seconds(60, 8.0, 40, valids_left=3) == pytest.approx(12.0)  # no validation timed yet
    assert eta_seconds(0, 8.0, 40, valids_left=0, valid_seconds=2.0, valids_timed=2) == 0.0
    with pytest.raises(ValueError, match="valid_every"):
        load_config(overrides=[{"run": {"valid_every": 0}}])


def test_data_check_unlabelled_frame_says_one_thing(tmp_path, capsys):
    """A frame without labels is reported as unlabelled, once (not also 'energy label is nan' and
    'no force labels'); a frame missing only its energy says so, without the NaN (issue 26, item 8)."""
    from hipot.cli import main

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    no_energy = labelled(cu, -10.0)
    del no_energy.info["REF_energy"]
    path = tmp_path / "unlabelled.extxyz"
    write(path, [labelled(cu, -10.0), cu, no_energy])
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{path}:")]
    assert lines == [f"{path}:1: unlabelled frame: no energy or force labels ('REF_energy', 'REF_forces' or a "
                     "calculator's results)",
                     f"{path}:2: no energy label ('REF_energy' or a calculator energy)"], err


def test_float_settings_written_without_a_dot_are_numbers():
    """`--set optim.lr=1e-4` (and `lr: 1e-4` in a YAML file) is a number, although YAML 1.1 reads
    1e-4 as text; a word where a number belongs is refused by name."""
    import pytest

    from hipot.training.config import load_config, parse_override

    cfg = load_config(None, "distill", [parse_override("optim.lr=1e-4"), {"loss": {"huber_delta": "2e-3"}}])
    assert cfg.optim.lr == 1e-4 and cfg.loss.huber_delta == 2e-3
    assert parse_override("optim.lr=1e-4") == {"optim": {"lr": "1e-4"}}   # the YAML reading this fixes
    with pytest.raises(ValueError, match="optim.lr must be a number"):
        load_config(None, "distill", [parse_override("optim.lr=fast")])
    # a setting that takes a number or a name keeps its names
    assert load_config(None, "distill", [parse_override("statistics.scale=force_rms")]).statistics.scale == "force_rms"
    assert load_config(None, "distill", [parse_override("statistics.scale=2e0")]).statistics.scale == 2.0
