"""Life-cycle management inside the UE emulator: monitoring occasions, the model monitor and the
keep / adapt / switch / deactivate / reactivate decisions of :mod:`edgebm.runtime.lcm`, timed.

Design (what the emulator runs):

- **Population monitor.** The emulated UEs share one model instance per bundle (one head, one
  adapter), so the monitor pools their labels: one :class:`~edgebm.runtime.monitor.ModelMonitor` per
  registered bundle, fed by every UE's monitoring occasions. Per-UE monitors would see 1/U of the
  labels and detect U times later.
- **Monitoring occasions** (RAN1: the full Set A as monitoring resource, at a longer period than
  Set B): each UE sweeps the full Set A every ``every`` cycles (staggered across UEs), every
  ``dense_every`` cycles while the serving model adapts (a deactivated model adapts in shadow from the
  legacy search every UE runs anyway). The sweep serves that cycle's beam and is
  charged as a full sweep; on it the UE checks the model's top-1 / top-K against the best measured beam
  (margin ``monitor.margin_db``), and what legacy two-level search would have picked on the same
  measurements. Fallback sweeps the model triggers are not monitoring labels (selection bias).
- **Legacy serving.** While the model is deactivated the UEs run hierarchical search every cycle; the
  model runs in shadow only on monitoring occasions (its cost is counted as monitoring cost).
- **Configuration.** At a shift the UE learns its new configuration (codebooks, arrays, carrier: what
  it is configured with); the manager checks it against each bundle's ``functionality`` block. A city
  is not configuration: only the monitor can notice it.
- **Cost.** CPU time (``time.thread_time_ns``: work done, not time lost to other processes on a shared
  host) of everything the monitor and the decisions do per cycle (hit computation, CUSUM, decisions,
  shadow inference, candidate evaluation at alarms), scaled to the device by the profile's
  ``slowdown_vs_host`` like inference latency; the one-off design of each test (when a reference is
  set) is reported apart (``design_ms``): a UE would precompute or tabulate it off the beam-cycle path.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import EmulatorConfigError, EmulatorError
from ..runtime import Predictor
from ..runtime.functionality import build_functionality
from ..runtime.lcm import LcmConfig, LcmEvent, LifeCycleManager, RegisteredBundle

__all__ = ["MonitoringSettings", "MonitoringDriver", "LcmLabels", "validated_p0", "functionality_of", "detection_after"]


@dataclass(frozen=True)
class MonitoringSettings:
    """``every``: cycles between monitoring sweeps per UE; ``dense_every``: ... while adapting;
    ``reference``: the in-control miss rate: ``"activation"`` (calibrated on the first ``n_ref`` labels
    after activation), ``"validated"`` (the bundle's held-out metrics in its manifest) or a rate;
    ``use_configuration``: check each bundle's functionality when the configuration changes."""

    every: int = 25
    dense_every: int = 10
    reference: str | float = "activation"
    use_configuration: bool = True  # False: ignore what the UE knows of its configuration (measure the monitor alone)
    lcm: LcmConfig = field(default_factory=LcmConfig)

    def __post_init__(self) -> None:
        for name in ("every", "dense_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise EmulatorConfigError(f"monitoring.{name}", f"must be a whole number of cycles >= 1, got {v!r}", "e.g. 25")
        r = self.reference
        fix = "use 'activation', 'validated' or an in-control miss rate in (0, 1)"
        if isinstance(r, str):
            if r not in ("activation", "validated"):
                raise EmulatorConfigError("monitoring.reference", f"{r!r} is not a reference", fix)
        elif isinstance(r, bool) or not (isinstance(r, (int, float)) and 0 < float(r) < 1):
            raise EmulatorConfigError("monitoring.reference", f"{r!r} is not a miss rate in (0, 1)", fix)


def validated_p0(pred: Predictor, metric: str, k: int) -> float | None:
    """In-control miss rate of the monitored metric from the bundle's held-out metrics: top-1 within 1 dB
    (``within_1db``) for ``"top1"``; for ``"topk"``, ``1 - top{k}`` (exact top-K: an upper bound of the
    top-K-within-a-margin miss rate). None when the manifest does not record it."""
    m = pred.manifest.get("metrics_heldout") or {}
    v = m.get("within_1db") if metric == "top1" else m.get(f"top{k}")
    return None if v is None else float(1.0 - float(v))


def functionality_of(pred: Predictor) -> dict[str, Any] | None:
    """The bundle's ``functionality`` block; for a bundle exported before the block existed, the same block
    derived from what its (hash-checked) manifest records of the training data and its ``codebook.npz``;
    None when neither is there."""
    block = pred.manifest.get("functionality")
    if block is not None:
        return block
    meta = (pred.manifest.get("dataset") or {}).get("meta") or {}
    if not all(k in meta for k in ("set_a", "set_b", "bs_array", "ue_array", "carrier_hz")):
        return None
    try:
        return build_functionality(meta, pred.codebook)
    except (ValueError, KeyError, TypeError):
        return None


class MonitoringDriver:
    """The emulator's side of life-cycle management for U UEs and one or more bundles."""

    def __init__(self, predictors: list[Predictor], settings: MonitoringSettings, n_ues: int, k: int, slowdown: float,
                 names: list[str] | None = None) -> None:
        if not predictors:
            raise EmulatorError("monitoring needs at least one bundle")
        n_b = {p.n_b for p in predictors}
        if len(n_b) != 1:
            raise EmulatorError(f"bundles for switching must share |Set B|; got {sorted(n_b)}")
        self.settings, self.k, self.slowdown, self.n_ues = settings, k, float(slowdown), n_ues
        self.predictors = list(predictors)
        names = names or [p.bundle_dir.name for p in predictors]
        if len(set(names)) != len(names):  # two folders with the same name: qualify with the parent
            names = [f"{p.bundle_dir.parent.name}/{p.bundle_dir.name}" for p in predictors]
        self.names = names
        mcfg = settings.lcm.monitor
        regs = []
        for name, p in zip(names, predictors):
            ref = settings.reference
            p0 = validated_p0(p, mcfg.metric, mcfg.k) if ref == "validated" else (None if ref == "activation" else float(ref))
            regs.append(RegisteredBundle(name, functionality_of(p), self._topk(p), can_adapt=p.head is not None, reference_p0=p0))
        self.lcm = LifeCycleManager(regs, settings.lcm)
        self.stagger = np.arange(n_ues)
        self.cost_ns: list[int] = []
        self.labels = 0
        self.serving_trace: list[int] = []  # per cycle: 1 = model serves, 0 = legacy
        self.active_trace: list[int] = []  # per cycle: index of the active bundle
        self._extra_ns = 0  # decision time spent outside observe() (configuration checks), added to the next cycle
        self.phase = -1  # index of the current phase (configure() is called at the start of each)
        self._served_cb = [(r.functionality or {}).get("codebook_a") for r in regs]  # Set A codebook each bundle serves
        self._counts: list[list[int]] = []  # per phase: labels, top-1 misses, top-K misses, legacy misses

    def _topk(self, pred: Predictor):
        k = min(self.k, pred.n_a)
        return lambda x: pred.predict(np.atleast_2d(x), k=k)[0]

    # -- what the loop asks ------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return self.lcm.active

    @property
    def predictor(self) -> Predictor:
        return self.predictors[self.lcm.active]

    @property
    def serving_model(self) -> bool:
        return self.lcm.serving_model

    @property
    def wants_labels(self) -> bool:
        return self.lcm.wants_labels

    def sweep_mask(self, t: int) -> np.ndarray:
        """UEs with a monitoring occasion (full Set A sweep) in cycle ``t``."""
        # dense sweeps only while the serving model adapts: a deactivated model learns from the legacy search
        # every UE runs every cycle, and its recovery test needs no more than the regular occasions
        every = self.settings.dense_every if (self.lcm.wants_labels and self.lcm.serving_model) else self.settings.every
        return (t + self.stagger) % every == 0

    def configure(self, t_s: float, configuration: dict[str, Any] | None) -> list[LcmEvent]:
        """The UEs' configuration from ``t_s`` on (None: unknown, nothing to check)."""
        self.phase += 1
        self._counts.append([0, 0, 0, 0])
        if configuration is None or not self.settings.use_configuration:
            return []
        t0, d0 = time.thread_time_ns(), self._design_ns()
        ev = self.lcm.on_configuration(t_s, configuration)
        self._extra_ns = time.thread_time_ns() - t0 - (self._design_ns() - d0)
        return ev

    def serve_codebook(self, weights_a: np.ndarray | None, bs_array: tuple[int, int] | None) -> list[int]:
        """Codebook-agnostic bundles serve the configured Set A codebook (``Predictor.set_codebook``) once the
        configuration holds another one; returns the indices of the bundles that changed (their heads restarted)."""
        cur = (self.lcm.config_current or {}).get("codebook_a")
        if weights_a is None or cur is None or not self.settings.use_configuration:
            return []
        changed = []
        for i, (p, b) in enumerate(zip(self.predictors, self.lcm.bundles)):
            if (b.functionality or {}).get("codebook_agnostic") and self._served_cb[i] != cur:
                p.set_codebook(np.asarray(weights_a), None if bs_array is None else tuple(bs_array))
                self._served_cb[i] = cur
                changed.append(i)
        return changed

    def _design_ns(self) -> int:
        return sum(m.design_ns for m in self.lcm.monitors.values())

    def observe(self, t_s: float, rsrp_b: np.ndarray, sweep: np.ndarray, sweep_dbm: np.ndarray | None, top: np.ndarray | None,
                children: np.ndarray) -> list[LcmEvent]:
        """One cycle: ``rsrp_b`` (U, |B|) dBm; ``sweep`` (U,) which UEs swept Set A, ``sweep_dbm`` (n_sweep, |A|)
        their measurements (dBm); ``top`` (U, K) the active model's beams this cycle (None when it did not run:
        legacy serving, then it runs in shadow here on the swept UEs); ``children`` (|B|, c) of the current
        codebook (for the legacy beam on the same measurements)."""
        self.serving_trace.append(int(self.lcm.serving_model))
        self.active_trace.append(self.lcm.active)
        t0, d0 = time.thread_time_ns(), self._design_ns()
        events: list[LcmEvent] = []
        sw = np.flatnonzero(sweep)
        if len(sw) and sweep_dbm is not None:
            xb = rsrp_b[sw]
            tk = self.lcm.bundle.predict_topk(xb) if top is None else top[sw]  # type: ignore[misc]
            cand = children[xb.argmax(1)]  # legacy two-level search on the same measurements
            rows = np.arange(len(sw))
            legacy = cand[rows, sweep_dbm[rows[:, None], cand].argmax(1)]
            events = self.lcm.on_labels(t_s, xb, sweep_dbm, tk, legacy)
            self.labels += len(sw)
            if self._counts:
                h1, hk, lg = self.lcm.last_hits
                c = self._counts[-1]
                c[0] += len(h1)
                c[1] += len(h1) - sum(h1)
                c[2] += len(hk) - sum(hk)
                c[3] += len(lg) - sum(lg)
        self.cost_ns.append(time.thread_time_ns() - t0 - (self._design_ns() - d0) + self._extra_ns)
        self._extra_ns = 0
        return events

    # -- results -----------------------------------------------------------------------------------
    def result(self, shift_times_s: list[float]) -> dict[str, Any]:
        """The ``monitoring`` section of ``kpis.json`` (see :func:`summarise`)."""
        return summarise(self, shift_times_s)


def summarise(d: MonitoringDriver, shift_times_s: list[float]) -> dict[str, Any]:
    """Events, alarms, false alarms before the first shift, detection per shift, cost per cycle."""
    ev = [e.to_dict() for e in d.lcm.events]
    alarms = [{"t_s": round(t, 6), "kind": a.kind, "metric": a.metric, "value": a.value, "statistic_nats": round(a.statistic_nats, 4)}
              for t, a in d.lcm.alarms]
    first = min(shift_times_s) if shift_times_s else float("inf")
    cost_us = np.asarray(d.cost_ns, dtype=np.float64) / 1e3
    dev = cost_us * d.slowdown
    return {
        "bundles": d.names,
        "settings": {"every": d.settings.every, "dense_every": d.settings.dense_every, "reference": d.settings.reference,
                     "use_configuration": d.settings.use_configuration,
                     **{f"lcm_{k}": v for k, v in asdict(d.settings.lcm).items() if k != "monitor"},
                     "monitor": asdict(d.settings.lcm.monitor)},
        "labels": d.labels,
        "events": ev,
        "alarms": alarms,
        "false_alarms": int(sum(1 for a in alarms if a["kind"] == "degraded" and a["t_s"] < first)),
        "detection": [detection_after(ev, t, nxt) for t, nxt in zip(shift_times_s, [*shift_times_s[1:], float("inf")])],
        "phases": [{"labels": n, "top1_miss": m1, "topk_miss": mk, "legacy_miss": ml,
                    **({"top1_miss_rate": m1 / n, "topk_miss_rate": mk / n, "legacy_miss_rate": ml / n} if n else {})}
                   for n, m1, mk, ml in d._counts],
        "cost_us": {
            "host_p50": float(np.percentile(cost_us, 50)) if len(cost_us) else 0.0,
            "host_p99": float(np.percentile(cost_us, 99)) if len(cost_us) else 0.0,
            "host_max": float(cost_us.max()) if len(cost_us) else 0.0,
            "device_p50": float(np.percentile(dev, 50)) if len(dev) else 0.0,
            "device_p99": float(np.percentile(dev, 99)) if len(dev) else 0.0,
            "device_max": float(dev.max()) if len(dev) else 0.0,
            "per_label_host_mean": float(cost_us.sum() / d.labels) if d.labels else None,
            "slowdown_vs_host": d.slowdown,
            "clock": "thread CPU time",
            "design_ms": round(d._design_ns() / 1e6, 3),
        },
        "final": d.lcm.summary(),
    }


def detection_after(events: list[dict[str, Any]], at_s: float, until_s: float = float("inf")) -> dict[str, Any]:
    """First decision at or after a shift at ``at_s`` (and before ``until_s``) taken by the monitor or the
    configuration check: ``detected_after_s`` (None if never), by what, and which action."""
    for e in events:
        if at_s - 1e-9 <= e["t_s"] < until_s and e["trigger"] in ("monitor", "configuration"):
            return {"detected_after_s": round(e["t_s"] - at_s, 6), "detected_by": e["trigger"], "action": e["action"]}
    return {"detected_after_s": None, "detected_by": None, "action": None}


class LcmLabels:
    """Labels for the on-device update when life-cycle management decides when to adapt.

    An adaptation episode starts at each ``adapt`` decision (the active bundle's adapter is reset: its
    buffers hold another domain) and gathers at most ``cfg.max_labels`` labels (full sweeps and
    hierarchical searches: while the model is deactivated, the legacy search of every UE every cycle)
    while the manager wants labels. Same interface as the emulator's per-shift label window; counts are
    kept per phase (``gathered`` / ``used``) so the per-shift KPIs read the same.
    """

    def __init__(self, driver: MonitoringDriver, adapters: list[Any], cfg: Any, n_phases: int) -> None:
        self.driver, self.adapters, self.cfg = driver, adapters, cfg
        self.phase = 0
        self.n_a = driver.predictor.n_a
        self.gathered, self.used = [0] * n_phases, [0] * n_phases
        self._xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.episodes = 0
        self.episode_labels = 0
        self.bundle = driver.active
        self.first_adapt_s: float | None = None

    @property
    def adapter(self) -> Any:
        return self.adapters[self.bundle]

    def start(self, phase: int, n_a: int) -> None:
        """A new phase (shift): only the bookkeeping moves; what to do is the manager's decision."""
        self.phase, self.n_a = phase, n_a

    def restart(self, indices: list[int]) -> None:
        """The heads of these bundles were restarted (a codebook-agnostic bundle took a new codebook): new adapters."""
        from ..runtime import HeadAdapter

        c = self.cfg
        for i in indices:
            if self.adapters[i] is not None:
                self.adapters[i] = HeadAdapter(self.driver.predictors[i], lr=c.adapt_lr, steps=c.adapt_steps, seed=c.seed)
                if i == self.bundle:
                    self._xs, self.ys = [], []

    def follow(self, phase: int, n_a: int) -> None:
        """After the manager saw this cycle: open a new episode on a new ``adapt`` decision."""
        self.phase, self.n_a = phase, n_a
        n = sum(1 for e in self.driver.lcm.events if e.action == "adapt")
        if n != self.episodes:
            self.episodes, self.bundle = n, self.driver.active
            self._xs, self.ys, self.episode_labels = [], [], 0
            if self.first_adapt_s is None:
                self.first_adapt_s = next(e.t_s for e in self.driver.lcm.events if e.action == "adapt")
            if self.adapter is not None:
                self.adapter.reset()
        elif self.bundle != self.driver.active:  # switched: the episode (if any) belonged to the old bundle
            self.bundle, self._xs, self.ys = self.driver.active, [], []

    @property
    def xs(self) -> list[Any]:
        """Labels waiting for the next update; the adapter's own queue (labels that did not fit an update's
        time budget) counts too, so updates go on until every gathered label was used."""
        if self._xs:
            return self._xs
        a = self.adapter
        return [None] if (a is not None and self.bundle == self.driver.active and getattr(a, "n_pending", 0)) else []

    @property
    def wants_labels(self) -> bool:
        a = self.adapter
        return (self.driver.wants_labels and a is not None and self.bundle == self.driver.active and a.n_classes == self.n_a
                and self.episode_labels < self.cfg.max_labels)

    def collect(self, rsrp_b: np.ndarray, label: np.ndarray) -> None:
        if not self.wants_labels:
            return
        keep = np.flatnonzero(label >= 0)[: self.cfg.max_labels - self.episode_labels]
        if len(keep):
            self._xs.append(rsrp_b[keep])
            self.ys.append(label[keep])
            self.episode_labels += len(keep)
            self.gathered[self.phase] += len(keep)

    def update(self) -> Any:
        a = self.adapter
        if self._xs:
            st = a.update(np.concatenate(self._xs), np.concatenate(self.ys))
        else:  # nothing new: work through the adapter's queue
            st = a.update(np.zeros((0, a.pred.n_b), np.float32), np.zeros(0, np.int64))
        self.used[self.phase] += st.n_new
        self._xs, self.ys = [], []
        return st


# ----------------------------------------------------------------------------------------------- report hooks
#: colours of the decisions on the SE-over-time plot
ACTION_COLOURS = {"keep": "tab:green", "adapt": "tab:orange", "switch": "tab:purple", "deactivate": "tab:red", "reactivate": "tab:blue"}


def shift_detection(monitoring: dict[str, Any] | None, n_shifts: int) -> list[dict[str, Any]]:
    """Per shift: ``detected_after_s`` (time from the shift to the first decision the monitor or the
    configuration check took; None if never or when nothing monitored), ``detected_by``, ``detection_action``."""
    det = (monitoring or {}).get("detection") or []
    out = []
    for i in range(n_shifts):
        d = det[i] if i < len(det) else {}
        out.append({"detected_after_s": d.get("detected_after_s"), "detected_by": d.get("detected_by"), "detection_action": d.get("action")})
    return out


def monitoring_md(k: dict[str, Any]) -> list[str]:
    """Markdown lines of the ``monitoring`` KPI section (empty when the run had none)."""
    m = k.get("monitoring")
    if not m:
        return []
    c, mon = m["cost_us"], m["settings"]["monitor"]
    lines = [
        "", "## Life-cycle management", "",
        f"Bundles: {', '.join(f'`{b}`' for b in m['bundles'])}. Monitoring occasions: a full Set A sweep per UE every "
        f"{m['settings']['every']} cycles ({m['settings']['dense_every']} while the serving model adapts); {m['labels']} labels. "
        f"Alarm: CUSUM on the {mon['metric']} miss within {mon['margin_db']:g} dB, in-control ARL {mon['arl0']:g} labels, "
        f"reference {m['settings']['reference']}.",
        f"False alarms before the first shift: {m['false_alarms']}. Monitor cost per cycle ({c['clock']}): host p50 {c['host_p50']:.1f} us, "
        f"p99 {c['host_p99']:.1f} us, max {c['host_max']:.1f} us; device-scaled p99 {c['device_p99']:.1f} us "
        f"(x{c['slowdown_vs_host']:g}); one-off test design {c['design_ms']:.1f} ms.",
        "", "| t (s) | action | trigger | metric | value | bundle | reason |", "|---:|---|---|---|---|---|---|",
    ]
    for e in m["events"]:
        v = e["value"]
        v = f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v))
        lines.append(f"| {e['t_s']:.2f} | {e['action']} | {e['trigger']} | {e['metric']} | {v} | {e['bundle']} | {e['reason']} |")
    if not m["events"]:
        lines.append("| - | no decision | | | | | |")
    for s in k.get("shifts", []):
        d = s.get("detected_after_s")
        lines.append("")
        lines.append(f"Shift `{s['shift']}`: " + (f"detected after {d:.2f} s by the {s['detected_by']} ({s['detection_action']})."
                                                 if d is not None else "not detected."))
    return lines


def mark_decisions(ax: Any, res: Any) -> None:
    """Mark the manager's decisions on an SE-over-time axis; shade the cycles where legacy sweeping served."""
    m = getattr(res, "monitoring", None)
    if not m:
        return
    if res.serving_model is not None and (res.serving_model == 0).any():
        lo, hi = ax.get_ylim()
        ax.fill_between(res.t_s, lo, hi, where=res.serving_model == 0, color="0.5", alpha=0.15, step="post", label="legacy sweeping serves")
        ax.set_ylim(lo, hi)
    seen: set[str] = set()
    for e in m["events"]:
        a = e["action"]
        ax.axvline(e["t_s"], color=ACTION_COLOURS.get(a, "k"), lw=1.2, ls=":", label=None if a in seen else f"decision: {a}")
        seen.add(a)
