"""Classical (scikit-learn) beam predictors: linear/RBF SVM, decision tree, gradient-boosted trees, SGD.

Every family is a :class:`sklearn.pipeline.Pipeline` of two steps, built by :func:`make_classical`:

``features``
    :class:`RelativeDbTransformer`: the dB normalisation of :func:`edgebm.models.preprocess.relative_db`
    (``clip(x - max(x), -40 dB, 0) / 10``), so the models see the beam pattern rather than the path
    loss, exactly like the neural families. With ``use_position=True`` the input is
    ``[rsrp_b (n_b) dBm | pos (3) m]`` and the 3 position columns are divided by ``pos_scale_m``
    (:data:`POS_SCALE_M` = 100 m) and appended unchanged otherwise. The step has no learned state;
    ``edgebm.deploy.sklearn_export`` registers an skl2onnx converter for it (ReduceMax, Sub, Max, Div).
``clf``
    the estimator:

    ============  =====================================================  =============
    family        estimator                                              score kind
    ============  =====================================================  =============
    svm_linear    ``LinearSVC`` (liblinear, one-vs-rest)                 logits
    svm_rbf       ``SVC(kernel="rbf", decision_function_shape="ovo")``   logits
                  trained on at most ``max_train`` (5000) samples
    tree          ``DecisionTreeClassifier(max_depth=12)``               probabilities
    gbt           ``HistGradientBoostingClassifier`` (40 rounds,         probabilities
                  15 leaves, l2 = 10; early stopping on ``X_val``)
    sgd           ``SGDClassifier(loss="log_loss")``, step 0.1/t^0.25,   probabilities
                  20 shuffled ``partial_fit`` epochs, classes fixed to
                  range(n_out); not averaged, so updates act at once
    ============  =====================================================  =============

"logits" families expose scores whose softmax is the predicted distribution (linear: the
one-vs-rest decision values; rbf: scikit-learn's one-vs-one votes + confidences, see
:func:`ovo_to_ovr`), times a temperature fitted on the validation set when ``fit`` is given one.
"probabilities" families expose ``predict_proba`` (sgd: one-vs-rest sigmoids normalised to sum to 1,
as scikit-learn does).

:class:`ClassicalBeamModel` wraps a pipeline with the contract shared with the torch families:
scores are always dense over all ``n_out`` Set A beams; beams the estimator never saw in training get
probability 0 (logit :data:`FILL_LOGIT`). All randomness comes from ``seed``.

What differs between families (how the estimator is built, fitted, read and sized) lives in one
:class:`ClassicalFamily` subclass per family, which the family registry (:mod:`edgebm.models.registry`)
names as the family's ``builder``; the defaults and the score kind are registry fields too.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from ..numerics import logsumexp, softmax
from .preprocess import PREPROCESS_DEFAULTS, relative_db
from .registry import families, get_family, load_builder

__all__ = [
    "FAMILIES", "SCORE_KINDS", "FILL_LOGIT", "POS_SCALE_M", "N_POS", "RelativeDbTransformer", "ClassicalBeamModel",
    "ClassicalFamily", "SvmLinear", "SvmRbf", "DecisionTree", "BoostedTrees", "SgdLogistic",
    "make_classical", "ovo_to_ovr", "ovo_pair_tables",
]

#: family name -> kind of the dense score tensor ("logits": softmax it; "probabilities": use as is), from the registry
SCORE_KINDS = {s.name: s.score_kind for s in families(kind="sklearn")}
FAMILIES = tuple(SCORE_KINDS)
#: logit given to Set A beams the estimator never saw in training (softmax -> exactly 0 in float32/64; fp16-safe)
FILL_LOGIT = -1.0e4
#: positions (m) are divided by this before entering the estimator when ``use_position=True``
POS_SCALE_M = 100.0
#: number of position columns (x, y, z) appended after the RSRP columns when ``use_position=True``
N_POS = 3

# keys that configure the wrapper, not the estimator
_WRAPPER_KEYS = {"max_train", "epochs", "floor_db", "scale_db", "pos_scale_m", "n_threads", "fit_temperature"}


def _spec(family: str):
    """The registry entry of a classical family (ValueError naming the classical families otherwise)."""
    if family not in SCORE_KINDS:
        raise ValueError(f"unknown classical family {family!r}; choose one of {', '.join(FAMILIES)}")
    return get_family(family)


class RelativeDbTransformer(TransformerMixin, BaseEstimator):
    """``clip(x - max(x), floor_db, 0) / scale_db`` over the RSRP columns (dBm), positions / ``pos_scale_m``.

    The last ``n_pos`` input columns are positions in metres (0 = RSRP only). Stateless: ``fit`` only
    records the input width. Output is float32, bit-identical to :func:`relative_db` and to the ONNX
    converter in :mod:`edgebm.deploy.sklearn_export`.
    """

    def __init__(self, floor_db: float = PREPROCESS_DEFAULTS["floor_db"], scale_db: float = PREPROCESS_DEFAULTS["scale_db"],
                 n_pos: int = 0, pos_scale_m: float = POS_SCALE_M) -> None:
        self.floor_db = floor_db
        self.scale_db = scale_db
        self.n_pos = n_pos
        self.pos_scale_m = pos_scale_m

    def fit(self, X: Any, y: Any = None) -> "RelativeDbTransformer":
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] <= self.n_pos:
            want = f"(N, n_b + {self.n_pos})" if self.n_pos else "(N, n_b)"
            raise ValueError(f"RelativeDbTransformer: expected {want} input, got shape {X.shape}")
        self.n_features_in_ = int(X.shape[1])
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != getattr(self, "n_features_in_", X.shape[1]):
            want = getattr(self, "n_features_in_", "?")
            raise ValueError(f"RelativeDbTransformer: expected {want} input columns, got shape {X.shape}")
        n_rsrp = X.shape[1] - self.n_pos
        rel = relative_db(X[:, :n_rsrp], float(self.floor_db), float(self.scale_db))
        if not self.n_pos:
            return rel
        pos = X[:, n_rsrp:] / np.float32(self.pos_scale_m)
        return np.concatenate([rel, pos.astype(np.float32)], axis=1)

    def constants(self) -> dict:
        """Preprocessing record for the manifest."""
        out = {**PREPROCESS_DEFAULTS, "floor_db": float(self.floor_db), "scale_db": float(self.scale_db), "in_graph": True}
        if self.n_pos:
            out["position"] = {"columns": int(self.n_pos), "units": "m", "scale_m": float(self.pos_scale_m)}
        return out


def make_classical(family: str, seed: int = 0, use_position: bool = False, **params: Any) -> Pipeline:
    """Pipeline ``[("features", RelativeDbTransformer), ("clf", estimator)]`` for ``family``.

    ``params`` override the family defaults (see the module table) and are passed to the estimator;
    the wrapper-only keys (``max_train``, ``epochs``, ``n_threads``, ...) are dropped here.
    """
    spec = _spec(family)
    p = {**spec.default_params, **params}
    feat = RelativeDbTransformer(
        floor_db=p.get("floor_db", PREPROCESS_DEFAULTS["floor_db"]), scale_db=p.get("scale_db", PREPROCESS_DEFAULTS["scale_db"]),
        n_pos=N_POS if use_position else 0, pos_scale_m=p.get("pos_scale_m", POS_SCALE_M),
    )
    kw = {k: v for k, v in p.items() if k not in _WRAPPER_KEYS}
    return Pipeline([("features", feat), ("clf", load_builder(spec).build(kw, seed))])


# -- per-family behaviour (the registry's ``builder`` of each classical family) ----------------------
class ClassicalFamily:
    """How one scikit-learn family is built, fitted, read and sized. Subclass and register a
    :class:`~edgebm.models.registry.FamilySpec` with ``builder="your.module:YourFamily"`` to add one."""

    @staticmethod
    def build(kw: dict[str, Any], seed: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def fit(model: "ClassicalBeamModel", F: np.ndarray, y: np.ndarray, F_val: np.ndarray | None, y_val: np.ndarray | None) -> None:
        """Fit ``model.estimator`` on features ``F`` (validation features/labels may be None)."""
        model.estimator.fit(F, y)

    @staticmethod
    def raw_scores(est: Any, F: np.ndarray) -> np.ndarray:
        """Scores over ``est.classes_`` columns (before temperature and remapping)."""
        return est.predict_proba(F)

    @staticmethod
    def n_params(est: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class SvmLinear(ClassicalFamily):
    """``LinearSVC`` (liblinear, one-vs-rest); scores = decision values."""

    @staticmethod
    def build(kw: dict[str, Any], seed: int) -> Any:
        from sklearn.svm import LinearSVC

        return LinearSVC(random_state=seed, **kw)

    @staticmethod
    def raw_scores(est: Any, F: np.ndarray) -> np.ndarray:
        d = est.decision_function(F)
        return np.stack([-d, d], 1) if d.ndim == 1 else d

    @staticmethod
    def n_params(est: Any) -> int:
        return int(est.coef_.size + est.intercept_.size)


class SvmRbf(ClassicalFamily):
    """``SVC(kernel="rbf")`` one-vs-one, trained on at most ``max_train`` samples; scores = :func:`ovo_to_ovr`."""

    @staticmethod
    def build(kw: dict[str, Any], seed: int) -> Any:
        from sklearn.svm import SVC

        kw = dict(kw)
        kw.setdefault("decision_function_shape", "ovo")
        if kw["decision_function_shape"] != "ovo":
            raise ValueError("svm_rbf uses decision_function_shape='ovo' (the one-vs-rest scores are derived from it)")
        return SVC(kernel="rbf", random_state=seed, **kw)  # probability=False (the default; the option is deprecated in 1.9)

    @staticmethod
    def fit(model: "ClassicalBeamModel", F: np.ndarray, y: np.ndarray, F_val: np.ndarray | None, y_val: np.ndarray | None) -> None:
        cap = int(model.params.get("max_train", 5000))
        if len(F) > cap:
            idx = np.sort(np.random.default_rng(model.seed).choice(len(F), cap, replace=False))
            F, y = F[idx], y[idx]
        model.estimator.fit(F, y)

    @staticmethod
    def raw_scores(est: Any, F: np.ndarray) -> np.ndarray:
        dec = est.decision_function(F)
        k = len(est.classes_)
        if k == 2:  # sklearn flips the sign of the single libsvm pair value for binary problems
            dec = -dec.reshape(-1, 1)
        return ovo_to_ovr(dec.astype(np.float64), k)

    @staticmethod
    def n_params(est: Any) -> int:
        return int(est.support_vectors_.size + est.dual_coef_.size + est.intercept_.size)


class DecisionTree(ClassicalFamily):
    """``DecisionTreeClassifier``; scores = class probabilities of the leaf."""

    @staticmethod
    def build(kw: dict[str, Any], seed: int) -> Any:
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(random_state=seed, **kw)

    @staticmethod
    def n_params(est: Any) -> int:
        t = est.tree_
        leaf = t.children_left == -1
        # split nodes: feature index + threshold; leaves: one value per class
        return int(2 * np.count_nonzero(~leaf) + np.count_nonzero(leaf) * t.value.shape[-1])


class BoostedTrees(ClassicalFamily):
    """``HistGradientBoostingClassifier`` with early stopping on the validation split when given one."""

    @staticmethod
    def build(kw: dict[str, Any], seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        kw = dict(kw)
        kw.setdefault("early_stopping", False)
        return HistGradientBoostingClassifier(random_state=seed, **kw)

    @staticmethod
    def fit(model: "ClassicalBeamModel", F: np.ndarray, y: np.ndarray, F_val: np.ndarray | None, y_val: np.ndarray | None) -> None:
        est = model.estimator
        if F_val is not None and y_val is not None:
            keep = np.isin(y_val, np.unique(y))
            if keep.sum() >= 2 and "early_stopping" not in model._overrides:
                est.set_params(early_stopping=True)
                est.fit(F, y, X_val=F_val[keep], y_val=y_val[keep])
                return
        est.fit(F, y)

    @staticmethod
    def n_params(est: Any) -> int:
        total = int(np.size(est._baseline_prediction))
        for per_class in est._predictors:
            for pred in per_class:
                leaf = pred.nodes["is_leaf"].astype(bool)
                total += 2 * int(np.count_nonzero(~leaf)) + int(np.count_nonzero(leaf))
        return total


class SgdLogistic(ClassicalFamily):
    """``SGDClassifier(loss="log_loss")`` trained by shuffled ``partial_fit`` epochs (classes fixed to range(n_out))."""

    @staticmethod
    def build(kw: dict[str, Any], seed: int) -> Any:
        from sklearn.linear_model import SGDClassifier

        kw = dict(kw)
        kw.setdefault("loss", "log_loss")
        if kw["loss"] != "log_loss":
            raise ValueError("the sgd family uses loss='log_loss' (it needs probabilities)")
        return SGDClassifier(random_state=seed, **kw)

    @staticmethod
    def fit(model: "ClassicalBeamModel", F: np.ndarray, y: np.ndarray, F_val: np.ndarray | None, y_val: np.ndarray | None) -> None:
        model._sgd_epochs(F, y, int(model.params.get("epochs", 20)))

    @staticmethod
    def n_params(est: Any) -> int:
        return int(est.coef_.size + est.intercept_.size)


# -- one-vs-one -> one-vs-rest, vectorised ---------------------------------------------------------
def ovo_pair_tables(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index tables for :func:`ovo_to_ovr` over ``k`` classes and P = k(k-1)/2 libsvm-ordered pairs.

    Returns ``first`` (k, k-1) and ``second`` (k, k-1): for class c, the pair columns where c is the
    first (resp. second) class of the pair, padded with the index P (a zero column appended to the
    scores); and ``n_first`` (k,) float32: how many pairs have c first (= k - 1 - c).
    """
    i, j = np.triu_indices(k, 1)  # libsvm order: (0,1), (0,2), ..., (1,2), ...
    pairs = np.arange(i.size)
    first = np.full((k, max(k - 1, 1)), i.size, np.int64)
    second = np.full((k, max(k - 1, 1)), i.size, np.int64)
    for tab, cls in ((first, i), (second, j)):  # k-sized loops over classes, not samples
        order = np.argsort(cls, kind="stable")
        counts = np.bincount(cls, minlength=k)
        slot = np.arange(order.size) - np.repeat(np.cumsum(counts) - counts, counts)
        tab[cls[order], slot] = pairs[order]
    return first, second, (k - 1 - np.arange(k)).astype(np.float32)


def ovo_to_ovr(dec: np.ndarray, k: int) -> np.ndarray:
    """scikit-learn's ``_ovr_decision_function(dec < 0, -dec, k)`` from libsvm one-vs-one values ``dec`` (N, P).

    ``votes[c]`` = pairs won by c; ``conf[c]`` = sum of the pair values where c is first minus where
    c is second; result = ``votes + conf / (3 (|conf| + 1))``. Implemented with gathers so the same
    formula maps one-to-one onto ONNX (Pad, Gather, ReduceSum) in the exporter.
    """
    first, second, n_first = ovo_pair_tables(k)
    d = np.concatenate([dec, np.zeros((dec.shape[0], 1), dec.dtype)], axis=1)
    neg = (d < 0).astype(d.dtype)
    conf = d[:, first].sum(-1) - d[:, second].sum(-1)
    votes = n_first + neg[:, second].sum(-1) - neg[:, first].sum(-1)
    return votes + conf / (3 * (np.abs(conf) + 1))


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Scalar T minimising the NLL of softmax(T * logits) on (logits, y); grid search in log space."""
    grid = np.logspace(-2, 2, 81)
    z = logits.astype(np.float64)
    nll = np.empty(grid.size)
    for i, t in enumerate(grid):  # 81 candidates, vectorised over samples
        zt = t * z
        nll[i] = np.mean(logsumexp(zt, axis=1) - zt[np.arange(len(y)), y])
    return float(grid[int(np.argmin(nll))])


class _ThreadLimit:
    """Context manager capping OpenMP/BLAS threads (HistGradientBoosting spins badly on busy CPUs)."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self._ctx = None

    def __enter__(self) -> None:
        if self.n:
            from threadpoolctl import threadpool_limits

            self._ctx = threadpool_limits(self.n)
            self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


class ClassicalBeamModel:
    """A classical beam predictor over ``n_out`` Set A beams from ``n_in`` Set B RSRPs (dBm).

    ``n_in`` counts the RSRP columns only; with ``use_position=True`` the inputs are
    ``[rsrp_b | pos]`` of width ``n_in + 3`` (:attr:`input_width`), positions in metres.
    ``params`` override the family defaults; wrapper keys: ``max_train`` (svm_rbf training cap),
    ``epochs`` (sgd passes in ``fit``), ``n_threads`` (OpenMP/BLAS thread cap during fit/predict,
    default 1; ``None`` = library default), ``fit_temperature`` (logits families, default True:
    fit a softmax temperature on ``X_val`` when given).
    """

    def __init__(self, family: str, n_in: int, n_out: int, seed: int = 0, use_position: bool = False, **params: Any) -> None:
        spec = _spec(family)
        if n_in < 1 or n_out < 2:
            raise ValueError(f"need n_in >= 1 and n_out >= 2, got n_in={n_in}, n_out={n_out}")
        self.family = family
        self.n_in = int(n_in)
        self.n_out = int(n_out)
        self.seed = int(seed)
        self.use_position = bool(use_position)
        self._overrides = dict(params)
        self.params = {**spec.default_params, **params}
        self._rng = np.random.default_rng(self.seed)  # sgd epoch shuffling; reset by fit
        self.n_threads: int | None = self.params.get("n_threads", 1)
        self.temperature = 1.0
        self.fit_seconds_: float | None = None
        self.pipeline: Pipeline = make_classical(family, seed=self.seed, use_position=self.use_position, **params)

    # -- properties ---------------------------------------------------------------------------
    @property
    def input_width(self) -> int:
        return self.n_in + (N_POS if self.use_position else 0)

    @property
    def score_kind(self) -> str:
        """"logits" or "probabilities": what :meth:`scores` (and the ONNX ``scores`` output) holds."""
        return SCORE_KINDS[self.family]

    @property
    def _family(self) -> type[ClassicalFamily]:
        """The family's build/fit/score/size rules (the registry's ``builder``)."""
        return load_builder(get_family(self.family))

    @property
    def estimator(self) -> Any:
        return self.pipeline.named_steps["clf"]

    @property
    def features(self) -> RelativeDbTransformer:
        return self.pipeline.named_steps["features"]

    @property
    def classes_(self) -> np.ndarray:
        """Set A indices the estimator knows, in the order of its score columns."""
        est = self.estimator
        if not hasattr(est, "classes_"):
            raise RuntimeError(f"{self.family} model is not fitted")
        return np.asarray(est.classes_).astype(np.int64)

    def is_fitted(self) -> bool:
        return hasattr(self.estimator, "classes_")

    # -- input checks ---------------------------------------------------------------------------
    def _x(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.input_width:
            what = f"[rsrp_b ({self.n_in}) | pos (3)]" if self.use_position else f"rsrp_b ({self.n_in})"
            raise ValueError(f"{self.family}: expected X of shape (N, {self.input_width}) = {what}, got {X.shape}")
        return X

    def _y(self, y: Any, n: int) -> np.ndarray:
        y = np.asarray(y).astype(np.int64).ravel()
        if y.shape[0] != n:
            raise ValueError(f"{self.family}: y has {y.shape[0]} labels for {n} samples")
        if n and (y.min() < 0 or y.max() >= self.n_out):
            raise ValueError(f"{self.family}: labels must be Set A indices in [0, {self.n_out})")
        return y

    # -- training -------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "ClassicalBeamModel":
        """Train from scratch on (X, y). ``X_val``/``y_val``: gbt early stopping, logits temperature."""
        X = self._x(X)
        y = self._y(y, len(X))
        if np.unique(y).size < 2:
            raise ValueError(f"{self.family}: training needs at least 2 distinct beams, got {np.unique(y).size}")
        self.pipeline = make_classical(self.family, seed=self.seed, use_position=self.use_position, **self._overrides)
        self._rng = np.random.default_rng(self.seed)
        self.temperature = 1.0
        has_val = X_val is not None and y_val is not None
        if has_val:
            X_val = self._x(X_val)
            y_val = self._y(y_val, len(X_val))
        t0 = time.perf_counter()
        with _ThreadLimit(self.n_threads):
            F = self.features.fit_transform(X)
            F_val = self.features.transform(X_val) if has_val else None
            self._family.fit(self, F, y, F_val, y_val if has_val else None)
            if has_val and self.score_kind == "logits" and self.params.get("fit_temperature", True):
                keep = np.isin(y_val, self.classes_)
                if keep.any():
                    raw = self._raw_scores(self.features.transform(X_val[keep]))
                    col = np.searchsorted(self.classes_, y_val[keep])
                    self.temperature = _fit_temperature(raw, col)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _sgd_epochs(self, F: np.ndarray, y: np.ndarray, epochs: int) -> None:
        """``epochs`` shuffled passes of ``partial_fit`` with classes fixed to range(n_out)."""
        classes = np.arange(self.n_out)
        for _ in range(max(1, epochs)):  # loop over epochs; each pass is vectorised inside sklearn
            perm = self._rng.permutation(len(F))
            self.estimator.partial_fit(F[perm], y[perm], classes=classes)

    def partial_fit(self, X: Any, y: Any, epochs: int = 1) -> "ClassicalBeamModel":
        """Incremental update (sgd only): ``epochs`` passes over (X, y); classes fixed to range(n_out)."""
        if self.family != "sgd":
            raise NotImplementedError(f"partial_fit is only available for the 'sgd' family, not {self.family!r}")
        X = self._x(X)
        y = self._y(y, len(X))
        t0 = time.perf_counter()
        with _ThreadLimit(self.n_threads):
            if not hasattr(self.features, "n_features_in_"):
                self.features.fit(X)
            self._sgd_epochs(self.features.transform(X), y, epochs)
        self.fit_seconds_ = (self.fit_seconds_ or 0.0) + time.perf_counter() - t0
        return self

    # -- inference ------------------------------------------------------------------------------
    def _raw_scores(self, F: np.ndarray) -> np.ndarray:
        """Estimator scores over its own ``classes_`` columns (before temperature and remapping)."""
        return self._family.raw_scores(self.estimator, F)

    def scores(self, X: Any) -> np.ndarray:
        """Dense (N, n_out) float32 scores of kind :attr:`score_kind` — what the ONNX ``scores`` output holds."""
        if not self.is_fitted():
            raise RuntimeError(f"{self.family} model is not fitted")
        X = self._x(X)
        with _ThreadLimit(self.n_threads):
            raw = self._raw_scores(self.features.transform(X))
        logits = self.score_kind == "logits"
        if logits:
            raw = raw * self.temperature
        out = np.full((len(X), self.n_out), FILL_LOGIT if logits else 0.0, np.float64)
        out[:, self.classes_] = raw
        return out.astype(np.float32)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(N, n_out) probabilities over all Set A beams; beams unseen in training get 0."""
        s = self.scores(X)
        return softmax(s.astype(np.float64)).astype(np.float32) if self.score_kind == "logits" else s

    def decision_scores(self, X: Any) -> np.ndarray:
        """(N, n_out) logits: softmax of these equals :meth:`predict_proba` (probability families: log p, 0 -> FILL_LOGIT)."""
        s = self.scores(X)
        if self.score_kind == "logits":
            return s
        with np.errstate(divide="ignore"):
            return np.where(s > 0, np.log(np.maximum(s, 1e-38)), FILL_LOGIT).astype(np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """(N,) best Set A beam (argmax of :meth:`scores`, as the exported graph does)."""
        return self.scores(X).argmax(axis=1).astype(np.int64)

    # -- size -------------------------------------------------------------------------------------
    def n_params(self) -> int:
        """Learned numbers the model stores (coefficients, support vectors, tree split/leaf values)."""
        if not self.is_fitted():
            raise RuntimeError(f"{self.family} model is not fitted")
        return self._family.n_params(self.estimator)

    def config(self) -> dict:
        """JSON-able description for the manifest."""
        return {"family": self.family, "n_in": self.n_in, "n_out": self.n_out, "seed": self.seed,
                "use_position": self.use_position, "params": dict(self.params), "temperature": self.temperature,
                "score_kind": self.score_kind}

    def __repr__(self) -> str:
        return (f"ClassicalBeamModel({self.family!r}, n_in={self.n_in}, n_out={self.n_out}, seed={self.seed}, "
                f"use_position={self.use_position})")
