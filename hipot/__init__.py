"""hipot: HIENet-class machine-learning interatomic potentials."""
from importlib import import_module

__version__ = "0.1.0"

# Imported on first use (PEP 562), so that `import hipot.X` for a light X (the LAMMPS plugin's
# entry point, which runs whenever `lmp` starts) does not import torch.
_EXPORTS = {"HIENet": ".model", "HIPotCalculator": ".calculator", "Evaluator": ".evaluator",
            "ModelConfig": ".config", "fetch": ".pretrained", "load_model": ".pretrained", "predict": ".evaluator"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hipot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
