"""Model monitoring on the UE (3GPP Rel-19 style): beam-prediction accuracy with a margin over a
sliding window, and a sequential alarm with a stated false-alarm rate. numpy + stdlib only.

What is monitored
-----------------
RAN1 agreed top-1 / top-K beam prediction accuracy, with or without a margin, as the monitoring
metric of a UE-sided beam-prediction model, computed on monitoring occasions where the UE measures
the full Set A. On such an occasion this module gets, per label, whether the model's top-1 beam
and the best of its top-K beams are within ``margin_db`` of the strongest measured beam
(:func:`margin_hits`), and optionally whether the legacy procedure (hierarchical sweep) would have
been within the margin on the same measurements. Labels from sweeps that the model itself
triggered (low-confidence fallbacks) must not be fed in: they are selected by the model's state
and would bias every rate; scheduled sweeps are not.

The alarm (derivation)
----------------------
Let ``X_n = 1`` when label ``n`` is a miss (the monitored beam is more than the margin below the
best). In control the ``X_n`` are i.i.d. Bernoulli(``p0``); after a change, Bernoulli(``p1``),
``p1 > p0``. Page's CUSUM accumulates the log-likelihood ratio of the two,

    Z_n = X_n ln(p1/p0) + (1 - X_n) ln((1-p1)/(1-p0)),   S_n = max(0, S_{n-1} + Z_n),

and alarms when ``S_n >= h``; among all tests with the same in-control average run length (ARL0,
the mean number of labels to a false alarm) it minimises the worst-case detection delay
(Lorden 1971; Moustakides 1986). With ``a = ln(p1/p0) > 0`` and ``b = ln((1-p0)/(1-p1)) > 0`` a
miss adds ``a`` and a hit subtracts ``b``.

Integer form. Dividing by ``delta = min(a, b) / R`` and rounding (``R`` = resolution) gives integer
steps ``up = round(a/delta)`` and ``down = round(b/delta)`` and a threshold ``H`` in units of
``delta``; the monitor runs exactly this integer statistic, so the following is exact for what runs,
not an approximation of it (the rounding only changes which alternative the test is tuned to, by
less than ``1/(2R)`` relative).

ARL. For a miss probability ``p`` the statistic is a Markov chain on ``{0, ..., H-1}`` plus an
absorbing alarm state; with ``Q`` its transition matrix among the non-alarm states, the expected
number of labels to the alarm from each state solves ``(I - Q) L = 1`` (Brook & Evans 1972), and the
run-length distribution is ``P(N > n) = (Q^n 1)_0``. :func:`design_cusum` takes the smallest ``H``
with ``L_0(p0) >= arl0``, so in control the mean number of labels between false alarms is at least
``arl0``; restarting from 0 after each alarm makes the alarms a renewal process, hence the long-run
false-alarm rate is at most ``1/arl0`` per label. ``P(false alarm within n labels)`` is exact from
the chain (:meth:`CusumDesign.false_alarm_probability`). The detection delay quoted is ``L_0(p1)``
(from a zero statistic, which is the worst case for a CUSUM). For comparison Lorden's bound
``ARL0 >= e^h`` holds for the un-rounded test.

Reverse test. Testing ``p1 -> p0`` (recovery, used while a deactivated model runs in shadow) is the
same construction with the roles swapped: a hit adds, a miss subtracts; its ARL under ``p1`` is the
mean number of labels to a false reactivation.

In-control rate. ``p0`` is given (e.g. the bundle's validated miss rate, or a rate the network
configures) or calibrated from the first ``n_ref`` labels after activation (Phase I) as the
one-sided Clopper-Pearson upper bound at ``ref_confidence``. The ARL of a CUSUM falls as the true
miss rate rises, so when the true ``p0`` is below the bound the realised in-control ARL is at least
``arl0``: with Phase I the false-alarm statement holds with probability >= ``ref_confidence``
over the reference sample. Every statement above assumes independent labels; labels of one UE a
few cycles apart are correlated (it stays where the model fails or succeeds), which the emulator
bench measures instead of assuming.

Cost: :meth:`ModelMonitor.observe` is O(1) per label (a few integer operations and three ring-buffer
writes); designing a test solves a few dense ``H x H`` systems once (H is kept <= ~600).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np

from ..errors import ConfigError

__all__ = [
    "CusumDesign", "BernoulliCusum", "WindowRate", "MonitorConfig", "ModelMonitor", "MonitorAlarm",
    "design_cusum", "cusum_arl", "cusum_run_length_cdf", "binomial_upper_bound", "margin_hits", "mcnemar_p_value",
]


# ----------------------------------------------------------------------------------------------- CUSUM maths
_BLAS = None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Solve the small ARL systems single-threaded: on a busy host OpenBLAS worker threads spin-wait and
    turned a 5 ms 271x271 solve into ~300 ms (measured)."""
    global _BLAS
    try:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        with _BLAS.limit(limits=1, user_api="blas"):
            yield
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield


def _chain(up: int, down: int, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Next state after a miss / a hit from each state 0..H-1 (``-1`` = absorbed by the alarm)."""
    s = np.arange(threshold)
    on_miss = np.maximum(s + up, 0)
    on_hit = np.maximum(s + down, 0)
    on_miss[on_miss >= threshold] = -1
    on_hit[on_hit >= threshold] = -1
    return on_miss, on_hit


def cusum_arl(p: float, up: int, down: int, threshold: int, start: int = 0) -> float:
    """Exact average run length (labels to the alarm) of the integer Bernoulli CUSUM
    ``S = max(0, S + (up if miss else down))``, alarm at ``S >= threshold``, for miss probability ``p``.

    ``up`` / ``down`` are signed integers (one positive, one negative or zero). Solves the
    Brook-Evans system ``(I - Q) L = 1``; returns ``inf`` when the alarm is unreachable.
    """
    if threshold < 1:
        return 1.0
    on_miss, on_hit = _chain(up, down, threshold)
    q = np.zeros((threshold, threshold))
    rows = np.arange(threshold)
    m, h = on_miss >= 0, on_hit >= 0
    np.add.at(q, (rows[m], on_miss[m]), p)
    np.add.at(q, (rows[h], on_hit[h]), 1.0 - p)
    try:
        arl = np.linalg.solve(np.eye(threshold) - q, np.ones(threshold))
    except np.linalg.LinAlgError:
        return math.inf
    v = float(arl[start])
    return v if np.isfinite(v) and v > 0 else math.inf


def cusum_run_length_cdf(p: float, up: int, down: int, threshold: int, n: int, start: int = 0) -> np.ndarray:
    """``P(alarm within the first i labels)`` for i = 1..n, exact from the Markov chain (O(n H))."""
    on_miss, on_hit = _chain(up, down, threshold)
    surv = np.ones(threshold + 1)
    surv[-1] = 0.0  # index -1 is the absorbed state: survival 0
    out = np.empty(n)
    for i in range(n):
        nxt = p * surv[on_miss] + (1.0 - p) * surv[on_hit]
        surv[:-1] = nxt
        out[i] = 1.0 - surv[start]
    return out


@dataclass(frozen=True)
class CusumDesign:
    """An integer Bernoulli CUSUM designed for in-control miss rate ``p0`` against ``p1``.

    ``up`` is added on a miss and ``down`` on a hit (signed); alarm at ``S >= threshold``.
    ``arl0`` is the achieved in-control ARL (labels), ``arl1`` the expected delay (labels) when the
    rate is ``p1``; ``arl0_target`` what was asked for.
    """

    p0: float
    p1: float
    up: int
    down: int
    threshold: int
    unit: float  # nats per integer step
    arl0_target: float
    arl0: float
    arl1: float

    def arl(self, p: float) -> float:
        """Average run length (labels) at miss probability ``p``."""
        return cusum_arl(p, self.up, self.down, self.threshold)

    def false_alarm_probability(self, n_labels: int) -> float:
        """Probability of at least one alarm within ``n_labels`` in-control labels (at ``p0``)."""
        if n_labels <= 0:
            return 0.0
        return float(cusum_run_length_cdf(self.p0, self.up, self.down, self.threshold, n_labels)[-1])

    def to_dict(self) -> dict[str, float]:
        return {"p0": self.p0, "p1": self.p1, "up": self.up, "down": self.down, "threshold": self.threshold,
                "unit_nats": self.unit, "arl0_target": self.arl0_target, "arl0": self.arl0, "arl1": self.arl1}


def _check_rate(name: str, p: float) -> float:
    if not isinstance(p, (int, float)) or not 0.0 < float(p) < 1.0 or math.isnan(p):
        raise ConfigError(name, f"{p!r} is not a probability strictly between 0 and 1", "give e.g. 0.05")
    return float(p)


def design_cusum(p0: float, p1: float, arl0: float = 5000.0, resolution: int | None = None, max_states: int = 600) -> CusumDesign:
    """Smallest-threshold integer Bernoulli CUSUM with in-control ARL >= ``arl0`` labels.

    ``p1 > p0`` watches for more misses (degradation); ``p1 < p0`` for fewer (recovery). The step unit
    is ``min(a, b) / R``; ``R`` defaults to the largest value (<= 16) that keeps the threshold under
    ``max_states`` so each ARL solve stays a small dense system.
    """
    p0, p1 = _check_rate("p0", p0), _check_rate("p1", p1)
    if p0 == p1:
        raise ConfigError("p1", "equals p0; the alternative must differ from the in-control rate", "e.g. p1 = 3 * p0")
    if not (isinstance(arl0, (int, float)) and math.isfinite(arl0) and arl0 > 1):
        raise ConfigError("arl0", f"{arl0!r} must be a finite number of labels > 1", "e.g. 5000")
    with _one_blas_thread():
        return _design(p0, p1, float(arl0), resolution, max_states)


def _design(p0: float, p1: float, arl0: float, resolution: int | None, max_states: int) -> CusumDesign:
    a = math.log(p1 / p0)  # added on a miss (negative when watching for recovery)
    b = math.log((1 - p1) / (1 - p0))  # added on a hit
    small = min(abs(a), abs(b))
    if resolution is None:
        resolution = int(max(2, min(16, math.floor(max_states * small / (1.3 * math.log(arl0) + 1.0)))))
    unit = small / resolution
    up, down = int(round(a / unit)), int(round(b / unit))
    g = math.gcd(up, down)  # a common factor only makes the same chain bigger (e.g. +45/-9 is +5/-1)
    up, down, unit = up // g, down // g, unit * g
    # threshold search: ARL0 grows with H; bracket by doubling from Lorden's e^h guide, then bisect
    lo, hi = 1, max(2, int(math.ceil(math.log(arl0) / unit)))
    while cusum_arl(p0, up, down, hi) < arl0:
        lo, hi = hi, hi * 2
        if hi > 50 * max_states:
            raise ConfigError("arl0", f"{arl0:g} labels is unreachable for p0={p0:g}, p1={p1:g}", "lower arl0 or widen p1 - p0")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cusum_arl(p0, up, down, mid) >= arl0:
            hi = mid
        else:
            lo = mid
    h = hi if cusum_arl(p0, up, down, lo) < arl0 else lo
    return CusumDesign(p0, p1, up, down, h, unit, float(arl0), cusum_arl(p0, up, down, h), cusum_arl(p1, up, down, h))


class BernoulliCusum:
    """The running integer statistic of a :class:`CusumDesign`; O(1) per label.

    ``run`` counts the labels since the statistic last left 0: at an alarm it is the CUSUM's maximum-likelihood
    estimate of how many labels ago the change happened (kept in ``last_run``), i.e. which labels to judge by.
    """

    __slots__ = ("design", "s", "n", "run", "last_run")

    def __init__(self, design: CusumDesign) -> None:
        self.design = design
        self.s = self.n = self.run = self.last_run = 0

    def update(self, miss: bool) -> bool:
        """Add one label; True when the statistic reaches the threshold (then it restarts from 0)."""
        d = self.design
        s = self.s + (d.up if miss else d.down)
        self.n += 1
        if s >= d.threshold:
            self.last_run = self.run + 1
            self.s = self.run = 0
            return True
        if s > 0:
            self.s, self.run = s, self.run + 1
        else:
            self.s = self.run = 0
        return False

    def reset(self) -> None:
        self.s = self.run = 0

    @property
    def statistic_nats(self) -> float:
        """Current CUSUM value in nats (log-likelihood ratio units)."""
        return self.s * self.design.unit


# ----------------------------------------------------------------------------------------------- helpers
def binomial_upper_bound(k: int, n: int, confidence: float = 0.9) -> float:
    """One-sided Clopper-Pearson upper confidence bound of a rate with ``k`` events in ``n`` trials:
    the ``u`` with ``P(Binomial(n, u) <= k) = 1 - confidence`` (bisection on the exact tail; stdlib)."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1.0 - confidence
    logc = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]

    def cdf(u: float) -> float:
        lu, l1u = math.log(u), math.log1p(-u)
        return sum(math.exp(c + i * lu + (n - i) * l1u) for i, c in enumerate(logc))

    lo, hi = k / n, 1.0 - 1e-12
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def mcnemar_p_value(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value that the first method misses more often than the second, from
    the discordant pairs: ``worse`` = first misses / second hits, ``better`` = the opposite."""
    n = worse + better
    if n == 0:
        return 1.0
    # P(Binomial(n, 1/2) >= worse)
    return float(sum(math.comb(n, i) for i in range(worse, n + 1)) / 2.0**n)


def margin_hits(top_rsrp_dbm: np.ndarray, best_rsrp_dbm: np.ndarray, margin_db: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 and top-K hits with a margin (vectorised over labels).

    ``top_rsrp_dbm`` (n, K): measured RSRP (dBm) of the model's top-K beams in rank order, from the
    monitoring sweep; ``best_rsrp_dbm`` (n,): the strongest beam that sweep measured. A hit is a beam
    within ``margin_db`` (dB) of the best (3GPP TR 38.843 "with a margin"). Returns (top1, topK) bool.
    """
    top = np.atleast_2d(np.asarray(top_rsrp_dbm, dtype=np.float64))
    floor = np.asarray(best_rsrp_dbm, dtype=np.float64).reshape(-1) - float(margin_db)
    return top[:, 0] >= floor, top.max(axis=1) >= floor


class WindowRate:
    """Hit rate over the last ``size`` labels (ring buffer + running sum, O(1) per label)."""

    __slots__ = ("buf", "i", "n", "total")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.i = self.n = self.total = 0

    def push(self, hit: bool) -> None:
        size = len(self.buf)
        v = 1 if hit else 0
        if self.n == size:
            self.total -= self.buf[self.i]
        else:
            self.n += 1
        self.buf[self.i] = v
        self.total += v
        self.i = (self.i + 1) % size

    @property
    def rate(self) -> float | None:
        return self.total / self.n if self.n else None

    def values(self) -> np.ndarray:
        """The window's labels, oldest first."""
        b = np.frombuffer(bytes(self.buf), dtype=np.uint8)
        if self.n < len(self.buf):
            return b[: self.n].astype(bool)
        return np.roll(b, -self.i).astype(bool)

    def clear(self) -> None:
        self.i = self.n = self.total = 0


# ----------------------------------------------------------------------------------------------- the monitor
@dataclass(frozen=True)
class MonitorConfig:
    """Monitoring settings (labels = monitoring occasions; rates are miss probabilities).

    ``metric``: which hit drives the alarm, ``"top1"`` (the model's first beam within the margin; the
    most sensitive to a model gone wrong) or ``"topk"`` (the best of its top-K, what serving after a
    top-K refinement gets). ``arl0``: in-control average run length (labels between false alarms).
    ``odds_ratio``: the alternative ``p1`` has ``odds_ratio`` times the odds of ``p0``. ``p0``: a fixed
    in-control miss rate; None calibrates it from the first ``n_ref`` labels (upper bound at
    ``ref_confidence``). ``window``: labels in the sliding-window rates.
    """

    metric: Literal["top1", "topk"] = "top1"
    k: int = 3
    margin_db: float = 1.0
    window: int = 128
    arl0: float = 5000.0
    odds_ratio: float = 3.0
    p0: float | None = None
    n_ref: int = 64
    ref_confidence: float = 0.9
    p0_floor: float = 0.01  # a perfect reference sample would give p0 ~ 0: floor it so the test has a sane scale

    def __post_init__(self) -> None:
        if self.metric not in ("top1", "topk"):
            raise ConfigError("monitor.metric", f"{self.metric!r} is not a monitoring metric", "use 'top1' or 'topk'")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ConfigError("monitor.k", f"{self.k!r} must be an integer >= 1", "e.g. 3")
        if not (isinstance(self.margin_db, (int, float)) and math.isfinite(self.margin_db) and self.margin_db >= 0):
            raise ConfigError("monitor.margin_db", f"{self.margin_db!r} must be a finite margin >= 0 dB", "e.g. 1.0")
        for name in ("window", "n_ref"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"monitor.{name}", f"{v!r} must be an integer >= 1", "e.g. 128")
        if not (isinstance(self.odds_ratio, (int, float)) and math.isfinite(self.odds_ratio) and self.odds_ratio > 1):
            raise ConfigError("monitor.odds_ratio", f"{self.odds_ratio!r} must be a finite number > 1", "e.g. 3")
        if not (isinstance(self.arl0, (int, float)) and math.isfinite(self.arl0) and self.arl0 > 1):
            raise ConfigError("monitor.arl0", f"{self.arl0!r} must be a finite number of labels > 1", "e.g. 5000")
        if not 0.5 <= self.ref_confidence < 1:
            raise ConfigError("monitor.ref_confidence", f"{self.ref_confidence!r} is outside [0.5, 1)", "e.g. 0.9")
        if self.p0 is not None:
            _check_rate("monitor.p0", self.p0)
        _check_rate("monitor.p0_floor", self.p0_floor)

    def alternative(self, p0: float) -> float:
        """``p1`` for an in-control ``p0``: the rate with ``odds_ratio`` times its odds."""
        o = self.odds_ratio * p0 / (1.0 - p0)
        return o / (1.0 + o)


@dataclass(frozen=True)
class MonitorAlarm:
    """A sequential test crossed its threshold on label ``label``."""

    kind: Literal["degraded", "recovered"]
    label: int  # index of the label (0-based, since the monitor was created)
    metric: str  # e.g. "top1_within_1dB_miss"
    value: float | None  # window miss rate of that metric when it fired
    statistic_nats: float  # CUSUM value that crossed
    run_labels: int = 0  # labels since the statistic last left 0 (estimated labels since the change)


class ModelMonitor:
    """Window accuracies and the degradation / recovery alarms for one deployed model.

    Feed one label at a time with :meth:`observe` (or a batch with :meth:`observe_many`). In
    ``watch="degradation"`` (model serving) a CUSUM on the miss indicator alarms when misses become
    more frequent than the reference ``p0``; in ``watch="recovery"`` (model deactivated, run in
    shadow) the reverse CUSUM alarms when they are back at ``p0``.
    """

    def __init__(self, config: MonitorConfig | None = None, watch: Literal["degradation", "recovery"] = "degradation") -> None:
        self.config = c = config or MonitorConfig()
        if watch not in ("degradation", "recovery"):
            raise ConfigError("watch", f"{watch!r} is not a watch mode", "use 'degradation' or 'recovery'")
        self.watch = watch
        self.top1 = WindowRate(c.window)
        self.topk = WindowRate(c.window)
        self.legacy = WindowRate(c.window)
        self.n_labels = 0
        self.p0: float | None = None
        self.design: CusumDesign | None = None
        self.reverse: CusumDesign | None = None
        self._cusum: BernoulliCusum | None = None
        self._ref_n = self._ref_miss = 0
        self.design_ns = 0  # CPU time spent designing tests (once per reference), ns
        if c.p0 is not None:
            self.set_reference(c.p0)

    # -- reference ---------------------------------------------------------------------------------
    @property
    def calibrating(self) -> bool:
        return self.p0 is None

    def set_reference(self, p0: float) -> None:
        """Fix the in-control miss rate and (re)design both tests for it."""
        c = self.config
        p0 = min(max(float(p0), c.p0_floor), 0.95)
        p1 = c.alternative(p0)
        t0 = time.thread_time_ns()
        self.p0 = p0
        self.design = design_cusum(p0, p1, c.arl0)
        self.reverse = design_cusum(p1, p0, c.arl0)
        self.design_ns += time.thread_time_ns() - t0
        self._arm()

    def recalibrate(self) -> None:
        """Forget the reference; the next ``n_ref`` labels calibrate a new one (Phase I)."""
        self.p0 = self.design = self.reverse = self._cusum = None
        self._ref_n = self._ref_miss = 0

    def set_watch(self, watch: Literal["degradation", "recovery"]) -> None:
        """Switch between watching for degradation (model serving) and recovery (model in shadow)."""
        if watch not in ("degradation", "recovery"):
            raise ConfigError("watch", f"{watch!r} is not a watch mode", "use 'degradation' or 'recovery'")
        self.watch = watch
        self._arm()

    def _arm(self) -> None:
        d = self.design if self.watch == "degradation" else self.reverse
        self._cusum = BernoulliCusum(d) if d is not None else None

    # -- labels ------------------------------------------------------------------------------------
    @property
    def metric_name(self) -> str:
        c = self.config
        return f"{'top1' if c.metric == 'top1' else f'top{c.k}'}_within_{c.margin_db:g}dB_miss"

    def observe(self, hit_top1: bool, hit_topk: bool, legacy_hit: bool | None = None) -> MonitorAlarm | None:
        """One monitoring label; returns the alarm it raised, if any. O(1)."""
        self.top1.push(hit_top1)
        self.topk.push(hit_topk)
        if legacy_hit is not None:
            self.legacy.push(legacy_hit)
        idx = self.n_labels
        self.n_labels += 1
        miss = not (hit_top1 if self.config.metric == "top1" else hit_topk)
        if self.p0 is None:
            if self.watch == "recovery":  # no reference to recover to: a degraded model must not calibrate it
                return None
            self._ref_n += 1
            self._ref_miss += miss
            if self._ref_n >= self.config.n_ref:
                self.set_reference(binomial_upper_bound(self._ref_miss, self._ref_n, self.config.ref_confidence))
            return None
        cs = self._cusum
        assert cs is not None
        before = cs.s * cs.design.unit + (cs.design.up if miss else cs.design.down) * cs.design.unit
        if cs.update(miss):
            w = self.top1 if self.config.metric == "top1" else self.topk
            rate = w.rate
            return MonitorAlarm("degraded" if self.watch == "degradation" else "recovered", idx, self.metric_name,
                                None if rate is None else 1.0 - rate, before, cs.last_run)
        return None

    def observe_many(self, hit_top1: np.ndarray, hit_topk: np.ndarray, legacy_hit: np.ndarray | None = None) -> list[MonitorAlarm]:
        """Labels in arrival order; every alarm they raised."""
        out = []
        h1 = np.asarray(hit_top1, dtype=bool).tolist()
        hk = np.asarray(hit_topk, dtype=bool).tolist()
        lg = [None] * len(h1) if legacy_hit is None else np.asarray(legacy_hit, dtype=bool).tolist()
        for a, b, c in zip(h1, hk, lg):
            al = self.observe(a, b, c)
            if al is not None:
                out.append(al)
        return out

    # -- summaries ---------------------------------------------------------------------------------
    def miss_rate(self) -> float | None:
        """Window miss rate of the alarm metric."""
        r = (self.top1 if self.config.metric == "top1" else self.topk).rate
        return None if r is None else 1.0 - r

    def worse_than_legacy(self, alpha: float = 0.05, last: int | None = None) -> tuple[bool, float]:
        """Whether, over the window (or its ``last`` labels), the model's top-K misses are significantly more
        frequent than the legacy procedure's on the same labels (one-sided exact McNemar at level ``alpha``); and
        the p-value."""
        m, lg = self.topk.values(), self.legacy.values()
        n = min(len(m), len(lg), last if last is not None else len(m))
        if n == 0:
            return False, 1.0
        m, lg = m[-n:], lg[-n:]
        p = mcnemar_p_value(int(np.sum(~m & lg)), int(np.sum(m & ~lg)))
        return p < alpha, p

    def summary(self) -> dict[str, object]:
        c = self.config
        return {
            "labels": self.n_labels,
            "metric": self.metric_name,
            "p0": self.p0,
            "design": None if self.design is None else self.design.to_dict(),
            "window": c.window,
            f"top1_within_{c.margin_db:g}dB": self.top1.rate,
            f"top{c.k}_within_{c.margin_db:g}dB": self.topk.rate,
            f"legacy_within_{c.margin_db:g}dB": self.legacy.rate,
        }
