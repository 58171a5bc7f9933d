"""A distillation in pieces across machines: what must travel from one lent machine to the next
(or to a CPU) in files of bounded size, and how a run folder is rebuilt from it.

A travel pack holds
  - the labelled data (data/: manifest, training parts, held-out set) as one xz-compressed tar;
    while the data are unfinished, everything the data stages have kept so far (data/ and md/:
    relaxed parts, MD states and snapshots, label parts), so that a lent machine lost in the
    middle of the data costs only the stage part it was working on,
  - the training state as the EMA weights (float32 safetensors) and the step counters, history and
    resolved config of the run,
each cut into pieces of at most `piece_bytes`, with SHA-256 checksums in pack.json. The Adam
moments and the raw (non-averaged) weights are left behind: they would triple the size. The
continued run starts its raw weights from the EMA weights, takes fresh Adam moments and re-warms
its learning rate (`schedule.rewarm_steps`); the learning-rate schedule and the EMA go on from
where they were."""
from __future__ import annotations

import hashlib
import io
import json
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import torch
import yaml

from ..io import atomic_write, write_json

PACK = "pack.json"
PIECE_BYTES = 15 * 2**20   # under the 16 MiB a file that a lent machine's output folder returns
DATA = "data.tar.xz"
EMA = "ema.safetensors"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_pieces(blob: bytes, dest: Path, name: str, piece_bytes: int) -> list[dict]:
    pieces = []
    for k, start in enumerate(range(0, max(len(blob), 1), piece_bytes)):
        chunk = blob[start:start + piece_bytes]
        path = dest / f"{name}.{k:02d}"
        atomic_write(path, lambda tmp, c=chunk: tmp.write_bytes(c))
        pieces.append({"file": path.name, "bytes": len(chunk), "sha256": _sha256(chunk)})
    return pieces


def _read_pieces(src: Path, pieces: list[dict]) -> bytes:
    parts = []
    for p in pieces:
        path = src / p["file"]
        if not path.is_file():
            raise FileNotFoundError(f"travel pack {src}: {p['file']} is missing")
        data = path.read_bytes()
        if len(data) != p["bytes"] or _sha256(data) != p["sha256"]:
            raise ValueError(f"travel pack {src}: {p['file']} is damaged (size or SHA-256 differs from {PACK})")
        parts.append(data)
    return b"".join(parts)


def _data_tar(run_dir: Path, finished: bool) -> bytes:
    """As tar.xz, paths relative to the run: data/ of a finished run (manifest, labelled parts,
    held-out set), else every kept file of the data stages under data/ and md/ (no temporaries)."""
    buf = io.BytesIO()
    data = run_dir / "data"
    if finished:
        files = [data / "manifest.json", *sorted(data.glob("part-*.extxyz"))]
        if (data / "test.extxyz").exists():
            files.append(data / "test.extxyz")
    else:
        files = sorted(f for d in ("data", "md") for f in (run_dir / d).rglob("*")
                       if f.is_file() and not f.name.startswith("."))
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            info = tar.gettarinfo(str(f), arcname=str(f.relative_to(run_dir)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    return _xz(buf.getvalue())


def _xz(raw: bytes) -> bytes:
    """xz preset 6 on every core when the `xz` program is there (blocks of 8 MiB compress
    side by side), else Python's single-threaded lzma. Measured on this project's 2-core CPU, 25 MB
    of the data stages' extxyz took 25 s in one thread: finished labels (about 100 MB) would take
    the minutes a device call keeps for its pack, where 16 cores take seconds."""
    exe = shutil.which("xz")
    if exe is not None:
        try:
            return subprocess.run([exe, "-6", "-T0", "--block-size=8MiB", "-c"], input=raw,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            pass
    return lzma.compress(raw, preset=6)


def pack(run_dir: str | Path, dest: str | Path, piece_bytes: int | None = None) -> Path:
    """Write the travel pack of the distillation in `run_dir` into `dest` (returns dest/pack.json).
    The finished data's tar is made once and reused from run_dir/travel/ on later packs; unfinished
    data travel as they are (`data_finished` false in pack.json), without a training state."""
    from safetensors.torch import save

    from .run import MANIFEST

    run_dir, dest = Path(run_dir), Path(dest)
    piece_bytes = piece_bytes or PIECE_BYTES
    if not (run_dir / MANIFEST).exists():
        raise ValueError(f"{run_dir}: no distillation data begun (no {MANIFEST}); nothing to pack")
    manifest = json.loads((run_dir / MANIFEST).read_text())
    finished = manifest.get("parts") is not None
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob(f"{DATA}.*"):   # a smaller pack written over a larger one
        old.unlink()
    cached = run_dir / "travel" / DATA
    if finished and not cached.exists():
        blob = _data_tar(run_dir, True)
        atomic_write(cached, lambda tmp: tmp.write_bytes(blob))
    blob = cached.read_bytes() if finished else _data_tar(run_dir, False)
    doc: dict = {"format": "hipot-distill-travel", "version": 1, "recipe": manifest["recipe"],
                 "data_finished": finished, "data": _write_pieces(blob, dest, DATA, piece_bytes)}
    if not finished:
        return write_json(dest / PACK, doc)
    from ..training.trainer import CHECKPOINT

    ck_path = run_dir / "train" / CHECKPOINT
    if ck_path.exists():
        ck = torch.load(ck_path, map_location="cpu", weights_only=True)
        ema = ck["ema"]["model"] if ck.get("ema") else ck["model"]
        weights = save({k: v.detach().float().contiguous() for k, v in ema.items()})
        doc["state"] = {
            "weights": _write_pieces(weights, dest, EMA, piece_bytes),
            "ema_updates": int(ck["ema"]["updates"]) if ck.get("ema") else 0,
            **{k: ck[k] for k in ("model_config", "epoch", "step_in_epoch", "global_step", "history")},
            "train_time": float(ck.get("train_time", 0.0)),
            "config_yaml": (run_dir / "train" / "config.yaml").read_text(),
        }
    return write_json(dest / PACK, doc)


def data_only(src: str | Path, dest: str | Path) -> Path:
    """Copy the travel pack in `src` to `dest` without its training state: the finished data, from
    which another student (another recipe's fade or training) starts afresh. Returns dest/pack.json."""
    src, dest = Path(src), Path(dest)
    doc = json.loads((src / PACK).read_text())
    if not doc.get("data_finished", True):
        raise ValueError(f"travel pack {src}: the data are unfinished; it has no training state to drop")
    doc.pop("state", None)
    dest.mkdir(parents=True, exist_ok=True)
    for piece in doc["data"]:
        shutil.copyfile(src / piece["file"], dest / piece["file"])
    return write_json(dest / PACK, doc)


def _relocate_manifest(run_dir: Path) -> dict:
    """Point the unpacked manifest's file names at this run folder; returns it."""
    from .run import MANIFEST

    path = run_dir / MANIFEST
    manifest = json.loads(path.read_text())
    data = run_dir / "data"
    manifest["parts"] = [str(data / Path(p).name) for p in manifest["parts"]]
    if manifest.get("test"):
        manifest["test"] = str(data / Path(manifest["test"]).name)
    write_json(path, manifest)
    return manifest


def unpack(src: str | Path, run_dir: str | Path) -> int:
    """Rebuild `run_dir` from the travel pack in `src`: its data/ (with md/ for unfinished data)
    and, when the pack carries a training state, train/config.yaml and a checkpoint that the
    trainer resumes (raw weights = EMA weights, no optimiser state). A run folder that already
    holds as many training steps as the pack, or more, is left alone; so is one with data begun
    when the pack's data are unfinished (this folder is as far, or further: the data stages only
    add files). Returns the step the run continues from."""
    from safetensors.torch import load

    from ..training.loss import SUM_NAMES
    from ..training.trainer import CHECKPOINT

    src, run_dir = Path(src), Path(run_dir)
    doc = json.loads((src / PACK).read_text())
    if doc.get("format") != "hipot-distill-travel":
        raise ValueError(f"{src / PACK} is not a hipot distillation travel pack")
    finished = doc.get("data_finished", True)
    if not finished and (run_dir / "data" / "manifest.json").exists():
        return 0
    ck_path = run_dir / "train" / CHECKPOINT
    have = int(torch.load(ck_path, map_location="cpu", weights_only=True)["global_step"]) if ck_path.exists() else -1
    state = doc.get("state")
    step = int(state["global_step"]) if state else 0
    if have >= step and (run_dir / "data" / "manifest.json").exists():
        return max(have, 0)
    blob = _read_pieces(src, doc["data"])
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:xz") as tar:
        for member in tar.getmembers():
            allowed = ("data/", "md/") if not finished else ("data/",)
            if not member.isfile() or not member.name.startswith(allowed) or ".." in Path(member.name).parts:
                raise ValueError(f"travel pack {src}: unexpected member {member.name!r} in {DATA}")
            data = tar.extractfile(member).read()
            atomic_write(run_dir / member.name, lambda tmp, d=data: tmp.write_bytes(d))
    if not finished:   # the stages go on from these files; nothing to relocate yet
        return 0
    atomic_write(run_dir / "travel" / DATA, lambda tmp: tmp.write_bytes(blob))
    manifest = _relocate_manifest(run_dir)
    if state is None:
        return 0
    weights = load(_read_pieces(src, state["weights"]))
    cfg = yaml.safe_load(state["config_yaml"])
    # the paths the run was made with name the other machine's folders
    cfg["data"]["train"] = manifest["parts"]
    cfg["data"]["test"] = [manifest["test"]] if manifest.get("test") else []
    cfg["run"]["out"] = str(run_dir / "train")
    cfg.setdefault("finetune", {})["start"] = str(run_dir / "student_init")
    text = yaml.safe_dump(cfg, sort_keys=False)
    atomic_write(run_dir / "train" / "config.yaml", lambda tmp: tmp.write_text(text))
    ck = {"model_config": state["model_config"], "model": weights, "optimizer": None,
          "ema": {"model": weights, "updates": int(state["ema_updates"])},
          "epoch": int(state["epoch"]), "step_in_epoch": int(state["step_in_epoch"]), "global_step": step,
          "train_sums": torch.zeros(len(SUM_NAMES), dtype=torch.float64),
          # strict JSON wrote the history's missing numbers as null
          "history": [{k: float("nan") if v is None else v for k, v in row.items()} for row in state["history"]],
          "rng": [torch.get_rng_state()], "world_size": 1, "train_time": float(state["train_time"])}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(ck, fh)

    atomic_write(ck_path, write)
    return step


def export_model(src: str | Path, dest: str | Path, metadata: dict | None = None) -> Path:
    """The model a travel pack carries (its EMA weights, in its architecture) saved as a hipot model
    folder at `dest` (config.json with checksums + model.safetensors); returns dest."""
    from safetensors.torch import load

    from ..checkpoint import save_model
    from ..config import ModelConfig
    from ..model import HIENet

    src = Path(src)
    doc = json.loads((src / PACK).read_text())
    state = doc.get("state")
    if state is None:
        raise ValueError(f"travel pack {src} holds data only: no trained model yet")
    net = HIENet(ModelConfig.from_dict(state["model_config"]))
    net.load_state_dict(load(_read_pieces(src, state["weights"])))
    meta = {"trained_by": "hipot distill", "steps": int(state["global_step"]), "epochs_done": int(state["epoch"]),
            **(metadata or {})}
    return save_model(net.float().eval(), dest, metadata=meta)
