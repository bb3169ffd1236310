"""Knowledge distillation: train a student on hard labels plus a teacher's softened logits (Hinton KD).

Thin on purpose: the teacher's logits are computed once (:func:`edgebm.train.loop.predict_logits`) and
the KD term ``alpha * T^2 KL(softmax(t/T) || softmax(s/T))`` (:func:`edgebm.train.losses.distillation_loss`)
is added per batch through ``train_classifier``'s ``extra_loss`` hook, so the student's loop, early
stopping and seeding are exactly those of plain training (``alpha=0`` reproduces it bit for bit).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..train.loop import TrainConfig, TrainResult, predict_logits, train_classifier
from ..train.losses import distillation_loss

__all__ = ["distill"]


def distill(
    teacher_module: nn.Module,
    student_module: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    temperature: float = 4.0,
    alpha: float = 0.5,
    soft_train: np.ndarray | None = None,
    soft_val: np.ndarray | None = None,
    progress=None,
) -> TrainResult:
    """Train ``student_module`` in place with ``loss = hard (+ soft-label) loss + alpha * KD(student, teacher)``.

    Teacher and student must produce logits of the same shape for ``x_train`` (e.g. (N, A), or
    (N, slots, A) for sequence models). ``alpha=0`` skips the KD term (plain :func:`train_classifier`).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    extra = None
    if alpha > 0:
        t_logits = torch.from_numpy(predict_logits(teacher_module, np.ascontiguousarray(x_train, dtype=np.float32)))
        if len(t_logits) != len(x_train):
            raise ValueError(f"teacher gave {len(t_logits)} logit rows for {len(x_train)} training samples")

        def extra(logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
            t = t_logits[torch.from_numpy(np.asarray(idx))]
            if t.shape != logits.shape:
                raise ValueError(f"teacher logits {tuple(t.shape)} and student logits {tuple(logits.shape)} differ")
            a = t.shape[-1]
            return alpha * distillation_loss(logits.reshape(-1, a), t.reshape(-1, a), temperature)

    return train_classifier(
        student_module, x_train, y_train, x_val, y_val, cfg,
        soft_train=soft_train, soft_val=soft_val, extra_loss=extra, progress=progress,
    )
