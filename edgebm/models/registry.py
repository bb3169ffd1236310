"""The one place a model family is declared (torch-free: importing this module imports no ML library).

A :class:`FamilySpec` says what a family is and how the rest of edgebm treats it: which class builds it
(``builder``, a ``"module:attribute"`` path imported only when a model is built), whether it is a torch
or a scikit-learn family, what its scores are, what its training data must hold (UE positions,
trajectories, codebook arrays), whether ``edgebm export`` may ship it and in which role the export recipe
uses it (teacher, student, classical), and the parameters and epochs it gets by default and in export.

Profiles (``[models].families``), the estimator factory (:func:`edgebm.models.estimator.make_model`),
the classical wrapper, the export pipeline, the CLI help and the tests all read this table. Adding a
family means: write its class, add one :func:`register_family` call below (or from your own module,
before first use), done.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = [
    "FamilySpec", "KINDS", "ROLES", "SCORE_KINDS", "register_family", "get_family", "families", "family_names",
    "load_builder", "UnknownFamilyError",
]

KINDS = ("torch", "sklearn")
#: how the export recipe uses a family: ``teacher`` = large reference model (also a shipping candidate where a
#: profile allows it), ``student`` = small neural model distilled from the teacher (and pruned to the budget),
#: ``classical`` = scikit-learn model trained on hard labels
ROLES = ("teacher", "student", "classical")
#: ``logits``: softmax the scores; ``probabilities``: the scores are the distribution
SCORE_KINDS = ("logits", "probabilities")


class UnknownFamilyError(KeyError):
    """No family of that name is registered (a ``KeyError`` whose message lists the known names)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0]) if self.args else ""


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class FamilySpec:
    """One model family.

    ``builder``: ``"package.module:Attribute"``; for ``kind="torch"`` an ``nn.Module`` class built as
    ``cls(n_in, n_out, **params)``; for ``kind="sklearn"`` a :class:`edgebm.models.classical.ClassicalFamily`
    subclass that builds, fits and reads the estimator. ``default_params``: constructor defaults (for
    sklearn families, the estimator and wrapper defaults). ``export_params`` / ``export_epochs``: what
    ``edgebm export`` trains (sized so a profile exports in minutes on 2 CPU cores; ``export_epochs`` is
    ignored by single-pass classical families).
    """

    name: str
    kind: str
    builder: str
    summary: str
    role: str
    score_kind: str = "logits"
    exportable: bool = True  # edgebm export may ship it as a BM-Case1 bundle (rsrp_b (batch, |B|) -> Set A scores)
    needs_positions: bool = False  # training reads ``pos`` (inference never does)
    needs_trajectories: bool = False  # BM-Case2: inputs are history windows of a trajectory dataset
    needs_codebooks: bool = False  # the module reads the dataset's codebook arrays before training (``set_codebooks``)
    prunable: bool = False  # structured pruning (torch-pruning) applies
    default_params: Mapping[str, Any] = field(default_factory=dict)
    export_params: Mapping[str, Any] = field(default_factory=dict)
    export_epochs: int = 40

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"family name must be a non-empty identifier, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.role not in ROLES:
            raise ValueError(f"family {self.name!r}: role must be one of {ROLES}, got {self.role!r}")
        if self.score_kind not in SCORE_KINDS:
            raise ValueError(f"family {self.name!r}: score_kind must be one of {SCORE_KINDS}, got {self.score_kind!r}")
        if ":" not in self.builder:
            raise ValueError(f"family {self.name!r}: builder must be 'module:attribute', got {self.builder!r}")
        if self.export_epochs < 1:
            raise ValueError(f"family {self.name!r}: export_epochs must be >= 1")
        object.__setattr__(self, "default_params", _frozen(self.default_params))
        object.__setattr__(self, "export_params", _frozen(self.export_params))

    @property
    def distillable(self) -> bool:
        """Trained by gradient descent on logits, so a teacher's logits can be added to its loss."""
        return self.kind == "torch" and not self.needs_trajectories


_REGISTRY: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec, *, replace: bool = False) -> FamilySpec:
    """Add ``spec`` to the registry (``replace=True`` to redefine an existing name)."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"model family {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_family(name: str) -> FamilySpec:
    """The spec of family ``name``; :class:`UnknownFamilyError` (a KeyError) naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownFamilyError(f"unknown model family {name!r} (known: {', '.join(_REGISTRY)})") from None


def families(*, kind: str | None = None, role: str | None = None, exportable: bool | None = None) -> tuple[FamilySpec, ...]:
    """Registered specs in registration order, optionally filtered."""
    return tuple(s for s in _REGISTRY.values()
                 if (kind is None or s.kind == kind) and (role is None or s.role == role)
                 and (exportable is None or s.exportable == exportable))


def family_names(**filters: Any) -> tuple[str, ...]:
    """Names of :func:`families` (same filters)."""
    return tuple(s.name for s in families(**filters))


def load_builder(spec: FamilySpec | str) -> Any:
    """Import and return the object ``spec.builder`` names (this is where torch / sklearn get imported)."""
    spec = get_family(spec) if isinstance(spec, str) else spec
    module, _, attr = spec.builder.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# -- the shipped families ------------------------------------------------------------------------------
register_family(FamilySpec(
    "mlp", "torch", "edgebm.models.mlp:BeamMLP", "fully connected student (BM-Case1)", "student", prunable=True,
    default_params={"hidden": (256, 256)}, export_params={"hidden": (256, 256)}, export_epochs=40))
register_family(FamilySpec(
    "dscnn", "torch", "edgebm.models.dscnn:BeamDSCNN", "MobileNetV2-style depthwise-separable CNN student", "student",
    prunable=True, export_epochs=12))
register_family(FamilySpec(
    "angular", "torch", "edgebm.models.angular:AngularBeamNet",
    "codebook- and array-aware: Set B RSRP -> angular power spectrum -> any Set A codebook through its gain patterns",
    "student", needs_codebooks=True, default_params={"hidden": (256, 256)}, export_params={"hidden": (256, 256)},
    export_epochs=30))
register_family(FamilySpec(
    "teacher", "torch", "edgebm.models.teacher:BeamTeacherCNN",
    "ResNet/RegNet-style CNN over the bilinearly upsampled Set B grid", "teacher",
    export_params={"upsample": 16}, export_epochs=10))
register_family(FamilySpec(
    "teacher_pos", "torch", "edgebm.models.fusion:PositionAidedTeacher",
    "dual-branch teacher with position auxiliary loss and AutoFusion (no position at inference)", "teacher",
    needs_positions=True, export_params={"upsample": 16}, export_epochs=10))
register_family(FamilySpec(
    "gru", "torch", "edgebm.models.temporal:BeamGRU", "BM-Case2: measurement history -> current + future beams",
    "student", exportable=False, needs_trajectories=True))
register_family(FamilySpec(
    "svm_linear", "sklearn", "edgebm.models.classical:SvmLinear", "linear SVM (liblinear, one-vs-rest)", "classical",
    default_params={"C": 1.0, "max_iter": 2000}))
register_family(FamilySpec(
    "svm_rbf", "sklearn", "edgebm.models.classical:SvmRbf", "RBF-kernel SVM (one-vs-one votes)", "classical",
    default_params={"C": 10.0, "gamma": "scale", "max_train": 5000}))
register_family(FamilySpec(
    "tree", "sklearn", "edgebm.models.classical:DecisionTree", "decision tree", "classical", score_kind="probabilities",
    default_params={"max_depth": 12, "min_samples_leaf": 2}))
register_family(FamilySpec(
    "gbt", "sklearn", "edgebm.models.classical:BoostedTrees", "histogram gradient-boosted trees", "classical",
    score_kind="probabilities",
    default_params={"max_iter": 40, "learning_rate": 0.1, "max_leaf_nodes": 15, "l2_regularization": 10.0, "min_samples_leaf": 20}))
register_family(FamilySpec(
    "sgd", "sklearn", "edgebm.models.classical:SgdLogistic", "logistic regression by SGD (incremental, partial_fit)",
    "classical", score_kind="probabilities",
    default_params={"alpha": 1e-4, "learning_rate": "invscaling", "eta0": 0.1, "power_t": 0.25, "epochs": 20}))
