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
from .registry import FamilySpec, UnknownFamilyError, family_names, get_family, load_builder

__all__ = [
    "NEURAL_FAMILIES",
    "CLASSICAL_FAMILIES",
    "ALL_FAMILIES",
    "BeamModel",
    "ExportedGraph",
    "TorchBeamModel",
    "SklearnBeamModel",
    "make_model",
    "load_model",
    "ModelError",
]

# views of the family registry (edgebm.models.registry is the one place a family is declared)
NEURAL_FAMILIES = family_names(kind="torch")
CLASSICAL_FAMILIES = family_names(kind="sklearn")
ALL_FAMILIES = family_names()


def _spec(family: str) -> FamilySpec:
    try:
        return get_family(family)
    except UnknownFamilyError as e:
        raise ModelError(str(e)) from None


def _module_class(family: str):
    spec = _spec(family)
    if spec.kind != "torch":
        raise ModelError(f"{family!r} is not a neural family (neural: {', '.join(family_names(kind='torch'))})")
    return load_builder(spec)


@dataclass
class ExportedGraph:
    """What :meth:`BeamModel.to_onnx` wrote and what the bundle needs to know about it.

    ``outputs``: every graph output as ``{"name", "shape", "dtype"}`` (read from the graph). ``score_output``
    holds Set A scores of kind ``score_kind`` (``logits`` or ``probabilities``); ``feature_output`` (neural
    families) the penultimate features the on-device head update trains on, with ``head`` = (W (A, F),
    b (A,)) float32, the layer that maps them to the logits. ``parity``: ONNX Runtime vs the source model on
    the samples given. ``thop_flops``: the torch-side FLOP count (batch 1) to cross-check the ONNX count.
    ``manifest_fields``: family-specific manifest entries (e.g. an extra output a runtime hook reads).
    """

    path: Path
    score_output: str
    score_kind: str
    outputs: list[dict[str, Any]]
    model_config: dict[str, Any]
    parity: dict[str, Any]
    feature_output: str | None = None
    head: tuple[np.ndarray, np.ndarray] | None = None
    flops: int = 0
    thop_flops: int | None = None
    manifest_fields: dict[str, Any] = field(default_factory=dict)

    @property
    def head_params(self) -> int:
        """Trainable parameters of the on-device head (0 when the graph has none)."""
        return 0 if self.head is None else int(self.head[0].size + self.head[1].size)


def _graph_outputs(path: Path) -> list[dict[str, Any]]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    out = []
    for o in g.output:
        t = o.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else "batch" for d in t.shape.dim]
        out.append({"name": o.name, "shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})
    return out


def _onnx_flops(path: Path) -> int:
    from ..budget import analyze_onnx

    return int(analyze_onnx(path).flops)


@dataclass
class BeamModel:
    """Common state: family, Set B / Set A sizes, model kwargs and training record."""

    family: str
    n_in: int
    n_out: int
    params: dict[str, Any] = field(default_factory=dict)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    result: TrainResult | None = None

    @property
    def spec(self) -> FamilySpec:
        """The family's registry entry."""
        return _spec(self.family)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Best Set A beam per row, (N,)."""
        return self.decision_scores(x).argmax(-1)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.decision_scores(x).astype(np.float64)).astype(np.float32)

    def decision_scores(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"family": self.family, "n_in": self.n_in, "n_out": self.n_out, "params": self.params, "train": self.train_cfg.to_dict()}

    def to_onnx(self, path: str | Path, sample: np.ndarray, parity_x: np.ndarray, threads: int = 1) -> ExportedGraph:  # pragma: no cover
        """Export to a self-contained ONNX file at ``path`` (input ``rsrp_b`` in dBm, preprocessing in the graph)
        and check it against this model on ``parity_x``. ``sample``: a few real inputs to trace with."""
        raise NotImplementedError


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
            if self.spec.needs_trajectories:
                self.history, self.horizon = self.module.history, self.module.horizon

    def _xy(self, ds: BeamDataset) -> tuple[np.ndarray, np.ndarray]:
        if not self.spec.needs_trajectories:
            return ds.rsrp_b, ds.best_a
        from .temporal import make_sequences

        if ds.traj_id is None:
            raise ModelError(f"family {self.family!r} needs a trajectory dataset (edgebm data generate --trajectories ...)")
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
        spec = self.spec
        if spec.needs_codebooks:  # codebook-aware families read the gain patterns from the data
            self.module.set_codebooks(train.codebooks, train.meta["bs_array"])
        xt, yt = self._xy(train)
        xv, yv = self._xy(val)
        use_soft = cfg.soft_weight > 0 and not spec.needs_trajectories
        soft_t = beam_power_soft_labels(train.rsrp_a, cfg.soft_temperature) if use_soft else None
        soft_v = beam_power_soft_labels(val.rsrp_a, cfg.soft_temperature) if use_soft else None
        forward = None
        if spec.needs_positions:  # position-aided training: the module's auxiliary losses need the UE positions
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

    def to_onnx(self, path: str | Path, sample: np.ndarray, parity_x: np.ndarray, threads: int = 1) -> ExportedGraph:
        """torch.export-based ONNX with outputs ``logits`` and ``features`` (+ any the module adds); see
        :func:`edgebm.deploy.onnx_export.export_onnx`."""
        from ..budget import thop_flops
        from ..deploy.onnx_export import OUTPUT_NAMES, check_parity, export_onnx

        if self.spec.needs_trajectories:
            raise ModelError(f"family {self.family!r} takes history windows; BM-Case1 bundles need (batch, |B|) inputs")
        path = export_onnx(self.module, sample, path)
        head = self.module.head
        extra = self.module.export_manifest_fields() if hasattr(self.module, "export_manifest_fields") else {}
        if hasattr(self.module, "forward_aps"):  # codebook-aware: the APS output serves new codebooks (Predictor.set_codebook)
            from ..deploy.onnx_export import APS_OUTPUT

            extra = {"aps_output": APS_OUTPUT, **extra}
        return ExportedGraph(
            path=Path(path), score_output=OUTPUT_NAMES[0], score_kind="logits", outputs=_graph_outputs(Path(path)),
            model_config=self.config(), parity=check_parity(self.module, path, parity_x, threads).to_dict(),
            feature_output=OUTPUT_NAMES[1],
            head=(head.weight.detach().numpy().astype(np.float32).copy(), head.bias.detach().numpy().astype(np.float32).copy()),
            flops=_onnx_flops(Path(path)), thop_flops=thop_flops(self.module, sample), manifest_fields=dict(extra),
        )

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

    def to_onnx(self, path: str | Path, sample: np.ndarray, parity_x: np.ndarray, threads: int = 1) -> ExportedGraph:
        """skl2onnx graph with one ``scores`` output (see :mod:`edgebm.deploy.sklearn_export`); no on-device head."""
        from ..deploy.sklearn_export import check_sklearn_parity, export_sklearn

        info = export_sklearn(self.est, path, self.n_in)
        return ExportedGraph(
            path=Path(path), score_output=info["score_output"], score_kind=info["score_kind"], outputs=_graph_outputs(Path(path)),
            model_config=info["model_config"], parity=check_sklearn_parity(self.est, path, parity_x, threads).to_dict(),
            flops=_onnx_flops(Path(path)),
        )

    def save(self, run_dir: str | Path) -> Path:
        run_dir = Path(run_dir)
        return atomic_write(run_dir / "model.pkl", lambda f: pickle.dump({"config": self.config(), "use_position": self.use_position, "est": self.est}, f))


def make_model(family: str, n_in: int, n_out: int, train_cfg: TrainConfig | None = None, **params: Any) -> BeamModel:
    """Build an untrained model of ``family`` for |B| = ``n_in`` -> |A| = ``n_out``."""
    cfg = train_cfg or TrainConfig()
    spec = _spec(family)
    if spec.kind == "torch":
        return TorchBeamModel(family, n_in, n_out, params=params, train_cfg=cfg)
    use_pos = bool(params.pop("use_position", False))
    return SklearnBeamModel(family, n_in, n_out, params=params, train_cfg=cfg, use_position=use_pos)


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
