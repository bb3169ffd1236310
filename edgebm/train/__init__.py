"""Training: loop with early stopping, losses (CE, focal, beam-power soft labels, distillation)."""

from .loop import TrainConfig, TrainResult, predict_logits, train_classifier
from .losses import beam_power_soft_labels, combined_loss, distillation_loss, focal_loss, soft_cross_entropy

__all__ = [
    "TrainConfig",
    "TrainResult",
    "predict_logits",
    "train_classifier",
    "beam_power_soft_labels",
    "combined_loss",
    "distillation_loss",
    "focal_loss",
    "soft_cross_entropy",
]
