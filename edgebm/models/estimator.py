"""One sklearn-style contract over every model family.

``BeamModel.fit(train, val)`` takes :class:`~edgebm.data.BeamDataset` splits (not bare ``X, y``:
soft labels need ``rsrp_a``, the position-aided teacher needs ``pos``, the temporal model needs
trajectories); ``predict(X)`` and ``predict_proba(X)`` take Set B RSRP in dBm, (N, |B|)
(temporal: (N, L, |B|) windows; returns the current-slot beam). ``save(run_dir)`` /
:func:`load_model` persist a model with its config so it can be rebuilt and exported.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import atomic_path, atomic_write
from ..data import BeamDataset
from ..numerics import softmax
from ..train.loop import TrainConfig, TrainResult

from ..errors import ModelError

__all__ = [
    "NEURAL_FAMILIES",
    "CLASSICAL_FAMILIES",
    "ALL_FAMILIES",
    "BeamModel",
    "TorchBeamModel",
    "SklearnBeamModel",
    "make_model",
    "load_model",
    "ModelError",
]

NEURAL_FAMILIES = ("mlp", "dscnn", "teacher", "teacher_pos", "gru", "angular")
CLASSICAL_FAMILIES = ("svm_linear", "svm_rbf", "tree", "gbt", "sgd")
ALL_FAMILIES = NEURAL_FAMILIES + CLASSICAL_FAMILIES


def _module_class(family: str):
    if family == "mlp":
        from .mlp import BeamMLP

        return BeamMLP
    if family == "dscnn":
        from .dscnn import BeamDSCNN

        return BeamDSCNN
    if family == "teacher":
        from .teacher import BeamTeacherCNN

        return BeamTeacherCNN
    if family == "teacher_pos":
        from .fusion import PositionAidedTeacher

        return PositionAidedTeacher
    if family == "gru":
        from .temporal import BeamGRU

        return BeamGRU
    if family == "angular":
        from .angular import AngularBeamNet

        return AngularBeamNet
    raise ModelError(f"unknown neural family {family!r} (known: {', '.join(NEURAL_FAMILIES)})")


@dataclass
class BeamModel:
    """Common state: family, Set B / Set A sizes, model kwargs and training record."""

    family: str
    n_in: int
    n_out: int
    params: dict[str, Any] = field(default_factory=dict)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    result: TrainResult | None = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Best Set A beam per row, (N,)."""
        return self.decision_scores(x).argmax(-1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.decision_scores(x).astype(np.float64)).astype(np.float32)

    def decision_scores(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"family": self.family, "n_in": self.n_in, "n_out": self.n_out, "params": self.params, "train": self.train_cfg.to_dict()}


@dataclass
class TorchBeamModel(BeamModel):
    """A PyTorch family trained with :func:`edgebm.train.train_classifier`."""

    module: Any = None
    history: int = 8
    horizon: int = 3

    def __post_init__(self) -> None:
        if self.module is None:
            import torch

            torch.manual_seed(self.train_cfg.seed)
            cls = _module_class(self.family)
            self.module = cls(self.n_in, self.n_out, **self.params)
            if self.family == "gru":
                self.history, self.horizon = self.module.history, self.module.horizon

    def _xy(self, ds: BeamDataset) -> tuple[np.ndarray, np.ndarray]:
        if self.family != "gru":
            return ds.rsrp_b, ds.best_a
        from .temporal import make_sequences

        if ds.traj_id is None:
            raise ModelError("family 'gru' needs a trajectory dataset (edgebm data generate --trajectories ...)")
        x, y = make_sequences(ds.rsrp_b, ds.best_a, ds.traj_id, ds.t, self.history, self.horizon)
        if len(x) == 0:
            raise ModelError(f"no trajectory is longer than history+horizon = {self.history + self.horizon} samples")
        return x, y

    def fit(
        self,
        train: BeamDataset,
        val: BeamDataset,
        teacher_logits: np.ndarray | None = None,
        distil_weight: float = 0.5,
        distil_temperature: float = 4.0,
        progress: Callable[[int, int, dict], None] | None = None,
    ) -> "TorchBeamModel":
        """Train on ``train`` with early stopping on ``val``. ``teacher_logits`` (len(train), A) adds
        the distillation term ``distil_weight * T^2 KL`` (Hinton) on top of the hard/soft-label loss."""
        import torch

        from ..train import beam_power_soft_labels, distillation_loss, train_classifier

        cfg = self.train_cfg
        if hasattr(self.module, "set_codebooks"):  # codebook-aware families read the gain patterns from the data
            self.module.set_codebooks(train.codebooks, train.meta["bs_array"])
        xt, yt = self._xy(train)
        xv, yv = self._xy(val)
        use_soft = cfg.soft_weight > 0 and self.family != "gru"
        soft_t = beam_power_soft_labels(train.rsrp_a, cfg.soft_temperature) if use_soft else None
        soft_v = beam_power_soft_labels(val.rsrp_a, cfg.soft_temperature) if use_soft else None
        forward = None
        if self.family == "teacher_pos":
            from .fusion import normalise_positions

            pos_n, _, _ = normalise_positions(train.pos)  # zero-mean, unit-variance regression target per axis
            pos_t = torch.from_numpy(pos_n)

            def forward(module, xb, idx):
                return module.aux_loss(xb, pos_t[idx])

        extra = None
        if teacher_logits is not None:
            tl = torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32))
            if len(tl) != len(xt):
                raise ModelError(f"teacher logits have {len(tl)} rows, training set has {len(xt)}")

            def extra(logits, idx):
                return distil_weight * distillation_loss(logits, tl[idx], distil_temperature)

        self.result = train_classifier(
            self.module, xt, yt, xv, yv, cfg, soft_t, soft_v, extra_loss=extra, progress=progress, forward=forward
        )
        return self

    def decision_scores(self, x: np.ndarray) -> np.ndarray:
        from ..train import predict_logits

        out = predict_logits(self.module, np.asarray(x, dtype=np.float32))
        return out[:, 0, :] if out.ndim == 3 else out  # temporal: the current slot

    def sequence_scores(self, x: np.ndarray) -> np.ndarray:
        """Temporal family: logits for the current and future slots, (N, horizon+1, A)."""
        from ..train import predict_logits

        return predict_logits(self.module, np.asarray(x, dtype=np.float32))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "params": self.module.config() if hasattr(self.module, "config") else self.params}

    def save(self, run_dir: str | Path) -> Path:
        import torch

        run_dir = Path(run_dir)
        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save({"config": self.config(), "state_dict": self.module.state_dict()}, tmp)
        return run_dir / "model.pt"


@dataclass
class SklearnBeamModel(BeamModel):
    """A scikit-learn family (see :mod:`edgebm.models.classical`)."""

    est: Any = None
    use_position: bool = False

    def __post_init__(self) -> None:
        if self.est is None:
            from .classical import ClassicalBeamModel

            self.est = ClassicalBeamModel(self.family, self.n_in, self.n_out, seed=self.train_cfg.seed,
                                          use_position=self.use_position, **self.params)

    def _x(self, ds: BeamDataset) -> np.ndarray:
        return np.concatenate([ds.rsrp_b, ds.pos], 1) if self.use_position else ds.rsrp_b

    def fit(self, train: BeamDataset, val: BeamDataset | None = None, progress: Callable | None = None, **_: Any) -> "SklearnBeamModel":
        import time

        t0 = time.perf_counter()
        xv, yv = (self._x(val), val.best_a) if val is not None else (None, None)
        self.est.fit(self._x(train), train.best_a, xv, yv)
        self.result = TrainResult(best_epoch=1, epochs_run=1, best_val_loss=float("nan"), seconds=time.perf_counter() - t0)
        if progress is not None:
            progress(1, 1, {})
        return self

    def decision_scores(self, x: np.ndarray) -> np.ndarray:
        """(N, A) logits (softmax = predict_proba). ``x``: Set B RSRP, plus position columns when ``use_position``."""
        return self.est.decision_scores(x)

    def save(self, run_dir: str | Path) -> Path:
        run_dir = Path(run_dir)
        return atomic_write(run_dir / "model.pkl", lambda f: pickle.dump({"config": self.config(), "use_position": self.use_position, "est": self.est}, f))


def make_model(family: str, n_in: int, n_out: int, train_cfg: TrainConfig | None = None, **params: Any) -> BeamModel:
    """Build an untrained model of ``family`` for |B| = ``n_in`` -> |A| = ``n_out``."""
    cfg = train_cfg or TrainConfig()
    if family in NEURAL_FAMILIES:
        return TorchBeamModel(family, n_in, n_out, params=params, train_cfg=cfg)
    if family in CLASSICAL_FAMILIES:
        use_pos = bool(params.pop("use_position", False))
        return SklearnBeamModel(family, n_in, n_out, params=params, train_cfg=cfg, use_position=use_pos)
    raise ModelError(f"unknown model family {family!r} (known: {', '.join(ALL_FAMILIES)})")


def load_model(run_dir: str | Path) -> BeamModel:
    """Rebuild a trained model from a run folder written by ``edgebm train``."""
    run_dir = Path(run_dir)
    if (run_dir / "model.pt").is_file():
        import torch

        blob = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        c = blob["config"]
        cfg = TrainConfig(**c["train"])
        params = {k: v for k, v in c["params"].items() if k not in ("n_in", "n_out")}
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        params = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, tuple) else v) for k, v in params.items()}
        m = TorchBeamModel(c["family"], c["n_in"], c["n_out"], params=params, train_cfg=cfg)
        m.module.load_state_dict(blob["state_dict"])
        m.module.eval()
        return m
    if (run_dir / "model.pkl").is_file():
        with open(run_dir / "model.pkl", "rb") as f:
            blob = pickle.load(f)  # our own run folder; never load runs from untrusted sources
        c = blob["config"]
        return SklearnBeamModel(c["family"], c["n_in"], c["n_out"], params=c["params"], train_cfg=TrainConfig(**c["train"]),
                                est=blob["est"], use_position=blob["use_position"])
    raise ModelError(f"{run_dir}: not a run folder (no model.pt or model.pkl)")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ModelError(f"{run_dir}: not a run folder (no config.json)")
    return json.loads(path.read_text())
