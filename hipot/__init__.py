"""hipot: HIENet-class machine-learning interatomic potentials."""
from .calculator import HIPotCalculator
from .config import ModelConfig
from .evaluator import Evaluator, predict
from .model import HIENet
from .pretrained import fetch, load_model

__version__ = "0.1.0"
__all__ = ["HIENet", "HIPotCalculator", "Evaluator", "ModelConfig", "fetch", "load_model", "predict", "__version__"]
