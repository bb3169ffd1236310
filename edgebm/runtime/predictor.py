"""`Predictor`: run a bundle on the UE (numpy + onnxruntime only, never torch or sklearn).

Every input a caller hands over is checked before it reaches onnxruntime or the numpy head, and a
bad one raises :class:`~edgebm.errors.InputError` with one line naming the argument and what is
allowed: shapes, dtypes (no bools, strings or ragged lists), finite values, RSRP units, ``k``, head
weights, beam indices and labels. The checks cost a few microseconds (one ``min``/``max`` pass).

The model runs on the backend the manifest names where it is usable here (a TensorRT engine,
``model.plan``), else on onnxruntime (:mod:`edgebm.runtime.backends`); ``backend`` and
``backend_reason`` say which ran and why. ``predict`` of one sample takes a fast path: the same
checks on a 1-D float array without building batch views, one backend call, and softmax + top-k on
the single score row (measured in ``bench/latency.py`` against the bare ``session.run``).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import InputError
from ..numerics import softmax
from .backends import BACKEND_CHOICES, open_backend
from .bundle import BundleError, open_bundle
from .manifest import BundleManifest

__all__ = ["Predictor", "InputError", "RSRP_RANGE_DBM"]

#: plausible received power range for an RSRP in dBm; values outside are almost surely wrong units
RSRP_RANGE_DBM = (-300.0, 60.0)


def _as_numeric(x: Any, what: str, fix: str) -> np.ndarray:
    """``np.asarray(x)`` refusing ragged lists, bools, strings, objects and complex numbers."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError, OverflowError) as e:  # ragged lists, huge Python ints
        raise InputError(f"{what}: cannot be read as a numeric array ({str(e).splitlines()[0]}); {fix}") from None
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what}: must be numeric, got dtype {arr.dtype}; {fix}")
    return arr


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _npz(data: bytes, name: str, root: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # numpy raises ValueError, OSError, zipfile.BadZipFile, EOFError...
        raise BundleError(f"{root}: '{name}' is not a readable .npz ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


class Predictor:
    """Load ``bundle_dir`` (schema, digest, hashes checked) and predict the best Set A beams.

    ``threads`` defaults to the profile's thread count recorded in the manifest. A bundle whose
    gate verdict is not ``pass`` (written with ``--force``) is refused unless ``allow_failed=True``.
    ``trusted_keys`` (PEM paths, PEM bytes or ``Ed25519PublicKey`` objects; needs ``edgebm[sign]``):
    when given, the bundle must be signed by one of them. Files in the folder that the manifest
    does not list are reported in ``extra_files`` (and a :class:`BundleWarning`), never loaded.
    ``backend``: ``auto`` (the bundle's TensorRT engine where TensorRT and a CUDA GPU are usable,
    else onnxruntime), ``onnxruntime`` or ``tensorrt`` (refused with the reason when it cannot run).
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        threads: int | None = None,
        allow_failed: bool = False,
        trusted_keys: Iterable[Any] | None = None,
        backend: str = "auto",
    ) -> None:
        if threads is not None and (not _is_int(threads) or threads < 1):
            raise InputError(f"threads must be an integer >= 1 or None (the profile's), got {threads!r}")
        if backend not in BACKEND_CHOICES:
            raise InputError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
        self.bundle_dir = Path(bundle_dir)
        self.bundle = open_bundle(self.bundle_dir, trusted_keys=trusted_keys)
        self.manifest: BundleManifest = self.bundle.manifest
        self.extra_files: tuple[str, ...] = self.bundle.extra_files
        man = self.manifest
        if man.verdict != "pass" and not allow_failed:
            raise BundleError(
                f"{self.bundle_dir}: bundle failed its budget gate (verdict {man.verdict!r}); "
                "pass allow_failed=True to load it anyway"
            )
        self.input_name: str = man.inputs[0].name
        self.n_b: int = man.n_beams_b
        self.n_a: int = man.n_beams_a
        self.score_output: str = man.score_output
        self.score_kind: str = man.score_kind  # "logits" or "probabilities"
        self.feature_output: str | None = man.feature_output
        # the profile's thread count (capped at this host's cores by the backend); verified bytes only:
        # no swap between the hash check and the load
        try:
            self.runner, self.backend_reason = open_backend(man, self.bundle.read_bytes, threads=int(threads or man.threads), prefer=backend)
        except BundleError as e:
            raise BundleError(f"{self.bundle_dir}: {e}") from None
        self.backend: str = self.runner.name  # "onnxruntime" or "tensorrt": what actually runs
        self.session = getattr(self.runner, "session", None)  # the onnxruntime session when that backend runs
        self._backend_run = self.runner.run  # run(names, {input: x}); bound once
        self._score_names = [self.score_output]
        self._one_shape = (self.n_b,)
        self._check_graph_matches_manifest()
        self._codebook: dict[str, np.ndarray] | None = None
        # last layer as numpy arrays (head.npz): used for inference once adapted on the device
        self.head: tuple[np.ndarray, np.ndarray] | None = None
        if man.head_file is not None:
            z = _npz(self.bundle.read_bytes(man.head_file), man.head_file, self.bundle.root)
            if "W" not in z or "b" not in z:
                raise BundleError(f"{self.bundle_dir}: '{man.head_file}' must hold arrays W and b, has {sorted(z)}")
            try:
                self.head = self._checked_head(z["W"], z["b"])
            except InputError as e:
                raise BundleError(f"{self.bundle_dir}: '{man.head_file}': {e}") from None
        self._numpy_head = man.adapted and self.head is not None
        self._cb_gains: np.ndarray | None = None  # Set A gain patterns after set_codebook (codebook-aware bundles)
        self.accepted_configurations: list[str] = []  # configurations outside the functionality a codebook-agnostic bundle took

    def check_configuration(self, current: dict[str, Any]) -> Any:
        """Refuse to serve a configuration outside the bundle's ``functionality`` block.

        ``current``: what the UE is configured with (keys of :func:`edgebm.runtime.functionality.configuration_from`:
        ``set_a``, ``set_b``, ``codebook_a`` / ``codebook_b`` sha256, ``bs_array``, ``ue_array``, ``carrier_hz``; any
        subset, optionally ``snr_db``). Raises :class:`InputError` with one line naming the fields that differ; a
        codebook-agnostic bundle accepts another Set A codebook and records it in ``accepted_configurations``.
        Returns the :class:`~edgebm.runtime.functionality.Applicability` (its ``notes``: conditions outside what the
        bundle was validated on, e.g. the SNR).
        """
        from .functionality import check_configuration

        if not isinstance(current, dict):
            raise InputError(f"check_configuration: current must be a dict of configuration fields, got {type(current).__name__}")
        try:
            res = check_configuration(self.manifest.functionality, current)
        except ValueError as e:
            raise InputError(f"check_configuration: {e}") from None
        if not res.applicable:
            raise InputError(f"{self.bundle_dir}: {res.message()}")
        if res.accepted:
            self.accepted_configurations.append(res.message())
        return res

    def set_codebook(self, weights_a: np.ndarray, array_shape: tuple[int, int] | None = None) -> None:
        """Serve another Set A codebook with no retraining (codebook-aware bundles, family ``angular``).

        ``weights_a`` (n_beams, n_tx) complex precoders of the new codebook (panel element order ``r * cols + c``);
        ``array_shape`` the BS array (default: the bundle's). From now on the scores are the graph's APS output
        scored through the new beams' gain patterns (:mod:`edgebm.runtime.codebook_scoring`), the head restarts at
        ``I / (temperature * FEATURE_SCALE)`` for the new beams (on-device updates adapt it) and ``n_a`` is the new codebook's size.
        """
        from .codebook_scoring import FEATURE_SCALE, gain_patterns

        names = set(self.runner.io_shapes()[1])
        if "aps" not in names:
            raise BundleError(f"{self.bundle_dir}: family {self.manifest.get('family')!r} is not codebook-aware (no 'aps' output); "
                              "only 'angular' bundles can take a new codebook -- re-export or adapt the head instead")
        params = self.manifest.get("model_config", {}).get("params", {})
        meta = self.manifest.get("dataset", {}).get("meta", {})
        shape = tuple(array_shape) if array_shape is not None else tuple(meta.get("bs_array", (8, 8)))
        try:
            g = gain_patterns(np.asarray(weights_a), shape, int(params.get("grid", 32)))
        except ValueError as e:
            raise InputError(f"set_codebook: {e}") from None
        t = float(params.get("temperature", 1.0))
        self._cb_gains = g
        self.n_a = int(g.shape[0])
        self.head = (np.eye(self.n_a, dtype=np.float32) / np.float32(t * FEATURE_SCALE), np.zeros(self.n_a, np.float32))
        self._numpy_head = True

    def _features(self, x: np.ndarray) -> np.ndarray:
        if self._cb_gains is not None:
            from .codebook_scoring import codebook_features

            return codebook_features(self._run(x, ["aps"])[0], self._cb_gains)
        return self._run(x, [self.feature_output])[0]  # type: ignore[list-item]

    def _check_graph_matches_manifest(self) -> None:
        """The model's input/output names and fixed widths are the manifest's (a swapped model is refused here,
        not by a shape error in the middle of an emulator run)."""
        man = self.manifest
        ins, outs = self.runner.io_shapes()
        wanted = [n for n in (self.score_output, self.feature_output) if n is not None]
        if self.input_name not in ins or not set(wanted) <= set(outs):
            raise BundleError(f"{self.bundle_dir}: the model's inputs/outputs do not match the manifest "
                              f"(manifest: {self.input_name} -> {', '.join(wanted)}; model: {', '.join(ins)} -> {', '.join(outs)})")
        expect = {self.input_name: (ins, self.n_b), self.score_output: (outs, self.n_a)}
        if self.feature_output is not None and man.feature_dim is not None:
            expect[self.feature_output] = (outs, man.feature_dim)
        for name, (table, width) in expect.items():
            last = table[name][-1] if table[name] else None
            if isinstance(last, int) and last != width:
                raise BundleError(f"{self.bundle_dir}: model tensor {name!r} has width {last}, the manifest says {width}")

    # -- head -------------------------------------------------------------------------------------
    def _checked_head(self, w: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
        fix = "pass W (n_a, F) and b (n_a,) as float arrays"
        w = _as_numeric(w, "head W", fix)
        b = _as_numeric(b, "head b", fix)
        f = (self._cb_gains.shape[0] if getattr(self, "_cb_gains", None) is not None  # after set_codebook: one feature per new beam
             else self.manifest.feature_dim or (self.head[0].shape[1] if self.head is not None else None))
        if w.ndim != 2 or w.shape[0] != self.n_a or (f is not None and w.shape[1] != f):
            raise InputError(f"head W must have shape ({self.n_a}, {f if f is not None else 'F'}), got {w.shape}")
        if b.shape != (self.n_a,):
            raise InputError(f"head b must have shape ({self.n_a},), got {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise InputError("head W and b must be finite (no NaN/inf); the update that produced them diverged")
        return np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)

    def set_head(self, w: Any, b: Any) -> None:
        """Replace the last layer (W (A, F), b (A,)); from now on scores = features @ W.T + b."""
        if self.feature_output is None:
            raise BundleError(f"{self.bundle_dir}: this bundle exposes no feature output; its head cannot be replaced")
        self.head = self._checked_head(w, b)
        self._numpy_head = True

    # -- input checks -------------------------------------------------------------------------
    def _check(self, rsrp_b: Any) -> tuple[np.ndarray, bool]:
        x = _as_numeric(rsrp_b, "rsrp_b", f"pass Set B RSRP in dBm, shape ({self.n_b},) or (batch, {self.n_b})")
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_b:
            raise InputError(f"rsrp_b must have shape ({self.n_b},) or (batch, {self.n_b}) (Set B beams), got {np.shape(rsrp_b)}")
        if x.shape[0] == 0:
            raise InputError(f"rsrp_b is an empty batch (shape {x.shape}); pass at least one row of {self.n_b} Set B RSRPs")
        xmin, xmax = float(x.min()), float(x.max())  # NaN propagates into min/max; one pass each
        if not (np.isfinite(xmin) and np.isfinite(xmax)):
            raise InputError(f"rsrp_b has {int(np.count_nonzero(~np.isfinite(x)))} NaN/inf value(s)")
        lo, hi = RSRP_RANGE_DBM
        if xmin < lo or xmax > hi:
            raise InputError(
                f"rsrp_b values must be RSRP in dBm within [{lo:g}, {hi:g}]; got [{xmin:g}, {xmax:g}] (linear mW or dB-scaled input?)"
            )
        return np.ascontiguousarray(x, dtype=np.float32), single

    def check_labels(self, labels: Any) -> np.ndarray:
        """Set A beam labels as int64 (N,), refusing floats with a fractional part, bools and out-of-range indices."""
        fix = f"labels are Set A beam indices: integers in [0, {self.n_a})"
        y = np.atleast_1d(_as_numeric(labels, "labels", fix))
        if y.ndim != 1:
            raise InputError(f"labels must be one index per sample (1-D), got shape {y.shape}")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
                raise InputError(f"labels must be whole numbers (a float label would be truncated); {fix}")
        if y.size and (y.min() < 0 or y.max() >= self.n_a):
            raise InputError(f"labels out of range [{y.min():g}, {y.max():g}]; {fix}")
        return y.astype(np.int64)

    # -- inference ------------------------------------------------------------------------------
    def _run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self._backend_run(names, {self.input_name: x})

    def _check_one(self, rsrp_b: Any) -> np.ndarray | None:
        """The checks of :meth:`_check` for the common single-sample call (a 1-D float array of n_b
        values), done with a few scalar operations; returns the (1, n_b) float32 row, or None when
        the input is anything else (the general path then checks it)."""
        if type(rsrp_b) is not np.ndarray or rsrp_b.shape != self._one_shape or rsrp_b.dtype.kind != "f":
            return None
        vals = rsrp_b.tolist()  # 16 Python floats: min/max/sum on them beat three numpy reductions
        if not math.isfinite(sum(vals)):  # any NaN or inf makes the sum non-finite (finite dBm cannot overflow)
            return None  # the general path names the bad values
        lo, hi = RSRP_RANGE_DBM
        if min(vals) < lo or max(vals) > hi:
            return None
        return rsrp_b[None] if rsrp_b.dtype == np.float32 and rsrp_b.flags.c_contiguous else np.ascontiguousarray(rsrp_b[None], np.float32)

    def _scores(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        if self._numpy_head:
            w, b = self.head  # type: ignore[misc]
            f = self._features(x)
            if f.shape[-1] != w.shape[1]:  # a model with dynamic widths that disagrees with its head
                raise BundleError(f"{self.bundle_dir}: model features have width {f.shape[-1]}, the head expects {w.shape[1]}")
            # a few rows: einsum's own loop, not BLAS — multi-threaded BLAS spin-waits on a busy core and
            # turned 10 us into tens of ms at p99 in the emulator; batches still use BLAS
            z = np.einsum("bf,af->ba", f, w) if len(f) <= 8 else f @ w.T
            return z + b, "logits"
        s = self._run(x, [self.score_output])[0]
        if s.shape[-1] != self.n_a:
            raise BundleError(f"{self.bundle_dir}: model gives {s.shape[-1]} scores per row, the manifest says n_beams_a = {self.n_a}")
        return s, self.score_kind

    def decision_scores(self, rsrp_b: Any) -> np.ndarray:
        """Log-domain scores over all Set A beams (logits, or log-probabilities for probability
        models): ranking by these avoids the ties that saturated float32 probabilities can have."""
        x, single = self._check(rsrp_b)
        scores, kind = self._scores(x)
        scores = scores.astype(np.float32, copy=False) if kind == "logits" else np.log(np.maximum(scores, 1e-30)).astype(np.float32)
        return scores[0] if single else scores

    def predict_proba(self, rsrp_b: Any) -> np.ndarray:
        """Probabilities over all Set A beams, (batch, n_a) or (n_a,) for one sample."""
        x, single = self._check(rsrp_b)
        scores, kind = self._scores(x)
        probs = softmax(scores.astype(np.float32, copy=False)) if kind == "logits" else scores.astype(np.float32, copy=False)
        return probs[0] if single else probs

    def predict(self, rsrp_b: Any, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` Set A beams, best first, and their probabilities.

        ``rsrp_b``: (n_b,) or (batch, n_b) Set B RSRP in dBm. Returns ``(beams, probs)`` with shapes
        (k,) or (batch, k); beams are int64 Set A indices (see :meth:`beam_direction`).
        """
        if (type(k) is not int and not _is_int(k)) or not 1 <= k <= self.n_a:
            raise InputError(f"k must be an integer in [1, {self.n_a}] (beams to return), got {k!r}")
        x = self._check_one(rsrp_b)
        if x is not None:  # one sample: one score row, softmax and top-k on it (same arithmetic as the batch path)
            if self._numpy_head:
                z, kind = self._scores(x)
                z = z[0]
            else:
                z, kind = self._backend_run(self._score_names, {self.input_name: x})[0][0], self.score_kind
                if z.shape[0] != self.n_a:
                    raise BundleError(f"{self.bundle_dir}: model gives {z.shape[0]} scores per row, the manifest says n_beams_a = {self.n_a}")
            if kind != "logits":
                p = z.astype(np.float32, copy=False)
            elif k == 1:  # the best beam's probability alone: exp(z - max) / sum, as numerics.softmax computes it
                i = int(z.argmax())
                e = z - z[i]
                np.exp(e, out=e)
                return np.array([i]), e[i : i + 1] / e.sum()
            else:  # q = -probabilities (x / -s is exactly -(x / s)): a stable ascending sort of q is the batch path's order
                q = z - z.max()
                np.exp(q, out=q)
                q /= -q.sum()
                top = q.argsort(kind="stable")[:k]
                return top, -q[top]
            if k == 1:
                i = int(p.argmax())
                return np.array([i]), p[i : i + 1]
            top = np.argsort(-p, kind="stable")[:k]
            return top, p[top]
        probs = self.predict_proba(rsrp_b)
        p2 = probs.reshape(1, -1) if probs.ndim == 1 else probs
        top = np.argsort(-p2, axis=1, kind="stable")[:, :k]
        tp = np.take_along_axis(p2, top, axis=1)
        return (top[0], tp[0]) if probs.ndim == 1 else (top, tp)

    def features(self, rsrp_b: Any) -> np.ndarray:
        """Penultimate features (batch, F) that the on-device head update trains on."""
        if self.feature_output is None:
            raise BundleError(f"{self.bundle_dir}: this bundle exposes no feature output")
        x, single = self._check(rsrp_b)
        f = self._features(x)
        return f[0] if single else f

    # -- codebook ------------------------------------------------------------------------------
    @property
    def codebook(self) -> dict[str, np.ndarray]:
        """Arrays of the bundle's codebook file (``cb_a_az``, ``cb_a_el``, weights, ``cb_children``...), verified on first use."""
        if self._codebook is None:
            name = self.manifest.codebook_file
            if name is None:
                raise BundleError(f"{self.bundle_dir}: the manifest names no codebook file")
            cb = _npz(self.bundle.read_bytes(name), name, self.bundle.root)
            for key in ("cb_a_az", "cb_a_el"):
                v = cb.get(key)
                if v is None or v.shape != (self.n_a,) or v.dtype.kind != "f" or not np.isfinite(v).all():
                    raise BundleError(f"{self.bundle_dir}: '{name}' field '{key}' must be {self.n_a} finite angles in degrees")
            self._codebook = cb
        return self._codebook

    def beam_direction(self, beam: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pointing (azimuth, elevation-from-zenith) in degrees of Set A beam index/indices."""
        idx = _as_numeric(beam, "beam", f"pass Set A beam indices in [0, {self.n_a})")
        if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= self.n_a)):
            raise InputError(f"beam must be integer Set A indices in [0, {self.n_a}), got {beam!r}")
        cb = self.codebook
        return cb["cb_a_az"][idx], cb["cb_a_el"][idx]
