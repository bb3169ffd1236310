"""Mini-batch training loop with early stopping on a validation split and a progress bar."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .losses import combined_loss

__all__ = ["TrainConfig", "TrainResult", "train_classifier", "predict_logits"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_classifier` (echoed into run configs and manifests)."""

    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8  # epochs without validation-loss improvement before stopping
    seed: int = 0
    hard_loss: str = "ce"  # "ce" or "focal"
    soft_weight: float = 0.0  # lambda of seed 003 eq. 9 (0 = hard labels only)
    soft_temperature: float = 2.0
    # torch intra-op threads while training. 1 by default: on a shared 2-core machine two OpenMP
    # threads spin-wait on each other and ran a DS-CNN epoch 10x slower than one thread did
    threads: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size must be >= 1 and lr > 0")
        if self.hard_loss not in ("ce", "focal"):
            raise ValueError(f"hard_loss must be 'ce' or 'focal', got {self.hard_loss!r}")
        if not 0.0 <= self.soft_weight < 1.0:
            raise ValueError(f"soft_weight must be in [0, 1), got {self.soft_weight}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_val_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _loss(logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None, cfg: TrainConfig) -> torch.Tensor:
    if logits.ndim == 3:  # (batch, slots, A) sequence outputs
        a = logits.shape[-1]
        soft = soft.reshape(-1, a) if soft is not None else None
        return combined_loss(logits.reshape(-1, a), y.reshape(-1), soft, cfg.soft_weight, cfg.hard_loss)
    return combined_loss(logits, y, soft, cfg.soft_weight, cfg.hard_loss)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


class EarlyStopping:
    """Keeps the weights of the best validation epoch; ``update`` says when ``patience`` epochs passed without improvement."""

    def __init__(self, module: nn.Module, patience: int) -> None:
        self.module, self.patience = module, int(patience)
        self.best_state, self.best_loss, self.best_epoch, self.bad = copy.deepcopy(module.state_dict()), float("inf"), 0, 0

    def update(self, val_loss: float, epoch: int) -> bool:
        if val_loss < self.best_loss - 1e-6:
            self.best_state, self.best_loss, self.best_epoch, self.bad = copy.deepcopy(self.module.state_dict()), val_loss, epoch, 0
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self) -> None:
        self.module.load_state_dict(self.best_state)
        self.module.eval()


def make_optimizer(module: nn.Module, cfg: TrainConfig):
    """AdamW over the trainable parameters with a cosine learning-rate schedule over ``cfg.epochs``."""
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """One optimiser step on ``loss``; returns the loss value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def predict_logits(module: nn.Module, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Logits of ``module`` in eval mode for inputs ``x`` (numpy), as float32 numpy."""
    module.eval()
    outs = [module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy().astype(np.float32) if outs else np.zeros((0, 0), np.float32)


def train_classifier(
    module: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainConfig,
    soft_train: np.ndarray | None = None,
    soft_val: np.ndarray | None = None,
    extra_loss: Callable[[torch.Tensor, np.ndarray], torch.Tensor] | None = None,
    progress: Any | None = None,
    forward: Callable[[nn.Module, torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor | float]] | None = None,
) -> TrainResult:
    """Train ``module`` (logits out) in place; keeps the weights of the best validation epoch.

    ``soft_*`` are beam-power soft labels (N, A) used when ``cfg.soft_weight > 0``. ``extra_loss(logits, idx)``
    adds a term per batch (e.g. distillation against precomputed teacher logits). ``forward(module, xb, idx)``
    replaces ``module(xb)`` and returns ``(logits, aux_loss)`` (e.g. the position-aided teacher's auxiliary
    losses). Sequence models may return logits (batch, slots, A) with targets (batch, slots): both are
    flattened. ``progress`` is a callable ``progress(epoch, n_epochs, metrics)``.
    """
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        return _train(module, x_train, y_train, x_val, y_val, cfg, soft_train, soft_val, extra_loss, progress, forward)
    finally:
        torch.set_num_threads(prev_threads)


def _train(module, x_train, y_train, x_val, y_val, cfg, soft_train, soft_val, extra_loss, progress, forward) -> TrainResult:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    st = torch.from_numpy(soft_train) if soft_train is not None and cfg.soft_weight > 0 else None
    xv = np.ascontiguousarray(x_val, dtype=np.float32)
    yv = torch.from_numpy(np.asarray(y_val, dtype=np.int64))
    sv = torch.from_numpy(soft_val) if soft_val is not None and cfg.soft_weight > 0 else None
    opt, sched = make_optimizer(module, cfg)
    stop = EarlyStopping(module, cfg.patience)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        total, count = 0.0, 0
        for idx in _batches(len(xt), cfg.batch_size, rng):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            if forward is not None:
                logits, aux = forward(module, xt[idx], idx)
            else:
                logits, aux = module(xt[idx]), 0.0
            loss = _loss(logits, yt[idx], st[idx] if st is not None else None, cfg) + aux
            if extra_loss is not None:
                loss = loss + extra_loss(logits, idx)
            total += optimizer_step(opt, loss) * len(idx)
            count += len(idx)
        sched.step()
        logits_v = torch.from_numpy(predict_logits(module, xv))
        val_loss = float(_loss(logits_v, yv, sv, cfg))
        val_top1 = float((logits_v.argmax(-1) == yv).float().mean())
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss, "val_top1": val_top1}
        history.append(row)
        if progress is not None:
            progress(epoch, cfg.epochs, row)
        if stop.update(val_loss, epoch):
            break
    stop.restore()
    return TrainResult(stop.best_epoch, epoch, stop.best_loss, time.perf_counter() - t0, history)
