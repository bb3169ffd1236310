"""`Predictor`: run a bundle on the UE (numpy + onnxruntime only, never torch or sklearn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bundle import BundleError, read_manifest
from .session import ort_session

from ..errors import InputError

__all__ = ["Predictor", "InputError"]

#: plausible received power range for an RSRP in dBm; values outside are almost surely wrong units
RSRP_RANGE_DBM = (-300.0, 60.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    """Row softmax in float32 (inputs are float32 logits; the max shift keeps exp in range)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


class Predictor:
    """Load ``bundle_dir`` (hashes and schema checked) and predict the best Set A beams.

    ``threads`` defaults to the profile's thread count recorded in the manifest.
    A bundle whose gate verdict is not ``pass`` (written with ``--force``) is refused unless
    ``allow_failed=True``.
    """

    def __init__(self, bundle_dir: str | Path, threads: int | None = None, allow_failed: bool = False) -> None:
        self.bundle_dir = Path(bundle_dir)
        self.manifest: dict[str, Any] = read_manifest(self.bundle_dir, verify=True)
        if self.manifest["verdict"] != "pass" and not allow_failed:
            raise BundleError(
                f"{self.bundle_dir}: bundle failed its budget gate (verdict {self.manifest['verdict']!r}); "
                "pass allow_failed=True to load it anyway"
            )
        inp = self.manifest["inputs"][0]
        self.input_name: str = inp["name"]
        self.n_b: int = int(inp["shape"][-1])
        self.n_a: int = int(self.manifest["n_beams_a"])
        self.score_output: str = self.manifest["score_output"]
        self.score_kind: str = self.manifest["score_kind"]  # "logits" or "probabilities"
        self.feature_output: str | None = self.manifest.get("feature_output")
        try:  # the profile's thread count, capped at this host's cores (edgebm.runtime.session)
            self.session = ort_session(self.bundle_dir / self.manifest["model_file"], threads or self.manifest.get("threads", 1))
        except Exception as e:  # onnxruntime raises its own exception types
            raise BundleError(f"{self.bundle_dir}: onnxruntime cannot load the model: {str(e).splitlines()[0]}") from None
        self._codebook: dict[str, np.ndarray] | None = None
        # last layer as numpy arrays (head.npz): used for inference once adapted on the device
        self.head: tuple[np.ndarray, np.ndarray] | None = None
        if "head.npz" in self.manifest["files"]:
            with np.load(self.bundle_dir / "head.npz", allow_pickle=False) as z:
                self.head = (z["W"].astype(np.float32), z["b"].astype(np.float32))
        self._numpy_head = bool(self.manifest.get("adapted", False)) and self.head is not None

    def set_head(self, w: np.ndarray, b: np.ndarray) -> None:
        """Replace the last layer (W (A, F), b (A,)); from now on scores = features @ W.T + b."""
        if self.head is not None and (w.shape != self.head[0].shape or b.shape != self.head[1].shape):
            raise InputError(f"head must be W {self.head[0].shape}, b {self.head[1].shape}; got {w.shape}, {b.shape}")
        self.head = (np.asarray(w, np.float32), np.asarray(b, np.float32))
        self._numpy_head = True

    # -- input checks -------------------------------------------------------------------------
    def _check(self, rsrp_b: Any) -> tuple[np.ndarray, bool]:
        x = np.asarray(rsrp_b)
        if x.dtype.kind not in "fiu":
            raise InputError(f"rsrp_b must be numeric dBm values, got dtype {x.dtype}")
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_b:
            raise InputError(f"rsrp_b must have shape ({self.n_b},) or (batch, {self.n_b}) (Set B beams), got {np.shape(rsrp_b)}")
        xmin, xmax = float(x.min()), float(x.max())  # NaN propagates into min/max; one pass each
        if not (np.isfinite(xmin) and np.isfinite(xmax)):
            raise InputError(f"rsrp_b has {int(np.count_nonzero(~np.isfinite(x)))} NaN/inf value(s)")
        lo, hi = RSRP_RANGE_DBM
        if xmin < lo or xmax > hi:
            raise InputError(
                f"rsrp_b values must be RSRP in dBm within [{lo:g}, {hi:g}]; got [{xmin:g}, {xmax:g}] (linear mW or dB-scaled input?)"
            )
        return np.ascontiguousarray(x, dtype=np.float32), single

    # -- inference ------------------------------------------------------------------------------
    def _run(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        return self.session.run(names, {self.input_name: x})

    def _scores(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        if self._numpy_head:
            w, b = self.head  # type: ignore[misc]
            f = self._run(x, [self.feature_output])[0]  # type: ignore[list-item]
            # a few rows: einsum's own loop, not BLAS — multi-threaded BLAS spin-waits on a busy core and
            # turned 10 us into tens of ms at p99 in the emulator; batches still use BLAS
            z = np.einsum("bf,af->ba", f, w) if len(f) <= 8 else f @ w.T
            return z + b, "logits"
        return self._run(x, [self.score_output])[0], self.score_kind

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
        probs = _softmax(scores.astype(np.float32, copy=False)) if kind == "logits" else scores.astype(np.float32, copy=False)
        return probs[0] if single else probs

    def predict(self, rsrp_b: Any, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` Set A beams, best first, and their probabilities.

        ``rsrp_b``: (n_b,) or (batch, n_b) Set B RSRP in dBm. Returns ``(beams, probs)`` with shapes
        (k,) or (batch, k); beams are int64 Set A indices (see :meth:`beam_direction`).
        """
        if not 1 <= k <= self.n_a:
            raise InputError(f"k must be in [1, {self.n_a}], got {k}")
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
        f = self._run(x, [self.feature_output])[0]
        return f[0] if single else f

    # -- codebook ------------------------------------------------------------------------------
    @property
    def codebook(self) -> dict[str, np.ndarray]:
        """Arrays of ``codebook.npz`` (``cb_a_az``, ``cb_a_el``, weights, ``cb_children``...)."""
        if self._codebook is None:
            with np.load(self.bundle_dir / "codebook.npz", allow_pickle=False) as z:
                self._codebook = {k: z[k] for k in z.files}
        return self._codebook

    def beam_direction(self, beam: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pointing (azimuth, elevation-from-zenith) in degrees of Set A beam index/indices."""
        cb = self.codebook
        return cb["cb_a_az"][beam], cb["cb_a_el"][beam]
