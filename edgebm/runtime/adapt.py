"""Head-only incremental update on the UE (numpy only, single-threaded, bounded in time).

The bundle's graph exposes the penultimate features; the last layer (``head.npz``: ``W`` (A, F),
``b`` (A,)) is trained here by mini-batch SGD on softmax cross-entropy, with a replay buffer so new
labels do not wipe out what was learned from earlier ones and an L2 pull towards the shipped head
(not towards zero). Labels come from the sweeps (hierarchical fallback, periodic full sweeps) the UE
performs anyway.

Bounded: every call costs at most the profile's ``max_update_ms`` of device time (host CPU time of the
calling thread x ``slowdown_vs_host``; CPU time, not wall time, because on a shared host wall time also
measures the neighbours' load, while the UE runs the update on its own core — the wall time is reported
next to it), counting everything — input checks, the features pass over the new samples,
the SGD steps, the acceptance check and the head copy. The cost of each piece is estimated from a
calibration at construction and then from the running mean of what was measured; a piece is started
only when the estimate says it still fits, so an update never *starts* work that would overrun.
Samples whose features pass does not fit wait in a queue for the next call (any batch size works).
What was really spent is measured and reported (``UpdateStats.device_ms``, ``overrun``).

Guarded: a share of the new labels (``holdout``) is held back and never trained on; an update that
raises the cross-entropy on the held-back labels is rolled back (adapting a healthy head can make it
worse — seed 000's array case).

Written here rather than with a training framework: the UE runtime must stay torch-free, and the
update is one matrix product and its gradient.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..numerics import softmax
from .bundle import BundleError, write_bundle
from .predictor import InputError, Predictor

__all__ = ["HeadAdapter", "UpdateStats", "softmax_ce_grad"]


@dataclass(frozen=True)
class UpdateStats:
    """One call of :meth:`HeadAdapter.update`. Times in ms."""

    n_new: int  # labelled samples handed to this call
    n_trained: int  # samples whose features entered the replay buffer in this call
    n_holdout: int  # ... that were held back for the acceptance check instead
    n_pending: int  # samples still queued (their features pass did not fit in this call's budget)
    steps: int  # SGD steps taken
    host_ms: float  # CPU time of the whole call on this host (the calling thread; the update is single-threaded)
    device_ms: float  # host_ms x the profile's slowdown_vs_host
    budget_ms: float  # the profile's max_update_ms (device time)
    overrun: bool  # device_ms > budget_ms: an estimate was wrong (reported, never hidden)
    accepted: bool  # False: the steps raised the held-out loss and were rolled back
    loss_before: float  # cross-entropy on the held-back labels before the steps (NaN without any)
    loss_after: float  # ... after the steps (before a rollback)
    wall_ms: float  # wall time of the call on this host (includes preemption by other processes)
    stop: str  # why the step loop ended: "steps" (all done), "budget" (next piece would not fit), "no data", "holdout" (fewer
    # than min_holdout labels held back yet: no update can be judged, so none is made)


def softmax_ce_grad(
    feats: np.ndarray, labels: np.ndarray, w: np.ndarray, b: np.ndarray, l2: float = 0.0, w_ref: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean softmax cross-entropy of ``feats @ w.T + b`` against integer ``labels``, and its gradients
    (dW (A, F), db (A,)); ``l2`` adds ``l2/2 ||W - w_ref||^2`` (``w_ref`` = 0 when None)."""
    p = softmax(feats @ w.T + b)
    n = len(labels)
    dw = w if w_ref is None else w - w_ref
    loss = float(-np.mean(np.log(p[np.arange(n), labels] + 1e-12)) + 0.5 * l2 * np.sum(dw * dw))
    p[np.arange(n), labels] -= 1.0
    p /= n
    return loss, p.T @ feats + l2 * dw, p.sum(0)


class _Cost:
    """Running estimate of one piece of work, ms: the median of the last ``window`` measurements, seeded by a
    calibration. A median, not a mean: one call preempted for 100 ms on a busy host would otherwise hold every
    step back for the next ``window`` updates (the outlier itself shows as an overrun)."""

    def __init__(self, first: float, window: int = 32) -> None:
        self.seen: deque[float] = deque([first], maxlen=window)

    def add(self, ms: float) -> None:
        self.seen.append(ms)

    @property
    def ms(self) -> float:
        return float(statistics.median(self.seen))  # pure Python: np.median costs ~70 us, more than a small step


def _positive(name: str, value: Any, integer: bool = False, zero_ok: bool = False) -> None:
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, bool) or not ok_type or not math.isfinite(float(value)) or (value < 0 if zero_ok else value <= 0):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"HeadAdapter {name}", f"got {value!r}", f"give {kind} {'>= 0' if zero_ok else '> 0'}")


class HeadAdapter:
    """Incremental, time-bounded, guarded SGD on a predictor's head.

    ``replay``: replay-buffer capacity (samples, ring buffer); each step draws ``batch`` samples, half
    from the newest labels and half from the buffer. ``holdout``: share of the labels held back for the
    acceptance check (ring buffer of ``max(16, replay // 4)``; 0 disables the guard); no step is taken before
    ``min_holdout`` labels are held back. ``l2``: pull towards
    the shipped head. ``max_update_ms`` (device ms) and ``slowdown`` default to the bundle's profile;
    the head must not exceed the profile's ``max_trainable_params``. All draws from ``seed``.
    ``clock`` (seconds; default :func:`time.thread_time`, the calling thread's CPU time) is injectable for tests.
    """

    def __init__(
        self,
        predictor: Predictor,
        lr: float = 0.1,
        replay: int = 1024,
        batch: int = 64,
        steps: int = 20,
        l2: float = 1e-3,
        seed: int = 0,
        max_update_ms: float | None = None,
        slowdown: float | None = None,
        holdout: float = 0.2,
        min_holdout: int = 8,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if predictor.feature_output is None or predictor.head is None:
            raise BundleError(f"{predictor.bundle_dir}: bundle has no feature output / head.npz; it cannot be adapted on device")
        _positive("lr", lr)
        _positive("replay", replay, integer=True)
        _positive("batch", batch, integer=True)
        _positive("steps", steps, integer=True)
        _positive("l2", l2, zero_ok=True)
        _positive("seed", seed, integer=True, zero_ok=True)
        _positive("min_holdout", min_holdout, integer=True, zero_ok=True)
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0.0 <= holdout < 1.0:
            raise ConfigError("HeadAdapter holdout", f"got {holdout!r}", "give a share in [0, 1) of the labels to hold back")
        prof = predictor.manifest.profile_config
        adapt = prof.get("adaptation", {})
        self.pred = predictor
        self.w, self.b = predictor.head[0].astype(np.float32), predictor.head[1].astype(np.float32)
        self.w0 = self.w.copy()
        if adapt.get("on_device_update", True) is False:
            raise BundleError(f"{predictor.bundle_dir}: profile '{predictor.manifest.profile}' does not update models on the device "
                              "(adaptation.on_device_update = false)")
        limit = int(adapt.get("max_trainable_params", self.w.size + self.b.size))
        if self.w.size + self.b.size > limit:
            raise BundleError(f"head has {self.w.size + self.b.size} trainable parameters, profile allows {limit}")
        self.max_update_ms = float(max_update_ms if max_update_ms is not None else adapt.get("max_update_ms", 10.0))
        self.slowdown = float(slowdown if slowdown is not None else prof.get("compute", {}).get("slowdown_vs_host", 1.0))
        _positive("max_update_ms", self.max_update_ms)
        _positive("slowdown", self.slowdown)
        self.lr, self.batch, self.steps, self.l2, self.holdout = float(lr), int(batch), int(steps), float(l2), float(holdout)
        self.min_holdout = int(min_holdout) if holdout > 0 else 0
        self.rng = np.random.default_rng(seed)
        self.clock = clock or time.thread_time
        f = self.w.shape[1]
        self.buf_x, self.buf_y = np.zeros((int(replay), f), np.float32), np.zeros(int(replay), np.int64)
        self.hold_x, self.hold_y = np.zeros((max(16, int(replay) // 4), f), np.float32), np.zeros(max(16, int(replay) // 4), np.int64)
        self.n_seen = 0  # labels that entered the replay buffer since the last reset
        self.n_held = 0  # ... the hold-out buffer
        self._queue: list[tuple[np.ndarray, np.ndarray]] = []
        self.updates = 0
        self.history: list[UpdateStats] = []
        # the UE update runs single-threaded: OpenBLAS's worker threads spin-wait on a busy core and made
        # one 20-step update take over a second on a loaded 2-core host (12 ms with one thread)
        try:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            self._blas = None
        with self._one_thread():
            self._calibrate()

    # -- bookkeeping ------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        """Set A size of the head (labels must be in ``[0, n_classes)``)."""
        return int(self.w.shape[0])

    @property
    def n_buffered(self) -> int:
        return min(self.n_seen, len(self.buf_y))

    @property
    def n_pending(self) -> int:
        return int(sum(len(y) for _, y in self._queue))

    def reset(self) -> None:
        """Forget buffered and queued labels (after a domain change they describe the old domain); the head stays."""
        self.n_seen = self.n_held = 0
        self._queue = []

    def cost_estimates_ms(self) -> dict[str, float]:
        """Current host-ms estimates of each piece of an update (features per row and fixed, step, loss, head copy)."""
        return {"features_fixed": self._feat_fixed, "features_per_row": self._feat_row.ms, "step": self._step.ms,
                "loss": self._loss.ms, "copy": self._copy.ms, "overhead": self._over.ms}

    def timing(self) -> dict[str, float]:
        """Measured device time of every update so far, ms (mean, p99, max), the budget, overruns and rollbacks."""
        ms = np.array([h.device_ms for h in self.history]) if self.history else np.zeros(1)
        wall = np.array([h.wall_ms for h in self.history]) if self.history else np.zeros(1)
        return {"updates": len(self.history), "device_ms_mean": float(ms.mean()), "device_ms_p99": float(np.percentile(ms, 99)),
                "device_ms_max": float(ms.max()), "host_wall_ms_p99": float(np.percentile(wall, 99)), "budget_ms": self.max_update_ms,
                "overruns": sum(h.overrun for h in self.history), "rolled_back": sum(not h.accepted for h in self.history)}

    def _one_thread(self) -> Any:
        import contextlib

        return self._blas.limit(limits=1, user_api="blas") if self._blas is not None else contextlib.nullcontext()

    def _ms(self, t0: float) -> float:
        return (self.clock() - t0) * 1e3

    def _calibrate(self, repeats: int = 3) -> None:
        """Time each piece ``repeats`` times and keep the median (after a warm-up call that allocates the session's
        buffers)."""
        n_b = self.pred.n_b
        x1, x64 = np.full((1, n_b), -100.0, np.float32), np.full((64, n_b), -100.0, np.float32)
        self.pred.features(x1)

        def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
            times, out = [], None
            for _ in range(repeats):
                t0 = self.clock()
                out = fn()
                times.append(self._ms(t0))
            return float(np.median(times)), out

        t1, _ = timed(lambda: self.pred.features(x1))
        t64, feats = timed(lambda: self.pred.features(x64))
        feats = np.atleast_2d(feats).astype(np.float32)
        self._feat_fixed = t1
        self._feat_row = _Cost(max(t64 - t1, 0.0) / 63)
        xb = np.resize(feats, (self.batch, feats.shape[1]))
        yb = np.arange(self.batch) % self.n_classes

        def step() -> None:
            _, gw, gb = softmax_ce_grad(xb, yb, self.w, self.b, self.l2, self.w0)
            _ = self.w - self.lr * gw, self.b - self.lr * gb

        self._step = _Cost(timed(step)[0])
        xh = np.resize(feats, (len(self.hold_y), feats.shape[1]))
        yh = np.arange(len(xh)) % self.n_classes
        self._loss = _Cost(timed(lambda: softmax_ce_grad(xh, yh, self.w, self.b))[0])
        self._copy = _Cost(timed(lambda: (self.w.copy(), self.b.copy()))[0])
        self._over = _Cost(0.0)  # closing time outside the loss and the copy (bookkeeping), learned from each call

    # -- the update -------------------------------------------------------------------------------
    def update(self, rsrp_b: Any, labels: Any) -> UpdateStats:
        """Add labelled samples (Set B RSRP in dBm (n, |B|), best Set A beam (n,)) and spend at most
        ``max_update_ms`` of device time on them (see the module docstring for what is counted)."""
        with self._one_thread():
            return self._update(rsrp_b, labels)

    def _update(self, rsrp_b: Any, labels: Any) -> UpdateStats:
        wall0 = time.perf_counter()
        t0 = self.clock()
        budget = self.max_update_ms / self.slowdown  # host ms
        y = self.pred.check_labels(labels)  # integers (or whole floats) in [0, A); no silent truncation
        x = np.asarray(rsrp_b)
        x = x[None, :] if x.ndim == 1 else x
        if len(x) != len(y):
            raise InputError(f"{len(x)} samples but {len(y)} labels")
        if len(y):
            x, _ = self.pred._check(x)  # the predictor's own checks (shape, NaN, units), before anything is queued
            self._queue.append((x, y))

        def fits(ms: float) -> bool:
            return self._ms(t0) + ms <= budget

        # the estimates of this call (medians); the time spent before the steps is in the elapsed time already, the
        # closing bookkeeping after them is estimated (est_over) from what earlier calls spent outside the closing pieces
        est_step, est_loss, est_copy, est_row, est_over = self._step.ms, self._loss.ms, self._copy.ms, self._feat_row.ms, self._over.ms
        closing_pieces_ms = 0.0

        # 1. features of as many queued samples as fit (FIFO), leaving room for one step, two losses, the copy and the
        #    closing bookkeeping
        reserve = est_step + 2 * est_loss + est_copy + est_over
        room = budget - self._ms(t0) - reserve - self._feat_fixed
        n_rows = min(self.n_pending, int(room / est_row) if est_row > 0 else self.n_pending) if room > 0 else 0
        new_x, new_y = self._take(n_rows)
        n_train = n_hold = 0
        if len(new_y):
            t1 = self.clock()
            feats = np.atleast_2d(self.pred.features(new_x)).astype(np.float32)
            self._feat_row.add(max(self._ms(t1) - self._feat_fixed, 0.0) / len(new_y))
            hold = self._hold_mask(len(new_y))
            self._push(self.hold_x, self.hold_y, "n_held", feats[hold], new_y[hold])
            self._push(self.buf_x, self.buf_y, "n_seen", feats[~hold], new_y[~hold])
            n_train, n_hold = int((~hold).sum()), int(hold.sum())
            fresh_x, fresh_y = feats[~hold], new_y[~hold]
        else:
            fresh_x, fresh_y = np.zeros((0, self.w.shape[1]), np.float32), np.zeros(0, np.int64)

        # 2. SGD steps, each started only if it and the closing check still fit, and only once enough labels are held
        #    back to judge the result
        guard = min(self.n_held, len(self.hold_y)) > 0
        ready = min(self.n_held, len(self.hold_y)) >= self.min_holdout
        hx, hy = self.hold_x[: min(self.n_held, len(self.hold_y))], self.hold_y[: min(self.n_held, len(self.hold_y))]
        steps, stop = 0, "no data"
        loss_before = loss_after = float("nan")
        w_old, b_old = self.w.copy(), self.b.copy()
        closing = (est_loss if guard else 0.0) + est_copy + est_over
        if not ready:
            stop = "budget" if self.n_pending else "holdout"  # queued labels: the budget did not reach their features pass
        elif self.n_buffered and fits((est_loss if guard else 0.0) + est_step + closing):
            if guard:
                t1 = self.clock()
                loss_before = softmax_ce_grad(hx, hy, self.w, self.b)[0]
                self._loss.add(self._ms(t1))
            stop = "steps"
            half = min(self.batch // 2, len(fresh_y))
            for _ in range(self.steps):
                if not fits(est_step + closing):
                    stop = "budget"
                    break
                t1 = self.clock()
                new = self.rng.integers(0, len(fresh_y), size=half) if half else np.zeros(0, np.int64)
                old = self.rng.integers(0, self.n_buffered, size=self.batch - half)
                xb = np.concatenate([fresh_x[new], self.buf_x[old]])
                yb = np.concatenate([fresh_y[new], self.buf_y[old]])
                _, gw, gb = softmax_ce_grad(xb, yb, self.w, self.b, self.l2, self.w0)
                self.w -= self.lr * gw
                self.b -= self.lr * gb
                self._step.add(self._ms(t1))
                steps += 1
        elif self.n_buffered or self.n_pending:
            stop = "budget"

        # 3. acceptance check and head copy
        t_close = self.clock()
        accepted = True
        if steps:
            if guard:
                t1 = self.clock()
                loss_after = softmax_ce_grad(hx, hy, self.w, self.b)[0]
                ms = self._ms(t1)
                closing_pieces_ms += ms
                self._loss.add(ms)
                accepted = loss_after <= loss_before
            if accepted:
                t1 = self.clock()
                self.pred.set_head(self.w.copy(), self.b.copy())
                ms = self._ms(t1)
                closing_pieces_ms += ms
                self._copy.add(ms)
            else:
                self.w, self.b = w_old, b_old
        host_ms = self._ms(t0)
        self._over.add(max(self._ms(t_close) - closing_pieces_ms, 0.0))
        self.updates += 1
        st = UpdateStats(len(y), n_train, n_hold, self.n_pending, steps, host_ms, host_ms * self.slowdown, self.max_update_ms,
                         host_ms * self.slowdown > self.max_update_ms, accepted, loss_before, loss_after,
                         (time.perf_counter() - wall0) * 1e3, stop)
        self.history.append(st)
        return st

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Pop the ``n`` oldest queued samples."""
        xs, ys = [], []
        while n > 0 and self._queue:
            x, y = self._queue[0]
            xs.append(x[:n])
            ys.append(y[:n])
            if len(y) <= n:
                self._queue.pop(0)
            else:
                self._queue[0] = (x[n:], y[n:])
            n -= len(ys[-1])
        if not ys:
            return np.zeros((0, self.pred.n_b), np.float32), np.zeros(0, np.int64)
        return np.concatenate(xs), np.concatenate(ys)

    def _hold_mask(self, n: int) -> np.ndarray:
        """Which of ``n`` new samples to hold back: enough that ``holdout`` of all labels since the reset are held."""
        total = self.n_seen + self.n_held + n
        k = min(n, max(0, math.ceil(self.holdout * total) - self.n_held))
        mask = np.zeros(n, dtype=bool)
        mask[self.rng.permutation(n)[:k]] = True
        return mask

    def _push(self, bx: np.ndarray, by: np.ndarray, counter: str, feats: np.ndarray, labels: np.ndarray) -> None:
        """Append to a ring buffer; a batch larger than the buffer keeps its newest ``len(by)`` samples."""
        cap = len(by)
        seen = getattr(self, counter)
        keep = slice(max(0, len(labels) - cap), len(labels))
        idx = (seen + np.arange(keep.start, keep.stop)) % cap
        bx[idx], by[idx] = feats[keep], labels[keep]
        setattr(self, counter, seen + len(labels))

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
            from ..data.npz import write_npz  # deterministic bytes; imported here: numpy-only, but keeps the runtime import light

            with open(p, "wb") as f:
                write_npz(f, {"W": self.w.astype(np.float32), "b": self.b.astype(np.float32)})

        writers[head_name] = write_head
        meta = {k: v for k, v in man.to_dict().items() if k not in ("files", "schema", "bundle_digest", "signature")}
        meta["head_file"] = head_name
        meta["head_version"] = man.head_version + 1
        meta["adapted"] = True
        meta["adapted_from"] = {"bundle": str(src.root), "bundle_digest": man.bundle_digest, "signed_by": src.signed_by}
        meta["adaptation_log"] = {"updates": self.updates, "samples_seen": self.n_seen,
                                  "mean_device_ms": float(np.mean([h.device_ms for h in self.history])) if self.history else 0.0}
        return write_bundle(out_dir, writers, meta)
