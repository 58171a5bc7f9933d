"""Runs the benchmarks for every model, writing raw per-structure JSON as each one finishes
(strict JSON through hipot.io: a missing number is null, read back as NaN by the summaries), and
completes raw results made where an optional package was missing."""
from __future__ import annotations

import dataclasses
import json
import platform
import time
import traceback
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path
from typing import Any, Sequence

from ..io import write_json as _write_json
from .common import BENCHMARKS, Options, log
from .models import ModelHandle, PeerUnavailable, load_hipot, load_peer


def bench_module(name: str):
    return import_module(f"{__package__}.{name}")


def write_json(path: Path, obj: Any) -> None:
    """A raw result, atomically and compactly (a full run holds ~10^5 numbers)."""
    _write_json(path, obj, indent=None)


def raw_path(raw_dir: Path, model: str, bench: str) -> Path:
    safe = model.replace("/", "_").replace(" ", "_")
    return raw_dir / safe / f"{bench}.json"


def device_name(device: str) -> str:
    import torch

    if device in ("auto", "cuda") or device.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_all(model: str, peers: Sequence[str], benchmarks: Sequence[str], opts: Options, raw_dir: Path, *,
            device: str = "auto", dtype: str = "float32", backend: str = "auto", command: str = "",
            resume: bool = False) -> dict[str, Any]:
    """Evaluate `model` (hipot) and each peer on each benchmark; returns the run manifest."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = raw_dir / "run.json"
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if resume and manifest_path.exists() else {}
    # a --resume run (e.g. the peers in a later call) adds to the record of the earlier ones
    manifest.setdefault("commands", []).append(command)
    manifest.setdefault("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.update({"command": command, "device": device_name(device), "dtype": dtype, "quick": opts.quick,
                     "limits": opts.limits, "peer_limits": opts.peer_limits, "benchmarks": list(benchmarks),
                     "main_model": model, "data_dir": str(opts.data_dir)})
    manifest.setdefault("models", {})
    manifest.setdefault("skipped", {})
    loaders = [(model, "hipot")] + [(p, "peer") for p in peers]
    for name, kind in loaders:
        todo = [b for b in benchmarks if not (resume and raw_path(raw_dir, name, b).exists())]
        if not todo:
            log(f"{name}: all benchmarks already in {raw_dir} (resume)")
            continue
        t0 = time.perf_counter()
        try:
            handle: ModelHandle = load_hipot(model, device, dtype, backend) if kind == "hipot" else load_peer(name, device)
        except PeerUnavailable as e:
            log(f"skipping {name}: {e}")
            manifest["skipped"][name] = str(e)
            write_json(manifest_path, manifest)
            continue
        log(f"{name}: loaded in {time.perf_counter() - t0:.1f}s ({handle.version})")
        manifest["models"][name] = {"kind": kind, "version": handle.version, "cutoff": handle.cutoff,
                                    "energy_includes_mp2020": handle.energy_includes_mp2020,
                                    "device": manifest["device"], "command": command}
        for bench in todo:
            t0 = time.perf_counter()
            try:
                scratch = raw_path(raw_dir, name, bench).with_suffix(".parts")
                raw = bench_module(bench).run(handle, dataclasses.replace(opts, scratch=scratch))
            except Exception as e:  # one failing benchmark must not lose the others
                log(f"{bench}: {name}: FAILED: {e!r}")
                raw = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(), "items": []}
            raw.update({"model": name, "bench": bench, "seconds": time.perf_counter() - t0,
                        "device": manifest["device"]})
            write_json(raw_path(raw_dir, name, bench), raw)
            if not raw.get("error"):
                _remove(scratch)
            log(f"{bench}: {name}: {raw['seconds']:.1f}s, raw results in {raw_path(raw_dir, name, bench)}")
        del handle
    manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(manifest_path, manifest)
    return manifest


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def load_raw(raw_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, Any]]]]:
    """(manifest, {bench: {model: raw}}) from a raw folder."""
    manifest = json.loads((raw_dir / "run.json").read_text())
    out: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in BENCHMARKS}
    for sub in sorted(p for p in raw_dir.iterdir() if p.is_dir()):
        for f in sorted(sub.glob("*.json")):
            raw = json.loads(f.read_text())
            out.setdefault(raw["bench"], {})[raw["model"]] = raw
    return manifest, out


def complete_raw(raw_dir: Path, data_dir: Path | None = None) -> list[Path]:
    """Steps a run left open where pymatgen or phonopy were missing (WBM hull distances and RMSDs,
    Si phonon frequencies), done here and written back into the raw files. Returns the files
    changed. This is the only step after a run that writes into the raw folder."""
    from . import phonons, wbm
    from .data import default_data_dir

    manifest, raws = load_raw(raw_dir)
    if data_dir is None:
        data_dir = Path(manifest.get("data_dir", ""))
        if not manifest.get("data_dir") or not data_dir.is_dir():
            data_dir = default_data_dir()
    changed = []
    for bench, mod in (("wbm", wbm), ("phonons", phonons)):
        for m, r in raws.get(bench, {}).items():
            if not r.get("error") and mod.complete(r, data_dir):
                write_json(raw_path(raw_dir, m, bench), r)
                changed.append(raw_path(raw_dir, m, bench))
    return changed
