"""Pretraining of the shipped weights: teacher, distilled student and meta-learned head (``python -m bench pretrain``).

1. Corpus: :func:`~edgebm.train.corpus.codebook_mix` — randomised cities (never city0..city3), 0-30 dB, Set A
   codebooks of several sizes and layouts (half the samples with the 8x8 DFT the bundles ship with).
2. Teacher: a wide :class:`~edgebm.models.angular.AngularBeamNet` trained on every part through its own
   codebook's gain patterns (:func:`~edgebm.train.multicodebook.train_on_parts`), soft labels; then a short
   fine-tune on the DFT-64 parts at a lower learning rate (the shipped codebook).
3. Student: a smartphone-size angular model trained the same way with the teacher's logits as an extra
   (distillation) target.
4. Meta head: Reptile (:func:`~edgebm.train.meta.reptile_head_init`) of the student's on-device head over
   per-city tasks of the DFT-64 parts, labels as the UE collects them.

Everything is seeded and single-threaded, so the same config gives the same bytes on one machine.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["PretrainConfig", "pretrain", "QUICK"]


@dataclass(frozen=True)
class PretrainConfig:
    """Sizes and seeds of :func:`pretrain` (echoed into every file's metadata)."""

    seed: int = 0
    n_samples: int = 300_000
    cities: int = 2000
    parts: int = 8
    dft64_share: float = 0.5
    teacher_hidden: tuple[int, ...] = (1024, 1024)
    student_hidden: tuple[int, ...] = (256, 256)
    teacher_epochs: int = 10
    finetune_epochs: int = 2
    student_epochs: int = 8
    batch_size: int = 512
    lr: float = 2e-3
    soft_weight: float = 0.5
    distil_weight: float = 1.0
    meta_steps: int = 3000
    val_fraction: float = 0.03
    notes: dict = field(default_factory=dict)


QUICK = PretrainConfig(n_samples=12_000, cities=20, teacher_hidden=(128, 128), student_hidden=(64, 64), teacher_epochs=2,
                       finetune_epochs=1, student_epochs=2, meta_steps=100)


def _split(parts, frac: float, seed: int):
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for p in parts:
        perm = rng.permutation(len(p))
        k = max(2, int(round(frac * len(p))))
        va.append(p.take(np.sort(perm[:k])))
        tr.append(p.take(np.sort(perm[k:])))
    return tr, va


def pretrain(cfg: PretrainConfig, out_dir: str | Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole pretraining and write ``angular_teacher.npz``, ``angular_student.npz``, ``meta_head.npz`` to
    ``out_dir``. Returns a summary (timings, validation top-1 per stage, corpus)."""
    import torch

    from ..baselines import exhaustive_search
    from ..models.angular import AngularBeamNet, codebook_gains
    from ..models.pretrained import module_arrays, save_weights
    from .corpus import codebook_mix
    from .loop import TrainConfig
    from .meta import HeadTask, reptile_head_init
    from .multicodebook import part_top1, parts_from_dataset, train_on_parts

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"config": asdict(cfg)}
    progress(f"corpus: {cfg.n_samples} samples, {cfg.parts} parts x {cfg.cities} random cities")
    datasets = codebook_mix(cfg.n_samples, cfg.seed, cfg.cities, cfg.parts, cfg.dft64_share)
    parts = [p for d in datasets for p in parts_from_dataset(d)]
    for p, d in zip(parts, datasets):
        p.name = f"{d.meta['scenario']['codebook_a']}{d.n_a}-seed{d.meta['seed']}"
    train, val = _split(parts, cfg.val_fraction, cfg.seed)
    dft = [i for i, d in enumerate(datasets) if d.n_a == 64 and d.meta["scenario"]["codebook_a"] == "dft"]
    summary["corpus"] = [{"part": p.name, "n": len(p), "scenario": d.meta["scenario"]} for p, d in zip(parts, datasets)]
    summary["seconds_corpus"] = round(time.perf_counter() - t0, 1)
    gb, ga = codebook_gains(datasets[dft[0]].codebooks, datasets[dft[0]].meta["bs_array"])

    def tc(epochs: int, lr: float, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, soft_weight=cfg.soft_weight, seed=seed,
                           patience=max(3, epochs))

    def log(stage):
        return lambda e, n, row: progress(f"{stage} epoch {e}/{n}: val top-1 {row['val_top1']:.4f} ({row['seconds']:.0f} s)")

    # teacher: all codebooks, then a short low-LR fine-tune on the shipped DFT-64 codebook
    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    teacher = AngularBeamNet(16, 64, gb, ga, hidden=cfg.teacher_hidden)
    r1 = train_on_parts(teacher, train, val, tc(cfg.teacher_epochs, cfg.lr, cfg.seed), progress=log("teacher"))
    r2 = train_on_parts(teacher, [train[i] for i in dft], [val[i] for i in dft], tc(cfg.finetune_epochs, cfg.lr / 10, cfg.seed + 1),
                        progress=log("teacher fine-tune"))
    summary["teacher"] = {"val_top1_all": part_top1(teacher, val), "val_top1_dft64": part_top1(teacher, [val[i] for i in dft]),
                          "epochs": r1.epochs_run + r2.epochs_run, "seconds": round(time.perf_counter() - t, 1)}
    progress(f"teacher: {summary['teacher']}")

    # student: same corpus, distilled from the teacher
    t = time.perf_counter()
    torch.manual_seed(cfg.seed + 2)
    student = AngularBeamNet(16, 64, gb, ga, hidden=cfg.student_hidden)
    for p in teacher.parameters():
        p.requires_grad_(False)
    s1 = train_on_parts(student, train, val, tc(cfg.student_epochs, cfg.lr, cfg.seed + 2), teacher=teacher,
                        distil_weight=cfg.distil_weight, progress=log("student"))
    s2 = train_on_parts(student, [train[i] for i in dft], [val[i] for i in dft], tc(cfg.finetune_epochs, cfg.lr / 10, cfg.seed + 3),
                        teacher=teacher, distil_weight=cfg.distil_weight, progress=log("student fine-tune"))
    summary["student"] = {"val_top1_all": part_top1(student, val), "val_top1_dft64": part_top1(student, [val[i] for i in dft]),
                          "epochs": s1.epochs_run + s2.epochs_run, "seconds": round(time.perf_counter() - t, 1)}
    progress(f"student: {summary['student']}")

    # meta head: Reptile over per-city tasks of the DFT-64 parts, labels from a full noisy sweep (as the UE gets them)
    t = time.perf_counter()
    rng = np.random.default_rng(cfg.seed + 4)
    tasks = []
    for i in dft:
        d = datasets[i]
        with torch.no_grad():
            feats = torch.cat([student.forward_features(torch.from_numpy(d.rsrp_b[k:k + 8192])) for k in range(0, len(d), 8192)]).numpy()
        labels = exhaustive_search(d.rsrp_a, d.noise_dbm, rng).chosen
        for c in np.unique(d.city_id):
            idx = np.flatnonzero(d.city_id == c)
            if len(idx) >= 30:
                tasks.append(HeadTask(feats[idx], labels[idx]))
    w0 = student.head.weight.detach().numpy().copy()
    b0 = student.head.bias.detach().numpy().copy()
    wm, bm = reptile_head_init(tasks, w0, b0, meta_steps=cfg.meta_steps, seed=cfg.seed + 5)
    summary["meta_head"] = {"tasks": len(tasks), "meta_steps": cfg.meta_steps, "seconds": round(time.perf_counter() - t, 1)}
    progress(f"meta head: {summary['meta_head']}")

    summary["seconds_total"] = round(time.perf_counter() - t0, 1)

    def result(stage: str) -> dict:   # timings stay out of the files: the same seed must give the same bytes
        return {k: v for k, v in summary[stage].items() if k != "seconds"}

    common = {"pretrain": asdict(cfg), "corpus": summary["corpus"], "command": "python -m bench pretrain"}
    tr_meta = {"batch_size": cfg.batch_size, "lr": cfg.lr, "soft_weight": cfg.soft_weight, "seed": cfg.seed}
    save_weights(out_dir / "angular_teacher.npz", module_arrays(teacher),
                 {**common, "family": "angular", "role": "teacher", "config": teacher.config(), "train": tr_meta, "result": result("teacher")})
    save_weights(out_dir / "angular_student.npz", module_arrays(student),
                 {**common, "family": "angular", "role": "student", "config": student.config(), "train": tr_meta,
                  "result": result("student"), "distilled_from": "angular_teacher.npz"})
    save_weights(out_dir / "meta_head.npz", {"W": wm.astype(np.float32), "b": bm.astype(np.float32)},
                 {**common, "role": "meta_head", "for": "angular_student.npz", "n_a": 64, "result": result("meta_head")})
    return summary
