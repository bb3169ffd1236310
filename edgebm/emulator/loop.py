"""The UE loop over time: measure, infer under a deadline, refine, fall back, adapt.

Each beam cycle every UE measures Set B (noisy), runs the bundle through the torch-free runtime
(one single-sample call per UE, timed and scaled to the profile's device) and then follows
:func:`~edgebm.emulator.cycle.beam_cycle`: serving-beam re-measurement, full sweep when scheduled,
hierarchical fallback on low confidence or an RSRP drop, the previous beam kept when the decision is
late, otherwise top-K refinement. Every measured beam is charged to edgebm by component.

Adaptation starts at the first shift (the window before it runs the bundle as shipped, so it is a
clean "before" reference; a run without shifts never adapts). After each shift the UE gathers at most
``max_labels`` labels of the new domain (full sweeps every ``full_sweep_every`` cycles while it wants
labels, every ``idle_sweep_every`` otherwise; hierarchical fallbacks) and updates the head every
``update_every`` cycles. Hierarchical and exhaustive search run on the same traces for comparison,
through :mod:`edgebm.baselines`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import baselines as B
from .. import metrics as M
from ..runtime import HeadAdapter, Predictor
from ..sim import RandomScenario, ScenarioConfig, simulate_trajectories
from ..sim.geometry import is_city_name, parse_random_city
from .cycle import COMPONENTS, CyclePolicy, UEState, beam_cycle
from .monitoring import LcmLabels, MonitoringDriver, MonitoringSettings

from ..errors import EmulatorConfigError, EmulatorError
from ..profiles import SSB_PERIODS_MS

__all__ = ["Shift", "EmulatorConfig", "EmulatorResult", "Phase", "Infer", "parse_shift", "emulate_traces", "run_emulator", "SSB_PERIODS_MS"]


@dataclass(frozen=True)
class Shift:
    """A domain shift injected at ``at_s`` seconds: ``kind`` in array / codebook / city."""

    kind: str
    value: str
    at_s: float

    def apply(self, cfg: ScenarioConfig) -> ScenarioConfig:
        if self.kind == "array":
            r, c = (int(v) for v in self.value.lower().split("x"))
            return replace(cfg, ue_array=(r, c))
        if self.kind == "codebook":
            # "random64": a random 64-beam subset of a x4 oversampled DFT; "random64@7" picks the draw
            val, _, seed = self.value.partition("@")
            n = int(val.removeprefix("random") or cfg.set_a)
            return replace(cfg, codebook_a="random", set_a=n, codebook_seed=int(seed or 1))
        if self.kind == "city":
            return replace(cfg, city=self.value)
        raise EmulatorError(f"unknown shift kind {self.kind!r} (array, codebook, city)")


_SHIFT_FORM = "KIND:VALUE[@SECONDS] (array:8x8, codebook:random64, city:city2@5)"


def _shift_time(text: str, at_txt: str) -> float:
    try:
        at = float(at_txt)
    except ValueError:
        raise EmulatorConfigError("--shift", f"{text!r}: time {at_txt!r} is not a number of seconds", f"write {_SHIFT_FORM}") from None
    if not math.isfinite(at) or at <= 0:
        raise EmulatorConfigError("--shift", f"{text!r}: time {at_txt} s must be a finite number > 0", "give the second of the run the shift happens at")
    return at


def parse_shift(text: str, default_at_s: float) -> Shift:
    """``array:8x8``, ``codebook:random64``, ``city:city2``, optionally ``@T`` seconds: ``city:city2@5``.

    A codebook value may carry its own draw, ``codebook:random64@7``; its time is then a second ``@``:
    ``codebook:random64@7@5``. Whether the time falls inside the run is checked by :class:`EmulatorConfig`.
    """
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise EmulatorConfigError("--shift", f"{text!r} is not a shift", f"write {_SHIFT_FORM}")
    value, at = rest, default_at_s
    if (kind != "codebook" and "@" in rest) or (kind == "codebook" and rest.count("@") == 2):
        value, at_txt = rest.rsplit("@", 1)
        at = _shift_time(text, at_txt)
    shift = Shift(kind, value, at)
    try:
        shift.apply(ScenarioConfig())
    except (ValueError, TypeError) as e:
        raise EmulatorConfigError("--shift", f"{text!r}: {e}", f"write {_SHIFT_FORM}") from None
    return shift


#: the emulator holds every cycle of every UE in memory (a few hundred bytes each per phase)
MAX_UE_CYCLES = 2_000_000


@dataclass(frozen=True)
class EmulatorConfig:
    """Emulation settings. Times in ms unless named ``_s``."""

    n_ues: int = 16
    duration_s: float = 10.0
    beam_cycle_ms: float | None = None  # default: the profile's
    ssb_period_ms: float | None = None  # default: the profile's; one beam decision per SSB burst
    k_refine: int = 3  # narrow beams measured after prediction
    confidence: float = 0.2  # top-1 probability below this -> hierarchical fallback
    drop_db: float = 6.0  # serving-beam RSRP drop that triggers fallback, dB
    full_sweep_every: int = 25  # cycles between exhaustive sweeps per UE while labels are wanted; 0 = never
    idle_sweep_every: int = 250  # ... once the label budget after a shift is spent (drift watch); 0 = never
    adapt: bool = True
    update_every: int = 5  # cycles between head updates
    adapt_lr: float = 0.1
    adapt_steps: int = 20
    max_labels: int = 200  # stop adapting after this many labelled samples since the last shift
    shifts: tuple[Shift, ...] = ()
    deadline_ms: float | None = None  # default: the profile's inference_budget_ms
    seed: int = 0
    monitoring: MonitoringSettings | None = None  # life-cycle management (monitor, decisions); None = off
    city: str | None = None  # city the UEs move in (see scenario_for); None = the bundle's own, else city0

    def __post_init__(self) -> None:
        def fail(name: str, problem: str, fix: str = "") -> EmulatorConfigError:
            return EmulatorConfigError(name, problem, fix)

        def integer(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise fail(name, f"must be an integer >= {lo}, got {v!r}")

        def number(name: str, lo: float, hi: float = math.inf, *, lo_open: bool = True, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
            if not ok:
                rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if math.isfinite(hi) else f"{'>' if lo_open else '>='} {lo:g}"
                raise fail(name, f"must be a finite number {rng}, got {v!r}")

        integer("n_ues", 1)
        number("duration_s", 0.0)
        number("beam_cycle_ms", 0.0, optional=True)
        if self.ssb_period_ms is not None and self.ssb_period_ms not in SSB_PERIODS_MS:
            raise fail("ssb_period_ms", f"must be one of {', '.join(map(str, SSB_PERIODS_MS))} ms, got {self.ssb_period_ms!r}")
        integer("k_refine", 1)
        number("confidence", 0.0, 1.0, lo_open=False)
        number("drop_db", 0.0, lo_open=False)
        integer("full_sweep_every", 0)
        integer("idle_sweep_every", 0)
        integer("update_every", 1)
        number("adapt_lr", 0.0)
        integer("adapt_steps", 1)
        integer("max_labels", 0)
        number("deadline_ms", 0.0, optional=True)
        integer("seed", 0)
        if self.city is not None and not is_city_name(self.city):
            raise fail("city", f"{self.city!r} is not a city", "give city0..city3, or rand-<seed>-<k> for a bundle trained on randomised cities")
        for i, sh in enumerate(self.shifts):
            if not isinstance(sh, Shift):
                raise fail(f"shifts[{i}]", f"must be a Shift (see parse_shift), got {type(sh).__name__}")
            if not (math.isfinite(sh.at_s) and 0 < sh.at_s < self.duration_s):
                raise fail("shifts", f"{sh.kind}:{sh.value}@{sh.at_s:g} is outside the run (0, {self.duration_s:g}) s",
                           "give a time inside the run or a longer duration")
        cycle = self.ssb_period_ms or self.beam_cycle_ms or min(SSB_PERIODS_MS)
        ue_cycles = self.n_ues * self.duration_s * 1e3 / cycle
        if ue_cycles > MAX_UE_CYCLES:
            raise fail("duration_s", f"{self.n_ues} UEs x {self.duration_s:g} s at a {cycle:g} ms cycle is {ue_cycles:.3g} UE-cycles, "
                       f"more than the {MAX_UE_CYCLES:.0e} the emulator holds in memory", "use fewer UEs or a shorter duration")


@dataclass
class EmulatorResult:
    """Per-cycle traces (cycles T, UEs U) and totals; written by :mod:`edgebm.emulator.report`."""

    config: dict[str, Any]
    t_s: np.ndarray  # (T,) cycle start times
    se: dict[str, np.ndarray]  # method -> (T, U) SE of the serving beam, b/s/Hz
    se_genie: np.ndarray  # (T, U)
    beams: dict[str, np.ndarray]  # method -> (T, U) beams measured, all components
    beam_parts: dict[str, dict[str, np.ndarray]]  # method -> component -> (T, U) beams measured
    served: np.ndarray  # (T, U) Set A beam edgebm served
    latency_ms: np.ndarray  # (T, U) device-scaled inference latency
    deadline_ms: float
    stale: np.ndarray  # (T, U) bool: decision missed the deadline and the previous beam was kept
    fallback: np.ndarray  # (T, U) bool: hierarchical fallback (either rule)
    fallback_conf: np.ndarray  # (T, U) bool: ... because the top-1 confidence was low
    fallback_drop: np.ndarray  # (T, U) bool: ... because the serving beam's RSRP dropped
    full_sweep: np.ndarray  # (T, U) bool
    updates: list[dict[str, Any]] = field(default_factory=list)  # one per head update: t_s, phase, UpdateStats fields
    shifts: list[dict[str, Any]] = field(default_factory=list)  # kind, value, at_s, cycle
    labels: list[dict[str, int]] = field(default_factory=list)  # per phase: gathered (<= max_labels), used by updates
    adaptation_from_s: float | None = None  # adaptation starts at the first shift; None = never
    cycle_ms: float = 20.0
    seconds: float = 0.0
    monitoring: dict[str, Any] | None = None  # life-cycle management: events, alarms, cost (see emulator.monitoring)
    serving_model: np.ndarray | None = None  # (T,) 1 where the model served, 0 where legacy sweeping did (LCM runs)
    active_bundle: np.ndarray | None = None  # (T,) index into monitoring["bundles"] of the active bundle (LCM runs)


@dataclass(frozen=True)
class Phase:
    """The cycles ``[start, start + len(rsrp_b))`` under one scenario (arrays (cycles, U, ...))."""

    start: int
    rsrp_b: np.ndarray  # (Tp, U, |B|) measured (noisy) Set B RSRP, dBm
    rsrp_a: np.ndarray  # (Tp, U, |A|) true Set A RSRP, dBm
    noise_dbm: np.ndarray  # (Tp, U)
    children: np.ndarray  # (|B|, c) narrow beams under each wide beam (hierarchical search)
    name: str = "base"
    configuration: dict[str, Any] | None = None  # what the UE knows of its configuration (runtime.functionality)
    cb_a_weights: np.ndarray | None = None  # (|A|, n_tx) Set A precoders (a codebook-agnostic bundle serves them)


#: ``infer(rsrp_b (U, |B|)) -> (top (U, K) beams best first, top-1 probability (U,), device-scaled latency (U,) ms)``
Infer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class _LabelWindow:
    """Labels for the on-device update, counted per shift window.

    Adaptation starts at the first shift: the window before it runs the bundle exactly as shipped (it is
    the "before" reference). After each shift the pending labels and the adapter's buffers of the old domain
    are dropped, and at most ``max_labels`` labels of the new domain are gathered.
    """

    def __init__(self, adapter: Any, cfg: EmulatorConfig, n_phases: int) -> None:
        self.adapter, self.cfg = adapter, cfg
        self.phase, self.active = 0, False
        self.gathered, self.used = [0] * n_phases, [0] * n_phases
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []

    def start(self, phase: int, n_a: int) -> None:
        self.phase, self.xs, self.ys = phase, [], []
        self.active = self.adapter is not None and n_a == self.adapter.n_classes
        if self.adapter is not None:
            self.adapter.reset()

    @property
    def wants_labels(self) -> bool:
        return self.active and self.gathered[self.phase] < self.cfg.max_labels

    def collect(self, rsrp_b: np.ndarray, label: np.ndarray) -> None:
        if not self.wants_labels:
            return
        keep = np.flatnonzero(label >= 0)[: self.cfg.max_labels - self.gathered[self.phase]]
        if len(keep):
            self.xs.append(rsrp_b[keep])
            self.ys.append(label[keep])
            self.gathered[self.phase] += len(keep)

    def update(self) -> Any:
        st = self.adapter.update(np.concatenate(self.xs), np.concatenate(self.ys))
        self.used[self.phase] += st.n_new
        self.xs, self.ys = [], []
        return st


class CodebookServer:
    """A codebook-agnostic bundle (``functionality.codebook_agnostic``, family ``angular``) without life-cycle
    management serves the Set A codebook the network configures in each phase, as the UE would: a phase whose
    codebook (sha256 of its weights) differs from the served one goes through ``Predictor.set_codebook``; its
    head restarts, so the on-device update continues with a new :class:`~edgebm.runtime.HeadAdapter` on it.
    (Under life-cycle management :meth:`MonitoringDriver.serve_codebook` does the same for every bundle.)"""

    def __init__(self, pred: Predictor, served: str | None, adapter_kw: dict[str, Any] | None) -> None:
        self.pred, self.served, self.adapter_kw = pred, served, adapter_kw
        self.changes: list[dict[str, Any]] = []  # one per codebook served: phase, codebook sha256, |A|

    def serve(self, i: int, ph: Phase) -> bool:
        """Serve phase ``i``'s codebook; True when the bundle took a new one (its head restarted)."""
        cur = (ph.configuration or {}).get("codebook_a")
        if ph.cb_a_weights is None or cur is None or cur == self.served:
            return False
        bs = (ph.configuration or {}).get("bs_array")
        self.pred.set_codebook(np.asarray(ph.cb_a_weights), None if bs is None else tuple(bs))
        self.served = cur
        self.changes.append({"phase": i, "codebook_a": cur, "set_a": int(self.pred.n_a)})
        return True

    def new_adapter(self) -> HeadAdapter | None:
        return None if self.adapter_kw is None else HeadAdapter(self.pred, **self.adapter_kw)


def emulate_traces(
    phases: list[Phase],
    infer: Infer,
    cfg: EmulatorConfig,
    *,
    cycle_ms: float,
    deadline_ms: float,
    adapter: Any = None,
    measure: B.Measure | None = None,
    n_avg: int = 24,
    progress: Callable[[str, float, float, str], None] | None = None,
    lcm: MonitoringDriver | None = None,
    infers: list[Infer] | None = None,
    adapters: list[Any] | None = None,
    codebooks: CodebookServer | None = None,
) -> EmulatorResult:
    """The UE loop over given RSRP traces (no simulator needed): :func:`beam_cycle` per cycle, labels and head
    updates, then hierarchical and exhaustive search on the same traces through :mod:`edgebm.baselines`.

    ``phases`` are consecutive (``phases[0].start == 0``); each later phase is a shift. ``measure`` replaces
    the noisy measurement (seeded from ``cfg.seed``) for the UE and the comparators, e.g. with an exact one in
    tests. ``adapter`` is a :class:`~edgebm.runtime.HeadAdapter` (or None: no on-device update).

    With ``lcm`` (life-cycle management, :mod:`edgebm.emulator.monitoring`) the driver decides which registered
    bundle runs (``infers[i]`` / ``adapters[i]`` per bundle; ``infer`` / ``adapter`` are then unused), whether it or
    legacy hierarchical search serves, when the UEs sweep Set A (monitoring occasions) and when the head adapts.
    Without it, ``codebooks`` makes a codebook-agnostic bundle serve each phase's configured codebook.
    """
    T = phases[-1].start + len(phases[-1].rsrp_b)
    U = phases[0].rsrp_b.shape[1]
    ue_measure = measure or _noisy(cfg.seed + 1, n_avg)
    base_measure = measure or _noisy(cfg.seed + 2, n_avg)
    policy = CyclePolicy(deadline_ms=deadline_ms, confidence=cfg.confidence, drop_db=cfg.drop_db)
    state = UEState.fresh(U)
    window: Any = _LabelWindow(adapter if cfg.adapt else None, cfg, len(phases))
    if lcm is not None:
        window = LcmLabels(lcm, [a if cfg.adapt else None for a in (adapters or [None] * len(lcm.predictors))], cfg, len(phases))
    trace = {name: np.zeros((T, U), dtype=bool) for name in ("stale", "fallback_conf", "fallback_drop", "full_sweep")}
    parts = {c: np.zeros((T, U), dtype=np.int64) for c in COMPONENTS}
    se, se_genie, latency = np.zeros((T, U)), np.zeros((T, U)), np.zeros((T, U))
    served = np.zeros((T, U), dtype=np.int64)
    updates: list[dict[str, Any]] = []
    stagger = np.arange(U)  # full sweeps of different UEs fall on different cycles

    for i, ph in enumerate(phases):
        if lcm is None and codebooks is not None and codebooks.serve(i, ph):
            window.adapter = codebooks.new_adapter() if cfg.adapt else None  # the old one trained the replaced head
        if i > 0:
            state.forget()
            window.start(i, ph.rsrp_a.shape[-1])
        if lcm is not None:
            lcm.configure(ph.start * cycle_ms / 1e3, ph.configuration)
            window.restart(lcm.serve_codebook(ph.cb_a_weights, (ph.configuration or {}).get("bs_array")))
        for j in range(len(ph.rsrp_b)):
            t = ph.start + j
            xb, xa, nz = ph.rsrp_b[j], ph.rsrp_a[j], ph.noise_dbm[j]
            legacy = lcm is not None and not lcm.serving_model
            if lcm is None:
                top, conf, latency[t] = infer(xb)
                every = cfg.full_sweep_every if window.wants_labels else cfg.idle_sweep_every
                sweep = (every > 0) & ((t + stagger) % max(every, 1) == 0)
            else:
                if legacy:  # the model is deactivated: no inference this cycle (it runs in shadow on monitoring occasions)
                    top, conf, latency[t] = np.zeros((U, 1), np.int64), np.ones(U), np.nan
                else:
                    top, conf, latency[t] = infers[lcm.active](xb)  # type: ignore[index]
                sweep = lcm.sweep_mask(t)
            out = beam_cycle(state, xb, xa, nz, ph.children, top, conf, latency[t], sweep, policy, ue_measure, legacy=legacy)
            if lcm is not None:
                lcm.observe(t * cycle_ms / 1e3, xb, out.full_sweep, out.extra.get("sweep_dbm"), None if legacy else top, ph.children)
                window.follow(i, ph.rsrp_a.shape[-1])
            se[t], se_genie[t], served[t] = out.se, out.se_genie, out.served
            for c in COMPONENTS:
                parts[c][t] = out.beams[c]
            for name in trace:
                trace[name][t] = getattr(out, name)
            window.collect(xb, out.label)
            if window.xs and (t + 1) % cfg.update_every == 0:
                updates.append({"t_s": (t + 1) * cycle_ms / 1e3, "phase": i, **asdict(window.update())})
                if lcm is not None:
                    updates[-1]["bundle"] = lcm.names[window.bundle]
            if progress and (t % 10 == 0 or t == T - 1):
                progress("emulate", t + 1, T, f"SE {se[t].mean():.2f} / genie {se_genie[t].mean():.2f} b/s/Hz")

    se_hs, se_ex = np.zeros((T, U)), np.zeros((T, U))
    hs_parts = {"set_b": np.zeros((T, U), dtype=np.int64), "children": np.zeros((T, U), dtype=np.int64)}
    ex_parts = {"set_a": np.zeros((T, U), dtype=np.int64)}
    for ph in phases:  # comparators on the same traces, vectorised over the phase's cycles
        rows = slice(ph.start, ph.start + len(ph.rsrp_b))
        shape = ph.rsrp_a.shape[:2]
        fa, fb, fn = ph.rsrp_a.reshape(-1, ph.rsrp_a.shape[-1]), ph.rsrp_b.reshape(-1, ph.rsrp_b.shape[-1]), ph.noise_dbm.reshape(-1)
        hs = B.hierarchical_search(fb, fa, ph.children, fn, measure=base_measure)
        ex = B.exhaustive_search(fa, fn, measure=base_measure)
        se_hs[rows] = M.spectral_efficiency(np.take_along_axis(fa, hs.chosen[:, None], 1)[:, 0], fn).reshape(shape)
        se_ex[rows] = M.spectral_efficiency(np.take_along_axis(fa, ex.chosen[:, None], 1)[:, 0], fn).reshape(shape)
        hs_parts["set_b"][rows] = fb.shape[1]
        hs_parts["children"][rows] = ph.children.shape[1]
        ex_parts["set_a"][rows] = fa.shape[1]

    all_parts = {"edgebm": parts, "hierarchical": hs_parts, "exhaustive": ex_parts}
    return EmulatorResult(
        config={},
        t_s=np.arange(T) * cycle_ms / 1e3,
        se={"edgebm": se, "hierarchical": se_hs, "exhaustive": se_ex},
        se_genie=se_genie,
        beams={m: sum(p.values()) for m, p in all_parts.items()},
        beam_parts=all_parts,
        served=served,
        latency_ms=latency,
        deadline_ms=deadline_ms,
        stale=trace["stale"],
        fallback=trace["fallback_conf"] | trace["fallback_drop"],
        fallback_conf=trace["fallback_conf"],
        fallback_drop=trace["fallback_drop"],
        full_sweep=trace["full_sweep"],
        updates=updates,
        labels=[{"phase": i, "gathered": g, "used": u} for i, (g, u) in enumerate(zip(window.gathered, window.used))],
        adaptation_from_s=(window.first_adapt_s if lcm is not None else
                           (phases[1].start * cycle_ms / 1e3) if (len(phases) > 1 and window.adapter is not None) else None),
        cycle_ms=cycle_ms,
        monitoring=None if lcm is None else lcm.result([p.start * cycle_ms / 1e3 for p in phases[1:]]),
        serving_model=None if lcm is None else np.asarray(lcm.serving_trace, dtype=np.int8),
        active_bundle=None if lcm is None else np.asarray(lcm.active_trace, dtype=np.int16),
    )


def ue_configuration(cfg: ScenarioConfig, codebooks: dict[str, Any]) -> dict[str, Any]:
    """What a UE in scenario ``cfg`` knows of its configuration (beam counts, codebooks, arrays, carrier), in
    the form :func:`edgebm.runtime.functionality.check_configuration` reads."""
    from ..data.simulated import codebook_arrays
    from ..runtime.functionality import configuration_from

    meta = {"set_a": cfg.set_a, "set_b": cfg.set_b, "bs_array": list(cfg.bs_array), "ue_array": list(cfg.ue_array), "carrier_hz": cfg.carrier_hz}
    return configuration_from(meta, codebook_arrays(codebooks))


def _noisy(seed: int, n_avg: int) -> B.Measure:
    rng = np.random.default_rng(seed)
    return lambda r, n: B.measure_beams(r, n, rng, n_avg)


#: where UEs move when neither the bundle (trained on randomised cities) nor ``--scenario`` names a city
DEFAULT_CITY = "city0"


def scenario_for(pred: Predictor, city: str | None = None) -> tuple[ScenarioConfig, str]:
    """The scenario the UEs move in, and where its city comes from (``kpis.json`` ``config.city_source``).

    ``city`` (``edgebm emulate --scenario``): a named city ``city0`` .. ``city3`` in the bundle's radio settings,
    or ``rand-<seed>-<k>``: for a bundle trained on randomised cities, that random city as its scenario draws it
    (BS height, downtilt, scatterers, UE array, carrier; ``k`` below its number of cities). Default: the bundle's own
    city; a bundle trained on randomised cities has none and runs in :data:`DEFAULT_CITY` with the radio settings
    it was trained with, at the middle of its SNR range (dB)."""
    scen = pred.manifest.dataset.get("meta", {}).get("scenario")
    if not isinstance(scen, dict) or ("city" not in scen and scen.get("kind") != "random"):
        raise EmulatorError(f"{pred.bundle_dir}: bundle was not trained on simulator data; the emulator needs its scenario")
    try:
        if scen.get("kind") == "random":
            rs = RandomScenario.from_dict(scen)
            sk = parse_random_city(city) if city else None
            if sk is not None:
                if sk[1] >= rs.cities:
                    raise EmulatorConfigError("city", f"{city}: the bundle's random scenario has {rs.cities} cities",
                                              f"give rand-<seed>-<k> with k < {rs.cities}, or city0..city3")
                return rs.city_config(*sk), "--scenario (a city of the bundle's random scenario)"
            where = "--scenario" if city else f"default: the bundle was trained on {rs.cities} randomised cities, none of them named"
            return replace(rs.base, city=city or DEFAULT_CITY, snr_db=float(sum(rs.snr_db) / 2)), where
        base = ScenarioConfig.from_dict(scen)
    except EmulatorConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise EmulatorError(f"{pred.bundle_dir}: the bundle's scenario is not one the simulator can run ({e})") from None
    if city is None or city == base.city:
        return base, "the bundle's own city"
    try:
        return replace(base, city=city), "--scenario"
    except (ValueError, TypeError) as e:
        raise EmulatorConfigError("city", f"{city!r}: {e}", "give city0..city3") from None


def _predictor_infer(pred: Predictor, k: int, slowdown: float) -> Infer:
    """One single-sample call per UE (each UE runs its own model), timed on this host and scaled to the device."""

    def infer(xb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(xb)
        top, conf, lat = np.zeros((n, k), dtype=np.int64), np.zeros(n), np.zeros(n)
        for u in range(n):
            t0 = time.perf_counter_ns()
            b, p = pred.predict(xb[u], k=k)
            lat[u] = (time.perf_counter_ns() - t0) / 1e6 * slowdown
            top[u], conf[u] = b, p[0]
        return top, conf, lat

    return infer


def run_emulator(
    bundle: str | Path | Sequence[str | Path],
    cfg: EmulatorConfig,
    progress: Callable[[str, float, float, str], None] | None = None,
    trusted_keys: Sequence[Any] | None = None,
) -> EmulatorResult:
    """Run ``cfg.n_ues`` UEs for ``cfg.duration_s`` with the bundle at ``bundle`` (signed by one of
    ``trusted_keys`` when given) on simulated trajectories.

    Several bundles (a list) are registered for life-cycle management (``cfg.monitoring``): the first is active at
    the start and sets the scenario; the others are what the manager may switch to."""
    t_start = time.perf_counter()
    bundles = [bundle] if isinstance(bundle, (str, Path)) else list(bundle)
    if not bundles:
        raise EmulatorError("no bundle given")
    if len(bundles) > 1 and cfg.monitoring is None:
        raise EmulatorConfigError("bundles", f"{len(bundles)} bundles but no life-cycle management to switch between them",
                                  "enable monitoring (edgebm emulate --monitor) or give one bundle")
    preds = [Predictor(b, trusted_keys=trusted_keys) for b in bundles]
    pred = preds[0]
    prof = pred.manifest.profile_config
    timing, compute = prof["timing"], prof["compute"]
    cycle_ms = float(cfg.ssb_period_ms or cfg.beam_cycle_ms or timing["ssb_period_ms"] or timing["beam_cycle_ms"])
    deadline_ms = float(cfg.deadline_ms if cfg.deadline_ms is not None else timing["inference_budget_ms"])
    n_steps = max(2, int(round(cfg.duration_s * 1e3 / cycle_ms)))
    base, city_source = scenario_for(pred, cfg.city)

    # the same UEs on the same streets; each shift changes the scenario from its cycle on
    ordered = sorted(cfg.shifts, key=lambda s: s.at_s)
    cfgs = [base]
    for s in ordered:
        cfgs.append(s.apply(cfgs[-1]))
    starts = [0] + [min(n_steps, int(round(s.at_s * 1e3 / cycle_ms))) for s in ordered] + [n_steps]
    if progress:
        progress("simulate", 0, len(cfgs), f"{cfg.n_ues} UEs x {n_steps} cycles")
    phases = []
    for i, c in enumerate(cfgs):
        sim = simulate_trajectories(c, n_ues=cfg.n_ues, n_steps=n_steps, dt_s=cycle_ms / 1e3, seed=cfg.seed)

        def grid(name: str, sim=sim, i=i) -> np.ndarray:  # rows are ordered (traj_id, t) -> (T, U, ...), this phase's cycles
            arr = getattr(sim, name)
            return np.swapaxes(arr.reshape((cfg.n_ues, n_steps) + arr.shape[1:]), 0, 1)[starts[i] : starts[i + 1]]

        phases.append(Phase(starts[i], grid("rsrp_b"), grid("rsrp_a"), grid("noise_dbm"), np.asarray(sim.codebooks["children"]),
                            "base" if i == 0 else f"{ordered[i - 1].kind}:{ordered[i - 1].value}", ue_configuration(c, sim.codebooks),
                            np.asarray(sim.codebooks["set_a"].weights)))
        if progress:
            progress("simulate", i + 1, len(cfgs), c.city)
    if phases[0].rsrp_b.shape[-1] != pred.n_b:
        raise EmulatorError(f"bundle expects |Set B| = {pred.n_b}, scenario gives {phases[0].rsrp_b.shape[-1]}")
    phases = [p for p in phases if len(p.rsrp_b)]  # a shift at or past the end leaves an empty phase

    on_device = prof.get("adaptation", {}).get("on_device_update", True) is not False  # the profile may forbid updates
    slowdown = float(compute["slowdown_vs_host"])
    for p in preds:
        if p.n_b != pred.n_b:
            raise EmulatorError(f"{p.bundle_dir}: |Set B| = {p.n_b}, the first bundle's is {pred.n_b}; bundles to switch between must agree")
        for _ in range(20):  # warm the session up so first-call costs do not count as deadline misses
            p.predict(phases[0].rsrp_b[0, 0], k=min(cfg.k_refine, p.n_a))
    served = None
    if cfg.monitoring is None:
        adapter_kw = ({"lr": cfg.adapt_lr, "steps": cfg.adapt_steps, "seed": cfg.seed}
                      if cfg.adapt and on_device and pred.head is not None and len(phases) > 1 else None)
        adapter = None if adapter_kw is None else HeadAdapter(pred, **adapter_kw)
        fn = pred.manifest.functionality or {}
        if fn.get("codebook_agnostic"):
            served = CodebookServer(pred, fn.get("codebook_a"), adapter_kw)
        res = emulate_traces(phases, _predictor_infer(pred, cfg.k_refine, slowdown), cfg, cycle_ms=cycle_ms,
                             deadline_ms=deadline_ms, adapter=adapter, n_avg=base.n_subcarriers, progress=progress, codebooks=served)
    else:  # life-cycle management decides when to adapt: every bundle that can gets an adapter
        driver = MonitoringDriver(preds, cfg.monitoring, cfg.n_ues, cfg.k_refine, slowdown)
        adapters = [HeadAdapter(p, lr=cfg.adapt_lr, steps=cfg.adapt_steps, seed=cfg.seed) if cfg.adapt and on_device and p.head is not None
                    else None for p in preds]
        res = emulate_traces(phases, _predictor_infer(pred, cfg.k_refine, slowdown), cfg, cycle_ms=cycle_ms, deadline_ms=deadline_ms,
                             n_avg=base.n_subcarriers, progress=progress, lcm=driver,
                             infers=[_predictor_infer(p, min(cfg.k_refine, p.n_a), slowdown) for p in preds], adapters=adapters)
    res.config = {**asdict(cfg), "shifts": [asdict(s) for s in cfg.shifts], "bundle": str(bundles[0]),
                  "bundles": [str(b) for b in bundles], "profile": pred.manifest.profile,
                  "family": pred.manifest.family, "backend": pred.backend, "backend_reason": pred.backend_reason,
                  "scenario": base.to_dict(), "city": base.city, "city_source": city_source,
                  "codebooks_served": None if served is None else served.changes}
    res.shifts = [{**asdict(s), "cycle": int(st)} for s, st in zip(ordered, starts[1:-1]) if st < n_steps]
    res.seconds = time.perf_counter() - t_start
    return res
