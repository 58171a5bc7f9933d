"""Typed model configuration: every size of a HIENet comes from here."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ase.data import chemical_symbols

# The 89 elements of MPtrj, in the official checkpoint's embedding order (alphabetical by symbol).
MPTRJ_SYMBOLS = sorted(
    "Ac Ag Al Ar As Au B Ba Be Bi Br C Ca Cd Ce Cl Co Cr Cs Cu Dy Er Eu F Fe Ga Gd Ge H He Hf Hg Ho I In "
    "Ir K Kr La Li Lu Mg Mn Mo N Na Nb Nd Ne Ni Np O Os P Pa Pb Pd Pm Pr Pt Pu Rb Re Rh Ru S Sb Sc Se Si "
    "Sm Sn Sr Ta Tb Tc Te Th Ti Tl Tm U V W Xe Y Yb Zn Zr".split()
)
MPTRJ_NUMBERS = [chemical_symbols.index(s) for s in MPTRJ_SYMBOLS]


@dataclass
class ModelConfig:
    """Architecture of a HIENet. The defaults are HIENet-V3."""

    species: list[int] = field(default_factory=lambda: list(MPTRJ_NUMBERS))
    """Atomic numbers the model knows, in embedding order."""
    cutoff: float = 5.0
    num_radial: int = 8
    trainable_radial: bool = True
    envelope_p: int = 6
    invariant_channels: int = 384
    num_invariant_layers: int = 1
    hidden_irreps: list[str] = field(
        default_factory=lambda: [
            "512x0e+128x1e+64x2e",
            "512x0e+128x1e+64x2e+32x3e",
            "512x0e+128x1e+64x2e+32x3e",
            "512x0e",
        ]
    )
    """Node irreps after each equivariant block; the last must hold scalars only."""
    sh_lmax: int = 3
    radial_hidden: list[int] = field(default_factory=lambda: [64, 64])
    avg_num_neighbors: float = 35.989574
    readout_hidden: int = 256
    smooth_invariant: bool = False
    """Multiply the invariant layer's messages by the cutoff envelope (energy continuous at the
    cutoff). HIENet-V3 was trained without it."""
    smooth_from: float = 0.0
    """With `smooth_invariant`: the distance (A) where the invariant layer's messages begin to fade.
    0 fades them over the whole range, f(r / cutoff); r_on > 0 leaves them untouched below r_on and
    fades them with the same envelope over [r_on, cutoff], f((r - r_on) / (cutoff - r_on)), so that
    a model made from V3's weights differs from V3 only through neighbours beyond r_on."""
    dropout: float = 0.04
    dropout_attn: float = 0.08

    def __post_init__(self) -> None:
        from .nn.irreps import Irreps

        if not self.species:
            raise ValueError("ModelConfig.species is empty")
        if len(set(self.species)) != len(self.species):
            raise ValueError("ModelConfig.species has duplicates")
        if self.cutoff <= 0:
            raise ValueError("cutoff must be positive")
        if not 0.0 <= self.smooth_from < self.cutoff:
            raise ValueError(f"smooth_from must lie in [0, cutoff), got {self.smooth_from}")
        if self.smooth_from > 0 and not self.smooth_invariant:
            raise ValueError("smooth_from is where a smooth model's messages begin to fade: it needs smooth_invariant")
        if not self.hidden_irreps:
            raise ValueError("hidden_irreps needs at least one block")
        last = Irreps.parse(self.hidden_irreps[-1])
        if last.lmax != 0:
            raise ValueError("the last entry of hidden_irreps must hold scalars only (e.g. '512x0e')")
        for s in self.hidden_irreps:
            Irreps.parse(s)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
