"""Training losses: cross-entropy, focal, beam-power soft labels (seed 003 eq. 9-13), distillation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..numerics import softmax

__all__ = ["beam_power_soft_labels", "focal_loss", "soft_cross_entropy", "combined_loss", "distillation_loss"]


def beam_power_soft_labels(rsrp_a_dbm: np.ndarray, temperature: float = 2.0, eps: float = 1e-12) -> np.ndarray:
    """Soft targets from narrow-beam powers: ``p_c = (P_c + eps)^(1/T) / sum_j (P_j + eps)^(1/T)``.

    ``rsrp_a_dbm`` (N, A) in dBm; powers are normalised per row to the strongest beam (linear, mW ratio)
    before the temperature is applied, so the result does not depend on the path loss. Seed 003 eq. (12).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    rel_db = rsrp_a_dbm - rsrp_a_dbm.max(axis=1, keepdims=True)
    p = 10.0 ** (rel_db / 10.0)
    # (p + eps)^(1/T) computed in the log domain for stability
    return softmax(np.log(p + eps) / temperature, axis=1).astype(np.float32)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss ``-alpha (1 - pi_b*)^gamma log pi_b*`` (seed 003 eq. 10), mean over the batch."""
    logp = F.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (-alpha * (1.0 - logp.exp()).pow(gamma) * logp).mean()


def soft_cross_entropy(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``-sum_c q_c log p_c`` (seed 003 eq. 12), mean over the batch."""
    return -(soft * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def combined_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    soft: torch.Tensor | None = None,
    soft_weight: float = 0.0,
    hard: str = "ce",
) -> torch.Tensor:
    """``(1 - lambda) L_hard + lambda L_soft`` (seed 003 eq. 9); ``hard`` is ``"ce"`` or ``"focal"``."""
    l_hard = focal_loss(logits, target) if hard == "focal" else F.cross_entropy(logits, target)
    if soft is None or soft_weight <= 0:
        return l_hard
    return (1.0 - soft_weight) * l_hard + soft_weight * soft_cross_entropy(logits, soft)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton KD term ``T^2 KL(softmax(t/T) || softmax(s/T))``, mean over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.softmax(teacher_logits / t, -1), reduction="batchmean") * t * t
