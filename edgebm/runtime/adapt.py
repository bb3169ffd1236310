"""Head-only incremental update on the UE (numpy only).

The bundle's graph exposes the penultimate features; the last layer (``head.npz``: ``W`` (A, F),
``b`` (A,)) is trained here by mini-batch SGD on softmax cross-entropy, with a replay buffer so new
labels do not wipe out what the model knew. Labels come from fallback sweeps (hierarchical or
exhaustive) the UE performs anyway. Each update is bounded by the profile's ``max_update_ms``
(device-scaled wall time) and the head must not exceed ``max_trainable_params``.

Written here rather than with a training framework: the UE runtime must stay torch-free, and the
update is one matrix product and its gradient.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..numerics import softmax
from .bundle import BundleError, write_bundle
from .predictor import InputError, Predictor

__all__ = ["HeadAdapter", "UpdateStats", "softmax_ce_grad"]


@dataclass(frozen=True)
class UpdateStats:
    """One call of :meth:`HeadAdapter.update`."""

    n_new: int  # labelled samples added
    steps: int  # SGD steps taken
    host_ms: float  # wall time on this host, ms
    device_ms: float  # host_ms scaled to the profile's device, ms
    budget_ms: float  # profile max_update_ms
    loss_before: float  # CE on the new samples before the update
    loss_after: float  # ... and after


def softmax_ce_grad(feats: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray, l2: float = 0.0) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean softmax cross-entropy of ``feats @ w.T + b`` against integer ``labels``, and its
    gradients (dW (A, F), db (A,)); ``l2`` adds ``l2/2 ||W||^2``."""
    p = softmax(feats @ w.T + b)
    n = len(labels)
    loss = float(-np.mean(np.log(p[np.arange(n), labels] + 1e-12)) + 0.5 * l2 * np.sum(w * w))
    p[np.arange(n), labels] -= 1.0
    p /= n
    return loss, p.T @ feats + l2 * w, p.sum(0)


class HeadAdapter:
    """Incremental SGD on a predictor's head with a replay buffer.

    ``replay`` is the buffer capacity (samples, ring buffer); each step draws ``batch`` samples,
    half from the newest labels and half from the buffer. ``max_update_ms`` and
    ``max_trainable_params`` default to the bundle's profile. All draws from ``seed``.
    """

    def __init__(
        self,
        predictor: Predictor,
        lr: float = 0.1,
        replay: int = 1024,
        batch: int = 64,
        steps: int = 20,
        l2: float = 1e-4,
        seed: int = 0,
        max_update_ms: float | None = None,
        slowdown: float | None = None,
    ) -> None:
        if predictor.feature_output is None or predictor.head is None:
            raise BundleError(f"{predictor.bundle_dir}: bundle has no feature output / head.npz; it cannot be adapted on device")
        prof = predictor.manifest.profile_config
        adapt = prof.get("adaptation", {})
        self.pred = predictor
        self.w, self.b = predictor.head[0].copy(), predictor.head[1].copy()
        limit = int(adapt.get("max_trainable_params", self.w.size + self.b.size))
        if self.w.size + self.b.size > limit:
            raise BundleError(f"head has {self.w.size + self.b.size} trainable parameters, profile allows {limit}")
        self.max_update_ms = float(max_update_ms if max_update_ms is not None else adapt.get("max_update_ms", 10.0))
        self.slowdown = float(slowdown if slowdown is not None else prof.get("compute", {}).get("slowdown_vs_host", 1.0))
        self.lr, self.batch, self.steps, self.l2 = lr, batch, steps, l2
        self.rng = np.random.default_rng(seed)
        f = self.w.shape[1]
        self.buf_x = np.zeros((replay, f), np.float32)
        self.buf_y = np.zeros(replay, np.int64)
        self.n_seen = 0
        self.updates = 0
        # the UE update runs single-threaded: OpenBLAS's worker threads spin-wait on a busy core and made
        # one 20-step update take over a second on a loaded 2-core host (12 ms with one thread)
        try:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            self._blas = None
        # the first run of the feature output allocates its buffers: do it now, not inside a timed update
        predictor.features(np.full((1, predictor.n_b), -100.0, np.float32))
        self.history: list[UpdateStats] = []

    @property
    def n_buffered(self) -> int:
        return min(self.n_seen, len(self.buf_y))

    def _push(self, feats: np.ndarray, labels: np.ndarray) -> None:
        cap = len(self.buf_y)
        idx = (self.n_seen + np.arange(len(labels))) % cap
        self.buf_x[idx] = feats[-cap:] if len(labels) > cap else feats
        self.buf_y[idx] = labels[-cap:] if len(labels) > cap else labels
        self.n_seen += len(labels)

    def update(self, rsrp_b: np.ndarray, labels: np.ndarray) -> UpdateStats:
        """Add labelled samples (Set B RSRP in dBm, best Set A beam) and take SGD steps until
        ``steps`` are done or the device-scaled time reaches ``max_update_ms``."""
        if self._blas is None:
            return self._update(rsrp_b, labels)
        with self._blas.limit(limits=1, user_api="blas"):
            return self._update(rsrp_b, labels)

    def _update(self, rsrp_b: np.ndarray, labels: np.ndarray) -> UpdateStats:
        labels = self.pred.check_labels(labels)  # no silent truncation of float labels, no out-of-range index
        t0 = time.perf_counter()
        feats = np.atleast_2d(self.pred.features(rsrp_b)).astype(np.float32)
        if len(feats) != len(labels):
            raise InputError(f"{len(feats)} samples but {len(labels)} labels")
        loss_before, _, _ = softmax_ce_grad(feats, labels, self.w, self.b)
        self._push(feats, labels)
        budget_host_ms = self.max_update_ms / max(self.slowdown, 1e-9)
        steps = 0
        half = self.batch // 2
        for _ in range(self.steps):
            new = self.rng.integers(0, len(labels), size=min(half, len(labels)))
            old = self.rng.integers(0, self.n_buffered, size=self.batch - len(new))
            x = np.concatenate([feats[new], self.buf_x[old]])
            y = np.concatenate([labels[new], self.buf_y[old]])
            _, gw, gb = softmax_ce_grad(x, y, self.w, self.b, self.l2)
            self.w -= self.lr * gw
            self.b -= self.lr * gb
            steps += 1
            if (time.perf_counter() - t0) * 1e3 >= budget_host_ms * 0.9:
                break
        host_ms = (time.perf_counter() - t0) * 1e3
        loss_after, _, _ = softmax_ce_grad(feats, labels, self.w, self.b)
        self.pred.set_head(self.w, self.b)
        self.updates += 1
        st = UpdateStats(len(labels), steps, host_ms, host_ms * self.slowdown, self.max_update_ms, loss_before, loss_after)
        self.history.append(st)
        return st

    def save(self, out_dir: str | Path) -> Path:
        """Write a new bundle version at ``out_dir`` with the adapted head; the original is untouched.

        Every other file is copied from the source bundle as verified bytes (names from its validated
        manifest, so nothing is read or written outside the two folders). ``out_dir`` must be new, empty or
        an earlier bundle, and outside the source bundle. The copy is unsigned (the device does not hold
        the exporter's key): ``adapted_from`` records the source's ``bundle_digest`` and signer.
        """
        src = self.pred.bundle
        out_dir = Path(out_dir)
        target = out_dir.resolve()
        if target == src.root or src.root in target.parents:
            raise BundleError(f"{out_dir}: refusing to write inside the original bundle {src.root}; give a new folder")
        man = self.pred.manifest
        head_name = man.head_file or "head.npz"
        writers: dict[str, Any] = {n: (lambda p, n=n: p.write_bytes(src.read_bytes(n))) for n in man.files if n != head_name}

        def write_head(p: Path) -> None:
            with open(p, "wb") as f:
                np.savez(f, W=self.w.astype(np.float32), b=self.b.astype(np.float32))

        writers[head_name] = write_head
        meta = {k: v for k, v in man.to_dict().items() if k not in ("files", "schema", "bundle_digest", "signature")}
        meta["head_file"] = head_name
        meta["head_version"] = man.head_version + 1
        meta["adapted"] = True
        meta["adapted_from"] = {"bundle": str(src.root), "bundle_digest": man.bundle_digest, "signed_by": src.signed_by}
        meta["adaptation_log"] = {"updates": self.updates, "samples_seen": self.n_seen,
                                  "mean_device_ms": float(np.mean([h.device_ms for h in self.history])) if self.history else 0.0}
        return write_bundle(out_dir, writers, meta)
