"""One beam cycle of the UE loop, for all UEs at once: a pure function of hand-checkable arrays.

Per cycle and UE, in this order:

1. **Set B sweep** (|B| wide beams, already measured with noise in ``rsrp_b``) and inference; the
   model's top-K beams, top-1 confidence and device-scaled latency come in as arrays.
2. **Serving-beam re-measurement** (1 beam) for every UE that has a serving beam, except on a
   full-sweep cycle (the sweep measures it anyway).
3. **Full sweep** when scheduled (|A| beams): the strongest measured beam is served and is a label.
4. **Fallback** to two-level hierarchical search (|B| is already paid; the c children of the best wide
   beam are measured) when the top-1 confidence is below ``confidence`` (rule 1; only when the decision
   arrived in time: a late confidence cannot be acted on) or the re-measured serving beam lost more than
   ``drop_db`` against its level when it was chosen (rule 2). The HS result is served and is a label.
5. **Stale decision**: inference later than the deadline on a UE that has a serving beam keeps that
   exact beam (no refinement is measured: the candidates were not known in time).
6. Otherwise **top-K refinement** (K beams measured), the strongest measured candidate is served.

Hierarchical and exhaustive search are :mod:`edgebm.baselines` calls, not re-implemented here.
Beams are charged per component (:data:`COMPONENTS`) so every KPI can say what each method pays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import baselines as B
from .. import metrics as M

__all__ = ["COMPONENTS", "UEState", "CyclePolicy", "CycleOutcome", "beam_cycle"]

#: beam-measurement components charged to edgebm per UE and cycle
COMPONENTS = ("set_b", "serving", "refine", "fallback", "full_sweep")


@dataclass
class UEState:
    """What the UEs carry from one cycle to the next (arrays over the U UEs)."""

    serving: np.ndarray  # (U,) int64 Set A beam served; -1 = none yet (start, or the codebook changed)
    serving_dbm: np.ndarray  # (U,) measured RSRP of the serving beam when it was chosen, dBm

    @classmethod
    def fresh(cls, n_ues: int) -> "UEState":
        return cls(np.full(n_ues, -1, dtype=np.int64), np.full(n_ues, -np.inf))

    def forget(self) -> None:
        """Beam indices of a new codebook mean something else: drop the serving beams."""
        self.serving[:] = -1
        self.serving_dbm[:] = -np.inf


@dataclass(frozen=True)
class CyclePolicy:
    """The UE's decision rules; times in ms, levels in dB."""

    deadline_ms: float
    confidence: float = 0.2  # top-1 probability below this -> hierarchical fallback
    drop_db: float = 6.0  # serving-beam loss since it was chosen that triggers fallback, dB


@dataclass
class CycleOutcome:
    """What one cycle did, per UE (all arrays (U,))."""

    served: np.ndarray  # Set A beam served this cycle
    se: np.ndarray  # SE of the served beam, b/s/Hz
    se_genie: np.ndarray  # SE of the true best beam, b/s/Hz
    beams: dict[str, np.ndarray]  # component -> beams measured (keys: COMPONENTS)
    late: np.ndarray  # inference missed the deadline
    stale: np.ndarray  # ... and the previous beam was kept
    fallback_conf: np.ndarray  # fallback by rule 1 (low confidence)
    fallback_drop: np.ndarray  # fallback by rule 2 (serving-beam RSRP drop)
    full_sweep: np.ndarray
    label: np.ndarray  # best beam found by a sweep (full or hierarchical), -1 where none
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # room for per-cycle signals (e.g. a model monitor)

    @property
    def fallback(self) -> np.ndarray:
        return self.fallback_conf | self.fallback_drop

    @property
    def total_beams(self) -> np.ndarray:
        return sum(self.beams[c] for c in COMPONENTS)  # type: ignore[return-value]


def beam_cycle(
    state: UEState,
    rsrp_b: np.ndarray,
    rsrp_a: np.ndarray,
    noise_dbm: np.ndarray,
    children: np.ndarray,
    top: np.ndarray,
    conf: np.ndarray,
    latency_ms: np.ndarray,
    sweep: np.ndarray,
    policy: CyclePolicy,
    measure: B.Measure,
    legacy: bool = False,
) -> CycleOutcome:
    """Run one beam cycle for U UEs and update ``state`` in place.

    ``rsrp_b`` (U, |B|) measured Set B, dBm; ``rsrp_a`` (U, |A|) true Set A RSRP, dBm; ``noise_dbm`` (U,);
    ``children`` (|B|, c) narrow beams under each wide beam; ``top`` (U, K) the model's best beams, best
    first; ``conf`` (U,) top-1 probability; ``latency_ms`` (U,) device-scaled inference time; ``sweep``
    (U,) bool, full sweep scheduled; ``measure(rsrp, noise) -> measured dBm`` (see :data:`edgebm.baselines.Measure`).
    ``legacy``: the model is deactivated (life-cycle management): every UE that does not sweep runs hierarchical
    search (no serving-beam re-measurement, no model rule); ``top``, ``conf`` and ``latency_ms`` are ignored.
    The full sweep's measurements are returned in ``extra["sweep_dbm"]`` (n_sweep, |A|) for the model monitor.
    """
    n_ues, n_b = rsrp_b.shape
    n_a = rsrp_a.shape[1]
    top = np.minimum(np.asarray(top, dtype=np.int64), n_a - 1)  # a codebook shift to a smaller Set A
    sweep = np.asarray(sweep, dtype=bool)
    has = state.serving >= 0
    late = np.zeros(n_ues, dtype=bool) if legacy else np.asarray(latency_ms) > policy.deadline_ms
    zeros = np.zeros(n_ues, dtype=np.int64)
    beams = {c: zeros.copy() for c in COMPONENTS}
    beams["set_b"][:] = n_b

    # 2. re-measure the serving beam (1 beam) unless a full sweep measures everything this cycle
    remeasure = has & ~sweep & (not legacy)
    now_dbm = np.full(n_ues, np.nan)
    if remeasure.any():
        cur = state.serving[remeasure, None]
        now_dbm[remeasure] = measure(np.take_along_axis(rsrp_a[remeasure], cur, 1), noise_dbm[remeasure])[:, 0]
    beams["serving"][remeasure] = 1

    # 4. fallback rules (a late decision's confidence arrives too late to act on, unless there is no beam to keep)
    fb_drop = remeasure & (now_dbm < state.serving_dbm - policy.drop_db)
    fb_conf = ~sweep & ~fb_drop & (~late | ~has) & (np.asarray(conf) < policy.confidence)
    if legacy:
        fb_conf[:] = False
    fallback = fb_conf | fb_drop | (legacy & ~sweep)
    stale = ~sweep & ~fallback & late & has
    refine = ~sweep & ~fallback & ~stale

    served = state.serving.copy()
    level = state.serving_dbm.copy()
    label = np.full(n_ues, -1, dtype=np.int64)
    if refine.any():  # 6. top-K refinement; with K = 1 the prediction is served unmeasured (level unknown: NaN)
        k = top.shape[1]
        if k > 1:
            sel = B.measure_candidates(top[refine], rsrp_a[refine], noise_dbm[refine], name="refine", measure=measure)
            served[refine], level[refine] = sel.chosen, sel.measured_dbm
        else:
            served[refine], level[refine] = top[refine, 0], np.nan
        beams["refine"][refine] = k if k > 1 else 0
    if fallback.any():  # 4. hierarchical search
        sel = B.hierarchical_search(rsrp_b[fallback], rsrp_a[fallback], children, noise_dbm[fallback], measure=measure)
        served[fallback], level[fallback], label[fallback] = sel.chosen, sel.measured_dbm, sel.chosen
        beams["fallback"][fallback] = sel.beams_measured - n_b  # the Set B part is already charged
    extra: dict[str, np.ndarray] = {}
    if sweep.any():  # 3. full sweep (its measurements are also the model monitor's label)
        meas = measure(rsrp_a[sweep], noise_dbm[sweep])
        extra["sweep_dbm"] = meas
        sel = B.exhaustive_search(rsrp_a[sweep], noise_dbm[sweep], measure=lambda r, n: meas)
        served[sweep], level[sweep], label[sweep] = sel.chosen, sel.measured_dbm, sel.chosen
        beams["full_sweep"][sweep] = sel.beams_measured
    # 5. stale: served and level stay the previous cycle's

    state.serving, state.serving_dbm = served, level
    take = np.take_along_axis(rsrp_a, served[:, None], 1)[:, 0]
    return CycleOutcome(
        served=served, se=M.spectral_efficiency(take, noise_dbm), se_genie=M.spectral_efficiency(rsrp_a.max(1), noise_dbm),
        beams=beams, late=late, stale=stale, fallback_conf=fb_conf, fallback_drop=fb_drop, full_sweep=sweep, label=label, extra=extra,
    )

