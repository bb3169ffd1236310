"""Training over many cities and Set A codebooks at once (the randomised corpus), with distillation.

A corpus is a list of :class:`Part` (one city group or one shard each, every part with one Set A
codebook). A codebook-aware module (``forward(x, gains_a=...)``, e.g. :class:`~edgebm.models.angular.AngularBeamNet`)
is trained on parts with *different* Set A codebooks: every mini-batch comes from one part and is scored
through that part's gain patterns, so the angular power spectrum must be right at the resolution of
every codebook, not only of one. Codebook-specific modules (MLP, DS-CNN) take parts that share one
codebook. Loss per batch: ``(1 - soft_weight) CE + soft_weight * soft CE`` (seed-003 beam-power soft
labels at ``soft_temperature``) ``+ distil_weight * T^2 KL(teacher || student)`` when a teacher is given.
Early stopping on the validation parts' loss; the best epoch's weights are kept. Deterministic for a seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .loop import EarlyStopping, TrainConfig, TrainResult, make_optimizer, optimizer_step
from .losses import beam_power_soft_labels, combined_loss, distillation_loss

__all__ = ["Part", "parts_from_dataset", "train_on_parts", "part_logits", "part_top1"]


@dataclass
class Part:
    """Samples sharing one Set A codebook: ``rsrp_b`` (N, n_b) dBm, ``rsrp_a`` (N, n_a) dBm (ground truth),
    ``gains_a`` (n_a, grid^2) the codebook's gain patterns (None for codebook-specific modules), ``name``."""

    rsrp_b: np.ndarray
    rsrp_a: np.ndarray
    gains_a: np.ndarray | None = None
    name: str = ""
    noise_dbm: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rsrp_b = np.ascontiguousarray(self.rsrp_b, dtype=np.float32)
        self.rsrp_a = np.ascontiguousarray(self.rsrp_a, dtype=np.float32)
        if len(self.rsrp_b) != len(self.rsrp_a):
            raise ValueError(f"part {self.name!r}: {len(self.rsrp_b)} rsrp_b rows but {len(self.rsrp_a)} rsrp_a rows")
        if self.gains_a is not None and self.gains_a.shape[0] != self.rsrp_a.shape[1]:
            raise ValueError(f"part {self.name!r}: gains_a has {self.gains_a.shape[0]} beams, rsrp_a {self.rsrp_a.shape[1]}")

    @property
    def best_a(self) -> np.ndarray:
        return self.rsrp_a.argmax(1)

    def __len__(self) -> int:
        return len(self.rsrp_b)

    def take(self, idx: np.ndarray) -> "Part":
        return Part(self.rsrp_b[idx], self.rsrp_a[idx], self.gains_a, self.name,
                    None if self.noise_dbm is None else self.noise_dbm[idx], self.meta)


def parts_from_dataset(ds, gains: bool = True, grid: int | None = None, by: str | None = None) -> list[Part]:
    """:class:`Part` list from a BeamDataset (one part, or one per value of ``ds.arrays[by]``, e.g. ``city_id``);
    ``gains`` adds the Set A gain patterns from the dataset's codebook (``meta["bs_array"]``)."""
    from ..runtime.codebook_scoring import DEFAULT_GRID, gain_patterns

    ga = gain_patterns(ds.codebooks["cb_a_weights"], tuple(ds.meta["bs_array"]), grid or DEFAULT_GRID) if gains else None
    name = str(ds.meta.get("scenario", {}).get("city", "")) if isinstance(ds.meta.get("scenario"), dict) else ""
    if by is None or by not in ds.arrays:
        return [Part(ds.rsrp_b, ds.rsrp_a, ga, name, ds.noise_dbm, dict(ds.meta))]
    out = []
    for v in np.unique(ds.arrays[by]):
        idx = np.flatnonzero(ds.arrays[by] == v)
        out.append(Part(ds.rsrp_b[idx], ds.rsrp_a[idx], ga, f"{name}{by}={int(v)}", ds.noise_dbm[idx], dict(ds.meta)))
    return out


def _forward(module: nn.Module, x: torch.Tensor, gains: torch.Tensor | None) -> torch.Tensor:
    return module(x, gains_a=gains) if gains is not None else module(x)


@torch.no_grad()
def part_logits(module: nn.Module, part: Part, batch_size: int = 4096) -> np.ndarray:
    """Logits (N, n_a) of ``module`` (eval mode) on ``part``, through the part's codebook when it has one."""
    module.eval()
    g = torch.from_numpy(np.asarray(part.gains_a, np.float32)) if part.gains_a is not None else None
    outs = [_forward(module, torch.from_numpy(part.rsrp_b[i:i + batch_size]), g) for i in range(0, len(part), batch_size)]
    return torch.cat(outs).numpy() if outs else np.zeros((0, part.rsrp_a.shape[1]), np.float32)


def part_top1(module: nn.Module, parts: Sequence[Part]) -> float:
    """Sample-weighted top-1 over ``parts``."""
    hit = sum(int((part_logits(module, p).argmax(1) == p.best_a).sum()) for p in parts)
    return hit / max(1, sum(len(p) for p in parts))


def train_on_parts(
    module: nn.Module,
    train: Sequence[Part | Any],
    val: Sequence[Part],
    cfg: TrainConfig,
    teacher: nn.Module | None = None,
    distil_weight: float = 0.5,
    distil_temperature: float = 2.0,
    progress: Callable[[int, int, dict], None] | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train ``module`` in place on ``train`` parts (see the module doc); keeps the best validation epoch.

    ``train`` may also hold shard folders opened with :func:`edgebm.data.open_dataset` (``ShardedDataset``): they
    are streamed, one shard in memory at a time, their batches interleaved with the in-memory parts' (their
    ``meta["bs_array"]`` and Set A codebook give the gain patterns).

    ``teacher`` (frozen, same codebook interface) adds the distillation term on its logits. ``max_seconds``
    stops after the epoch that crosses it (the result records how many epochs ran).
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        return _train(module, list(train), list(val), cfg, teacher, distil_weight, distil_temperature, progress, max_seconds)
    finally:
        torch.set_num_threads(prev)


def _tensors(parts: list[Part], cfg: TrainConfig):
    out = []
    for p in parts:
        soft = beam_power_soft_labels(p.rsrp_a, cfg.soft_temperature) if cfg.soft_weight > 0 else None
        out.append((torch.from_numpy(p.rsrp_b), torch.from_numpy(p.best_a.astype(np.int64)),
                    None if soft is None else torch.from_numpy(soft),
                    None if p.gains_a is None else torch.from_numpy(np.asarray(p.gains_a, np.float32))))
    return out


def _stream_gains(ds) -> torch.Tensor | None:
    from ..runtime.codebook_scoring import gain_patterns

    bs = ds.meta.get("bs_array") if isinstance(getattr(ds, "meta", None), dict) else None
    if bs is None or "cb_a_weights" not in ds.codebooks:
        return None
    return torch.from_numpy(gain_patterns(ds.codebooks["cb_a_weights"], tuple(bs)))


def _epoch_batches(tr, streams, cfg: TrainConfig, rng: np.random.Generator, epoch: int):
    """(x, y, soft, gains) batches of one epoch: the in-memory parts' batches in a random order and, when shard
    folders are streamed, their batches interleaved at random (each source drawn in proportion to what it has left)."""
    batches = [(i, b) for i, (x, _, _, _) in enumerate(tr)
               for b in np.array_split(rng.permutation(len(x)), max(1, int(np.ceil(len(x) / cfg.batch_size))))]
    order = rng.permutation(len(batches))

    def memory():
        for j in order:
            i, idx = batches[j]
            x, y, s, g = tr[i]
            yield x[idx], y[idx], None if s is None else s[idx], g

    if not streams:
        yield from memory()
        return

    def stream(ds, g):
        for b in ds.iter_batches(cfg.batch_size, seed=cfg.seed * 100_003 + epoch, fields=("rsrp_b", "rsrp_a")):
            soft = torch.from_numpy(beam_power_soft_labels(b["rsrp_a"], cfg.soft_temperature)) if cfg.soft_weight > 0 else None
            yield (torch.from_numpy(np.ascontiguousarray(b["rsrp_b"], np.float32)), torch.from_numpy(b["rsrp_a"].argmax(1)), soft, g)

    sources = [memory()] + [stream(ds, g) for ds, g in streams]
    left = np.array([len(batches)] + [int(np.ceil(len(ds) / cfg.batch_size)) for ds, _ in streams], np.float64)
    while left.sum() > 0:
        k = int(rng.choice(len(sources), p=left / left.sum()))
        try:
            yield next(sources[k])
            left[k] -= 1
        except StopIteration:
            left[k] = 0


def _train(module, train, val, cfg, teacher, dw, dt, progress, max_seconds) -> TrainResult:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    streams = [(p, _stream_gains(p)) for p in train if not isinstance(p, Part)]   # shard folders (ShardedDataset)
    tr, va = _tensors([p for p in train if isinstance(p, Part)], cfg), _tensors(val, cfg)
    opt, sched = make_optimizer(module, cfg)
    if teacher is not None:
        teacher.eval()
    stop = EarlyStopping(module, cfg.patience)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        total, count = 0.0, 0
        for xb, yb, sb, g in _epoch_batches(tr, streams, cfg, rng, epoch):
            if len(xb) < 2:
                continue
            logits = _forward(module, xb, g)
            loss = combined_loss(logits, yb, sb, cfg.soft_weight, cfg.hard_loss)
            if teacher is not None:
                with torch.no_grad():
                    tl = _forward(teacher, xb, g)
                loss = loss + dw * distillation_loss(logits, tl, dt)
            total += optimizer_step(opt, loss) * len(xb)
            count += len(xb)
        sched.step()
        vl, vh, vn = 0.0, 0, 0
        module.eval()
        with torch.no_grad():
            for x, y, s, g in va:
                lg = torch.cat([_forward(module, x[k:k + 4096], g) for k in range(0, len(x), 4096)])
                vl += float(combined_loss(lg, y, s, cfg.soft_weight, cfg.hard_loss)) * len(x)
                vh += int((lg.argmax(-1) == y).sum())
                vn += len(x)
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": vl / max(vn, 1), "val_top1": vh / max(vn, 1),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        if progress is not None:
            progress(epoch, cfg.epochs, row)
        if stop.update(row["val_loss"], epoch) or (max_seconds is not None and time.perf_counter() - t0 >= max_seconds):
            break
    stop.restore()
    return TrainResult(stop.best_epoch, epoch, stop.best_loss, time.perf_counter() - t0, history)
