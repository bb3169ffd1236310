"""Life-cycle management decisions on the UE: keep, adapt, switch, deactivate, reactivate (numpy + stdlib).

:class:`LifeCycleManager` holds the registered bundles (each with its ``functionality`` block and a
way to predict top-K beams), one :class:`~edgebm.runtime.monitor.ModelMonitor` per bundle, and the
state: which bundle is active, whether it serves or legacy sweeping serves, whether it is adapting.
The caller (the UE loop) reports configuration changes and monitoring labels; the manager returns
the decisions it took. Policy:

- **configuration change** (:meth:`on_configuration`; what the UE knows: beam counts, codebooks,
  arrays, carrier): the active bundle stays if its functionality covers the new configuration
  (a codebook-agnostic bundle is kept and the accepted mismatch recorded); else the first registered
  bundle that covers it is switched to; else the model is **deactivated** (legacy sweeps serve) and,
  when it can run and adapt, it adapts in shadow to the new configuration.
- **degradation alarm** (the monitor's CUSUM), judged on the labels since the change the CUSUM
  estimates (the labels since its statistic last left 0, at least ``MIN_JUDGE``): (1) **switch** to
  another applicable bundle if it misses significantly less on those labels (paired exact McNemar at
  ``alpha``; candidates run on the buffered Set B inputs); else (2) **deactivate** if the model misses
  significantly more than the legacy procedure on them (same test against the legacy hits), adapting
  in shadow when it can; else (3) **adapt** once (the model keeps serving while labels are collected;
  after ``adapt_labels`` labels the manager **keeps** it and re-arms the alarm with the same
  reference); a second alarm after an adaptation (4) **deactivates**.
- **recovery alarm** (reverse CUSUM on the deactivated model, run in shadow on monitoring labels):
  **reactivate**.

Every decision is an :class:`LcmEvent` (``t_s``, ``action``, ``metric``, ``value``, ``bundle``, plus
``trigger`` and ``reason``). Cost: O(1) per label except at an alarm, when candidate bundles run once
on the label buffer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Callable, Literal

import numpy as np

from ..errors import ConfigError
from .functionality import check_configuration
from .monitor import ModelMonitor, MonitorAlarm, MonitorConfig, mcnemar_p_value

__all__ = ["Action", "LcmEvent", "LcmConfig", "RegisteredBundle", "LifeCycleManager"]

#: fewest labels a decision after an alarm is judged on (a paired exact test needs a few to reach p < 0.05)
MIN_JUDGE = 8


class Action(str, Enum):
    KEEP = "keep"
    ADAPT = "adapt"
    SWITCH = "switch"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"


@dataclass(frozen=True)
class LcmEvent:
    """One decision. ``metric`` names what triggered it (a monitoring metric, ``functionality`` or
    ``adaptation``), ``value`` its value then (window miss rate, applicability message)."""

    t_s: float
    action: str
    metric: str
    value: float | str | None
    bundle: str | None
    trigger: Literal["monitor", "configuration", "adaptation"]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RegisteredBundle:
    """A bundle the UE may run. ``predict_topk(x_b)`` maps Set B RSRP (n, n_b) dBm to the top-K Set A
    beams (n, K), best first; ``can_adapt``: it has an on-device head; ``reference_p0``: its in-control
    miss rate of the monitored metric if known (e.g. validated), else calibrated when first active."""

    name: str
    functionality: dict[str, Any] | None
    predict_topk: Callable[[np.ndarray], np.ndarray] | None = None
    can_adapt: bool = False
    reference_p0: float | None = None


@dataclass(frozen=True)
class LcmConfig:
    """Decision settings. ``adapt_labels``: monitoring labels an adaptation collects before it is judged;
    ``alpha``: level of the paired tests; ``buffer``: monitoring labels kept for evaluating other
    bundles; ``shadow_adapt``: a deactivated model keeps adapting from monitoring labels."""

    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    adapt_labels: int = 200
    alpha: float = 0.05
    buffer: int = 256
    shadow_adapt: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.adapt_labels, int) or isinstance(self.adapt_labels, bool) or self.adapt_labels < 1:
            raise ConfigError("lcm.adapt_labels", f"{self.adapt_labels!r} must be an integer >= 1", "e.g. 200")
        if not (isinstance(self.alpha, float) and 0 < self.alpha < 0.5):
            raise ConfigError("lcm.alpha", f"{self.alpha!r} must be a level in (0, 0.5)", "e.g. 0.05")
        if not isinstance(self.buffer, int) or isinstance(self.buffer, bool) or self.buffer < 8:
            raise ConfigError("lcm.buffer", f"{self.buffer!r} must be an integer >= 8", "e.g. 256")


class _LabelBuffer:
    """The last ``size`` monitoring labels: Set B input (dBm) and the full Set A measurement (dBm)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.x: np.ndarray | None = None
        self.m: np.ndarray | None = None
        self.i = self.n = 0

    def push(self, x_b: np.ndarray, meas_a: np.ndarray) -> None:
        if self.x is None or self.x.shape[1] != x_b.shape[-1] or self.m.shape[1] != meas_a.shape[-1]:  # type: ignore[union-attr]
            self.x = np.zeros((self.size, x_b.shape[-1]), np.float32)
            self.m = np.zeros((self.size, meas_a.shape[-1]), np.float32)
            self.i = self.n = 0
        self.x[self.i] = x_b
        self.m[self.i] = meas_a  # type: ignore[index]
        self.i = (self.i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def recent(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``count`` labels (at most the buffer), oldest first."""
        assert self.x is not None and self.m is not None
        count = min(count, self.n)
        idx = (self.i - count + np.arange(count)) % self.size
        return self.x[idx], self.m[idx]

    def clear(self) -> None:
        self.i = self.n = 0


class LifeCycleManager:
    """State machine over registered bundles; see the module docstring for the policy."""

    def __init__(self, bundles: list[RegisteredBundle], config: LcmConfig | None = None, active: int = 0) -> None:
        if not bundles:
            raise ConfigError("bundles", "no bundle registered", "register at least one bundle")
        names = [b.name for b in bundles]
        if len(set(names)) != len(names):
            raise ConfigError("bundles", f"duplicate bundle names {names}", "give each bundle a distinct name")
        if not 0 <= active < len(bundles):
            raise ConfigError("active", f"{active} is not a registered bundle index", f"0 <= active < {len(bundles)}")
        self.cfg = config or LcmConfig()
        self.bundles = list(bundles)
        self.monitors = {b.name: ModelMonitor(_with_p0(self.cfg.monitor, b.reference_p0)) for b in bundles}
        self.active: int = active
        self.serving: Literal["model", "legacy"] = "model"
        self.adapting = False  # labels are being collected to update the active model's head
        self.adapted = False  # an adaptation was tried since the last (re)activation or switch
        self.adapt_left = 0
        self.config_current: dict[str, Any] | None = None
        self.buffer = _LabelBuffer(self.cfg.buffer)
        self._deactivated_for = ""  # trigger of the last deactivation ("monitor" / "configuration")
        self.events: list[LcmEvent] = []
        self.alarms: list[tuple[float, MonitorAlarm]] = []
        self.last_hits: tuple[list[bool], list[bool], list[bool]] = ([], [], [])  # (top-1, top-K, legacy) of the last on_labels call

    # -- state -------------------------------------------------------------------------------------
    @property
    def bundle(self) -> RegisteredBundle:
        return self.bundles[self.active]

    @property
    def monitor(self) -> ModelMonitor:
        return self.monitors[self.bundle.name]

    @property
    def serving_model(self) -> bool:
        return self.serving == "model"

    @property
    def wants_labels(self) -> bool:
        """True while an adaptation collects labels (the UE should sweep more often)."""
        return self.adapting

    def _event(self, t_s: float, action: Action, metric: str, value: float | str | None, trigger: str, reason: str) -> LcmEvent:
        ev = LcmEvent(round(float(t_s), 6), action.value, metric, value, self.bundle.name, trigger, reason)  # type: ignore[arg-type]
        self.events.append(ev)
        return ev

    # -- configuration -----------------------------------------------------------------------------
    def applicability(self, index: int, current: dict[str, Any]):
        b = self.bundles[index]
        return check_configuration(b.functionality, current)

    def on_configuration(self, t_s: float, current: dict[str, Any]) -> list[LcmEvent]:
        """The UE's configuration (keys of :func:`~edgebm.runtime.functionality.configuration_from`) is
        now ``current``. Returns the decisions taken."""
        first = self.config_current is None
        changed = current != self.config_current
        self.config_current = dict(current)
        if not changed:
            return []
        if not first:
            self.buffer.clear()  # labels of another configuration say nothing about this one
        out: list[LcmEvent] = []
        app = self.applicability(self.active, current)
        if app.applicable:
            if app.accepted or (app.notes and not first):
                out.append(self._event(t_s, Action.KEEP, "functionality", app.message(), "configuration", "active bundle covers the configuration"))
            if self.serving == "legacy" and not first and self._deactivated_for == "configuration":
                out += self._reactivate(t_s, "functionality", app.message(), "configuration", "configuration back within the functionality")
            return out
        for i, _ in enumerate(self.bundles):
            if i != self.active and self.applicability(i, current).applicable:
                return [self._switch(t_s, i, "functionality", app.message(), "configuration",
                                     f"{self.bundles[i].name} covers the configuration")]
        out += self._deactivate(t_s, "functionality", app.message(), "configuration", "no registered bundle covers the configuration")
        return out

    # -- labels ------------------------------------------------------------------------------------
    def on_labels(self, t_s: float, x_b: np.ndarray, meas_a: np.ndarray, top: np.ndarray, legacy_beam: np.ndarray) -> list[LcmEvent]:
        """Monitoring labels of one cycle, in order: Set B input (n, n_b) dBm, the full Set A
        measurement (n, A) dBm, the active model's top-K beams (n, K) for those inputs (its prediction
        this cycle, also when it runs in shadow), the legacy procedure's beam (n,) on the same
        measurement. Returns the decisions taken."""
        x_b, meas_a = np.atleast_2d(x_b), np.atleast_2d(meas_a)
        n, a = meas_a.shape
        top = np.atleast_2d(top)
        rows = np.arange(n)[:, None]
        # one gather for the model's top-K and the legacy beam, then plain Python per label (a cycle has a few)
        picked = meas_a[rows, np.minimum(np.concatenate([top, np.asarray(legacy_beam).reshape(-1, 1)], 1), a - 1)]
        floor = (meas_a.max(axis=1) - self.cfg.monitor.margin_db).tolist()
        pk = picked.tolist()
        hit1 = [r[0] >= f for r, f in zip(pk, floor)]
        hitk = [max(r[:-1]) >= f for r, f in zip(pk, floor)]
        leg = [r[-1] >= f for r, f in zip(pk, floor)]
        self.last_hits = (hit1, hitk, leg)
        out: list[LcmEvent] = []
        for i in range(len(x_b)):
            self.buffer.push(x_b[i], meas_a[i])
            mon = self.monitor
            alarm = mon.observe(hit1[i], hitk[i], leg[i])
            if self.adapting:
                self.adapt_left -= 1
            if alarm is not None:
                self.alarms.append((t_s, alarm))
                out += self._on_alarm(t_s, alarm)
            elif self.adapting and self.adapt_left <= 0:
                out += self._end_adaptation(t_s)
        return out

    def _on_alarm(self, t_s: float, alarm: MonitorAlarm) -> list[LcmEvent]:
        if alarm.kind == "recovered":
            return self._reactivate(t_s, alarm.metric, alarm.value, "monitor", "recovery test crossed its threshold")
        # judge by the labels since the change the CUSUM estimates (at least MIN_JUDGE), not by older ones
        recent = min(max(alarm.run_labels, MIN_JUDGE), self.buffer.n)
        cand = self._best_candidate(recent)
        if cand is not None:
            i, p = cand
            return [self._switch(t_s, i, alarm.metric, alarm.value, "monitor",
                                 f"{self.bundles[i].name} misses less on the last {recent} labels (McNemar p={p:.3g})")]
        worse, p = self.monitor.worse_than_legacy(self.cfg.alpha, last=recent)
        if worse:
            return self._deactivate(t_s, alarm.metric, alarm.value, "monitor", f"model misses more than legacy sweeping (McNemar p={p:.3g})")
        if self.bundle.can_adapt and not self.adapted:
            self.adapting, self.adapted, self.adapt_left = True, True, self.cfg.adapt_labels
            self.monitor.set_watch("degradation")  # restart the statistic; the reference stays
            return [self._event(t_s, Action.ADAPT, alarm.metric, alarm.value, "monitor",
                                f"degraded but not worse than legacy (McNemar p={p:.3g}); collecting {self.cfg.adapt_labels} labels")]
        why = "adaptation did not hold the reference" if self.adapted else "model cannot adapt"
        return self._deactivate(t_s, alarm.metric, alarm.value, "monitor", why)

    def _end_adaptation(self, t_s: float) -> list[LcmEvent]:
        self.adapting = False
        mon = self.monitor
        if self.serving == "legacy":  # shadow adaptation: the recovery test decides
            return []
        worse, p = mon.worse_than_legacy(self.cfg.alpha)
        if worse:
            return self._deactivate(t_s, "adaptation", mon.miss_rate(), "adaptation", f"after adapting the model misses more than legacy (McNemar p={p:.3g})")
        mon.set_watch("degradation")
        return [self._event(t_s, Action.KEEP, mon.metric_name, mon.miss_rate(), "adaptation", "adaptation finished; alarm re-armed")]

    # -- transitions -------------------------------------------------------------------------------
    def _switch(self, t_s: float, index: int, metric: str, value: Any, trigger: str, reason: str) -> LcmEvent:
        self.active = index
        self.serving, self.adapting, self.adapted = "model", False, False
        mon = self.monitor  # a bundle never active before calibrates its reference on its own first labels (Phase I)
        mon.set_watch("degradation")
        return self._event(t_s, Action.SWITCH, metric, value, trigger, reason)

    def _deactivate(self, t_s: float, metric: str, value: Any, trigger: str, reason: str) -> list[LcmEvent]:
        self.serving = "legacy"
        self._deactivated_for = trigger
        self.monitor.set_watch("recovery")
        out = [self._event(t_s, Action.DEACTIVATE, metric, value, trigger, reason)]
        self.adapting = False
        if self.cfg.shadow_adapt and self.bundle.can_adapt and self.bundle.predict_topk is not None:
            self.adapting, self.adapted, self.adapt_left = True, True, self.cfg.adapt_labels
            out.append(self._event(t_s, Action.ADAPT, metric, value, trigger, "adapting in shadow while legacy sweeps serve"))
        return out

    def _reactivate(self, t_s: float, metric: str, value: Any, trigger: str, reason: str) -> list[LcmEvent]:
        self.serving, self.adapting, self.adapted = "model", False, False
        self._deactivated_for = ""
        self.monitor.set_watch("degradation")
        return [self._event(t_s, Action.REACTIVATE, metric, value, trigger, reason)]

    # -- candidates --------------------------------------------------------------------------------
    def _misses(self, index: int, count: int) -> np.ndarray:
        x, m = self.buffer.recent(count)
        top = np.minimum(np.atleast_2d(self.bundles[index].predict_topk(x)), m.shape[1] - 1)  # type: ignore[misc]
        if self.cfg.monitor.metric == "top1":
            top = top[:, :1]
        tr = np.take_along_axis(m, top, axis=1)
        return tr.max(axis=1) < m.max(axis=1) - self.cfg.monitor.margin_db

    def _best_candidate(self, count: int) -> tuple[int, float] | None:
        """The other applicable bundle that misses least on the last ``count`` buffered labels, if it misses
        significantly less than the active one on the same labels (one-sided exact McNemar at ``alpha``)."""
        if count < MIN_JUDGE or self.bundle.predict_topk is None:
            return None
        cur = self.config_current or {}
        mine = self._misses(self.active, count)
        best: tuple[int, float, int] | None = None
        for i, b in enumerate(self.bundles):
            if i == self.active or b.predict_topk is None or (cur and not self.applicability(i, cur).applicable):
                continue
            try:
                theirs = self._misses(i, count)
            except Exception:  # a bundle that cannot run on these inputs (other |Set B|) is no candidate
                continue
            p = mcnemar_p_value(int(np.sum(mine & ~theirs)), int(np.sum(~mine & theirs)))
            if p < self.cfg.alpha and (best is None or theirs.sum() < best[2]):
                best = (i, p, int(theirs.sum()))
        return None if best is None else (best[0], best[1])

    def summary(self) -> dict[str, Any]:
        return {
            "active": self.bundle.name,
            "serving": self.serving,
            "adapting": self.adapting,
            "monitors": {name: m.summary() for name, m in self.monitors.items()},
            "alarms": len(self.alarms),
        }


def _with_p0(cfg: MonitorConfig, p0: float | None) -> MonitorConfig:
    if p0 is None or cfg.p0 is not None:
        return cfg
    from dataclasses import replace

    return replace(cfg, p0=float(min(max(p0, cfg.p0_floor), 0.95)) if math.isfinite(p0) else None)
