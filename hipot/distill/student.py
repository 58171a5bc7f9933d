"""The student's starting point: the teacher's architecture and weights with the invariant
layer's messages faded out at the cutoff (`ModelConfig.smooth_invariant`)."""
from __future__ import annotations

from pathlib import Path


def smooth_student(teacher: str | Path, out: str | Path, smooth_from: float = 0.0) -> Path:
    """The teacher with `smooth_invariant` on (its messages fading from `smooth_from` A to the
    cutoff), saved as a model folder. It differs from the teacher through the neighbours in the
    fading range, which is what the distillation then corrects."""
    from ..checkpoint import save_model
    from ..config import ModelConfig
    from ..model import HIENet
    from ..pretrained import load_model

    net = load_model(str(teacher), device="cpu", dtype="float32", backend="torch")
    cfg = ModelConfig.from_dict({**net.config.to_dict(), "smooth_invariant": True,
                                  "smooth_from": smooth_from})
    student = HIENet(cfg)
    student.load_state_dict(net.state_dict())
    return save_model(student, out, metadata={"distilled_from": str(teacher), "stage": "initial",
                                                 "smooth_from": smooth_from})
