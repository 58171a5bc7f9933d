"""Training and fine-tuning of HIENet models (`hipot train`, `hipot finetune`, `hipot data build`).

    from hipot.training import load_config, train
    cfg = load_config("train.yaml", overrides=[{"run": {"epochs": 10}}])
    model_dir = train(cfg)
"""
from .config import PRESETS, TrainConfig, load_config
from .data import DataError
from .trainer import Trainer, resume, train

__all__ = ["PRESETS", "DataError", "TrainConfig", "Trainer", "load_config", "resume", "train"]
