"""The numbers of a report, computed from a raw-results folder without writing anything: every
benchmark's summary for each model on its own structures and on the structures all models share,
and the published numbers they are compared with. `report.write_report` renders them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dcdft, diatomics, elastic, heat_capacity, kappa, phonons, wbm
from .data import default_data_dir, load_published_metrics
from .runner import load_raw

ID_KEY = {"wbm": "material_id", "dcdft": "element", "elastic": "mp_id", "diatomics": "element",
          "heat_capacity": "mp_id", "kappa": "mp_id"}
SUMMARIZE = {"wbm": wbm.summarize, "dcdft": dcdft.summarize, "elastic": elastic.summarize,
             "diatomics": diatomics.summarize, "phonons": phonons.summarize,
             "heat_capacity": heat_capacity.summarize, "kappa": kappa.summarize}
PUBLISHED_CARD = {"hienet-v3": "hienet", "sevennet-0": "sevennet-0", "chgnet": "chgnet-0.3.0"}


@dataclass
class RunSummary:
    manifest: dict[str, Any]
    raws: dict[str, dict[str, dict[str, Any]]]        # bench -> model -> raw result
    data_dir: Path
    published: dict[str, dict] = field(default_factory=dict)      # model cards (mbd_model_metrics)
    own: dict[str, dict[str, dict | None]] = field(default_factory=dict)      # each model, its structures
    common_ids: dict[str, set | None] = field(default_factory=dict)
    common: dict[str, dict[str, dict | None]] = field(default_factory=dict)   # all models, shared structures
    kappa_published: dict[str, dict[str, dict | None]] = field(default_factory=dict)  # model -> key -> numbers

    @property
    def models(self) -> list[str]:
        return list(self.manifest.get("models", {}))

    @property
    def main(self) -> str:
        return self.manifest.get("main_model", "")

    @property
    def quick(self) -> bool:
        return bool(self.manifest.get("quick"))

    @property
    def commands(self) -> list[str]:
        return self.manifest.get("commands") or [self.manifest.get("command", "")]


def ids_of(raw: dict[str, Any], bench: str) -> set[str]:
    key = ID_KEY[bench]
    return {it[key] for it in raw.get("items", []) if key in it and not it.get("failed")}


def common_ids(by_model: dict[str, dict[str, Any]], bench: str) -> set[str] | None:
    sets = [ids_of(r, bench) for r in by_model.values() if not r.get("error")]
    return set.intersection(*sets) if sets else None


def _data_dir(manifest: dict[str, Any]) -> Path:
    """Where the run read its data, else the default (for the published numbers and PBE curves)."""
    d = Path(manifest.get("data_dir", ""))
    return d if manifest.get("data_dir") and d.is_dir() else default_data_dir()


def summarize_run(raw_dir: Path) -> RunSummary:
    manifest, raws = load_raw(raw_dir)
    order = list(manifest.get("models", {}))
    raws = {b: dict(sorted(by.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
            for b, by in raws.items()}
    s = RunSummary(manifest, raws, _data_dir(manifest))
    try:
        s.published = load_published_metrics(s.data_dir)
    except Exception:  # noqa: BLE001 (published numbers are context; a report without them still stands)
        s.published = {}
    for b, by in raws.items():
        s.own[b] = {m: (SUMMARIZE[b](r) if not r.get("error") else None) for m, r in by.items()}
        if b in ID_KEY and by:
            s.common_ids[b] = common_ids(by, b)
            s.common[b] = {m: (SUMMARIZE[b](r, s.common_ids[b]) if not r.get("error") else None)
                           for m, r in by.items()}
    for m, r in raws.get("kappa", {}).items():
        ids = [it["mp_id"] for it in r.get("items", [])]
        keys = dict.fromkeys(["hienet", kappa.PUBLISHED_KEY.get(m, m)])
        try:
            s.kappa_published[m] = {k: kappa.published(s.data_dir, k, ids) for k in keys}
        except OSError:  # the published file is not where the run read its data
            s.kappa_published[m] = {}
    return s
