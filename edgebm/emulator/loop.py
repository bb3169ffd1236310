"""The UE loop over time: measure, infer under a deadline, refine, fall back, adapt.

Each beam cycle every UE measures Set B (noisy), runs the bundle through the torch-free runtime
(one single-sample call per UE, timed and scaled to the profile's device), measures the top-K
predicted narrow beams and keeps the strongest. A decision later than the inference deadline keeps
the previous beam (stale). Low confidence or a serving-beam RSRP drop triggers a two-level
hierarchical sweep; those sweeps and a periodic full sweep provide labels for the head-only
on-device update. Exhaustive and hierarchical search run on the same trajectories for comparison.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import metrics as M
from ..baselines import measure_beams
from ..runtime import HeadAdapter, Predictor
from ..sim import ScenarioConfig, simulate_trajectories

from ..errors import EmulatorConfigError, EmulatorError
from ..profiles import SSB_PERIODS_MS

__all__ = ["Shift", "EmulatorConfig", "EmulatorResult", "parse_shift", "run_emulator", "SSB_PERIODS_MS"]


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
    """Per-cycle traces (cycles, UEs) and totals; written by :mod:`edgebm.emulator.report`."""

    config: dict[str, Any]
    t_s: np.ndarray  # (T,) cycle start times
    se: dict[str, np.ndarray]  # method -> (T, U) SE of the serving beam, b/s/Hz
    se_genie: np.ndarray  # (T, U)
    beams: dict[str, np.ndarray]  # method -> (T, U) beams measured
    latency_ms: np.ndarray  # (T, U) device-scaled inference latency
    deadline_ms: float
    stale: np.ndarray  # (T, U) bool: decision missed the deadline
    fallback: np.ndarray  # (T, U) bool
    full_sweep: np.ndarray  # (T, U) bool
    updates: list[dict[str, float]] = field(default_factory=list)
    shifts: list[dict[str, Any]] = field(default_factory=list)
    cycle_ms: float = 20.0
    seconds: float = 0.0


def _scenario_for(pred: Predictor) -> ScenarioConfig:
    scen = pred.manifest.dataset.get("meta", {}).get("scenario")
    if not isinstance(scen, dict) or "city" not in scen:
        raise EmulatorError(f"{pred.bundle_dir}: bundle was not trained on simulator data; the emulator needs its scenario")
    try:
        return ScenarioConfig.from_dict(scen)
    except (ValueError, TypeError) as e:
        raise EmulatorError(f"{pred.bundle_dir}: the bundle's scenario is not one the simulator can run ({e})") from None


def run_emulator(
    bundle: str | Path,
    cfg: EmulatorConfig,
    progress: Callable[[str, float, float, str], None] | None = None,
    trusted_keys: Sequence[Any] | None = None,
) -> EmulatorResult:
    """Run ``cfg.n_ues`` UEs for ``cfg.duration_s`` with the bundle at ``bundle`` (signed by one of
    ``trusted_keys`` when given)."""
    t_start = time.perf_counter()
    pred = Predictor(bundle, trusted_keys=trusted_keys)
    prof = pred.manifest.profile_config
    timing, compute = prof["timing"], prof["compute"]
    cycle_ms = float(cfg.ssb_period_ms or cfg.beam_cycle_ms or timing["ssb_period_ms"] or timing["beam_cycle_ms"])
    deadline_ms = float(cfg.deadline_ms if cfg.deadline_ms is not None else timing["inference_budget_ms"])
    slowdown = float(compute["slowdown_vs_host"])
    n_steps = max(2, int(round(cfg.duration_s * 1e3 / cycle_ms)))
    base = _scenario_for(pred)

    # the same UEs on the same streets; each shift changes the scenario from its cycle on
    phases = sorted(cfg.shifts, key=lambda s: s.at_s)
    cfgs = [base]
    for s in phases:
        cfgs.append(s.apply(cfgs[-1]))
    if progress:
        progress("simulate", 0, len(cfgs), f"{cfg.n_ues} UEs x {n_steps} cycles")
    sims = []
    for i, c in enumerate(cfgs):
        sims.append(simulate_trajectories(c, n_ues=cfg.n_ues, n_steps=n_steps, dt_s=cycle_ms / 1e3, seed=cfg.seed))
        if progress:
            progress("simulate", i + 1, len(cfgs), c.city)
    starts = [0] + [min(n_steps, int(round(s.at_s * 1e3 / cycle_ms))) for s in phases]
    phase_of = np.zeros(n_steps, dtype=int)
    for i, st in enumerate(starts):
        phase_of[st:] = i

    def grid(sim, name: str) -> np.ndarray:  # rows are ordered (traj_id, t) -> (T, U, ...)
        arr = getattr(sim, name)
        return np.swapaxes(arr.reshape((cfg.n_ues, n_steps) + arr.shape[1:]), 0, 1)

    rsrp_b = [grid(s, "rsrp_b") for s in sims]
    rsrp_a = [grid(s, "rsrp_a") for s in sims]
    noise = [grid(s, "noise_dbm") for s in sims]
    children = [np.asarray(s.codebooks["children"]) for s in sims]
    n_avg = base.n_subcarriers
    if rsrp_b[0].shape[-1] != pred.n_b:
        raise EmulatorError(f"bundle expects |Set B| = {pred.n_b}, scenario gives {rsrp_b[0].shape[-1]}")

    rng = np.random.default_rng(cfg.seed + 1)
    adapter = HeadAdapter(pred, lr=cfg.adapt_lr, steps=cfg.adapt_steps, seed=cfg.seed) if cfg.adapt and pred.head is not None else None
    U, T = cfg.n_ues, n_steps
    se_model = np.zeros((T, U))
    se_genie = np.zeros((T, U))
    beams_model = np.zeros((T, U), dtype=np.int64)
    latency = np.zeros((T, U))
    stale = np.zeros((T, U), dtype=bool)
    fallback = np.zeros((T, U), dtype=bool)
    full = np.zeros((T, U), dtype=bool)
    serving = np.full(U, -1, dtype=np.int64)
    serving_rsrp = np.full(U, -np.inf)
    pending_x: list[np.ndarray] = []
    pending_y: list[np.ndarray] = []
    labels_since_shift = 0
    updates: list[dict[str, float]] = []
    sweep_phase = np.arange(U)  # stagger full sweeps across UEs
    for _ in range(20):  # warm the session up so first-call costs do not count as deadline misses
        pred.predict(rsrp_b[0][0, 0], k=cfg.k_refine)

    for t in range(T):
        ph = phase_of[t]
        if t > 0 and ph != phase_of[t - 1]:
            labels_since_shift = 0
            serving[:] = -1  # beam indices of a new codebook mean something else
        xb, xa, nz = rsrp_b[ph][t], rsrp_a[ph][t], noise[ph][t]
        n_a = xa.shape[1]
        # inference: one single-sample call per UE, timed, scaled to the device
        top = np.zeros((U, cfg.k_refine), dtype=np.int64)
        conf = np.zeros(U)
        for u in range(U):
            t0 = time.perf_counter_ns()
            b, p = pred.predict(xb[u], k=cfg.k_refine)
            latency[t, u] = (time.perf_counter_ns() - t0) / 1e6 * slowdown
            top[u], conf[u] = b, p[0]
        top = np.minimum(top, n_a - 1)  # a codebook shift to a smaller Set A
        late = latency[t] > deadline_ms
        stale[t] = late & (serving >= 0)
        # refinement: measure the K predicted beams (noisy), keep the best
        meas = measure_beams(np.take_along_axis(xa, top, 1), nz, rng, n_avg)
        chosen = np.take_along_axis(top, meas.argmax(1)[:, None], 1)[:, 0]
        chosen_meas = meas.max(1)
        beams_model[t] = pred.n_b + cfg.k_refine
        # fallback: low confidence, or the serving beam lost more than drop_db since the last cycle
        cur = np.where(serving >= 0, measure_beams(np.take_along_axis(xa, np.maximum(serving, 0)[:, None], 1), nz, rng, n_avg)[:, 0], np.inf)
        fb = (conf < cfg.confidence) | (cur < serving_rsrp - cfg.drop_db)
        # active learning: frequent full sweeps while the adapter wants labels, rare ones afterwards
        every = cfg.full_sweep_every if (adapter is not None and labels_since_shift < cfg.max_labels) else cfg.idle_sweep_every
        sweep = (every > 0) & ((t + sweep_phase) % max(every, 1) == 0)
        fb &= ~sweep
        lab = np.full(U, -1, dtype=np.int64)
        if fb.any():
            cand = children[ph][xb[fb].argmax(1)]
            m2 = measure_beams(np.take_along_axis(xa[fb], cand, 1), nz[fb], rng, n_avg)
            best = np.take_along_axis(cand, m2.argmax(1)[:, None], 1)[:, 0]
            chosen[fb], chosen_meas[fb] = best, m2.max(1)
            beams_model[t, fb] = pred.n_b + cand.shape[1]
            lab[fb] = best
        if sweep.any():
            m3 = measure_beams(xa[sweep], nz[sweep], rng, n_avg)
            chosen[sweep], chosen_meas[sweep] = m3.argmax(1), m3.max(1)
            beams_model[t, sweep] = n_a
            lab[sweep] = m3.argmax(1)
        fallback[t], full[t] = fb, sweep
        # a late decision keeps the previous beam
        final = np.where(stale[t], serving, chosen)
        serving = final
        serving_rsrp = np.where(stale[t], serving_rsrp, chosen_meas)
        se_model[t] = M.spectral_efficiency(np.take_along_axis(xa, final[:, None], 1)[:, 0], nz)
        se_genie[t] = M.spectral_efficiency(xa.max(1), nz)
        # labels for the on-device update
        if adapter is not None and (lab >= 0).any() and labels_since_shift < cfg.max_labels and n_a == pred.n_a:
            keep = np.flatnonzero(lab >= 0)[: cfg.max_labels - labels_since_shift]
            pending_x.append(xb[keep])
            pending_y.append(lab[keep])
            labels_since_shift += len(keep)
        if adapter is not None and pending_y and (t + 1) % cfg.update_every == 0:
            st = adapter.update(np.concatenate(pending_x), np.concatenate(pending_y))
            updates.append({"t_s": (t + 1) * cycle_ms / 1e3, **asdict(st)})
            pending_x, pending_y = [], []
        if progress and (t % 10 == 0 or t == T - 1):
            progress("emulate", t + 1, T, f"SE {se_model[t].mean():.2f} / genie {se_genie[t].mean():.2f} b/s/Hz")

    # comparators on the same trajectories, vectorised over all cycles
    se_ex = np.zeros((T, U))
    se_hs = np.zeros((T, U))
    beams_hs = np.zeros((T, U), dtype=np.int64)
    beams_ex = np.zeros((T, U), dtype=np.int64)
    for ph in range(len(cfgs)):
        rows = phase_of == ph
        if not rows.any():
            continue
        xa, xb, nz = rsrp_a[ph][rows], rsrp_b[ph][rows], noise[ph][rows]
        flat_a, flat_b, flat_n = xa.reshape(-1, xa.shape[-1]), xb.reshape(-1, xb.shape[-1]), nz.reshape(-1)
        ex = measure_beams(flat_a, flat_n, rng, n_avg).argmax(1)
        se_ex[rows] = M.spectral_efficiency(np.take_along_axis(flat_a, ex[:, None], 1)[:, 0], flat_n).reshape(xa.shape[:2])
        cand = children[ph][flat_b.argmax(1)]
        m = measure_beams(np.take_along_axis(flat_a, cand, 1), flat_n, rng, n_avg)
        hs = np.take_along_axis(cand, m.argmax(1)[:, None], 1)[:, 0]
        se_hs[rows] = M.spectral_efficiency(np.take_along_axis(flat_a, hs[:, None], 1)[:, 0], flat_n).reshape(xa.shape[:2])
        beams_hs[rows] = flat_b.shape[1] + cand.shape[1]
        beams_ex[rows] = flat_a.shape[1]

    return EmulatorResult(
        config={**asdict(cfg), "shifts": [asdict(s) for s in cfg.shifts], "bundle": str(bundle), "profile": pred.manifest.profile,
                "family": pred.manifest.family, "backend": pred.backend, "backend_reason": pred.backend_reason,
                "scenario": base.to_dict()},
        t_s=np.arange(T) * cycle_ms / 1e3,
        se={"edgebm": se_model, "hierarchical": se_hs, "exhaustive": se_ex},
        se_genie=se_genie,
        beams={"edgebm": beams_model, "hierarchical": beams_hs, "exhaustive": beams_ex},
        latency_ms=latency,
        deadline_ms=deadline_ms,
        stale=stale,
        fallback=fallback,
        full_sweep=full,
        updates=updates,
        shifts=[{**asdict(s), "cycle": int(st)} for s, st in zip(phases, starts[1:])],
        cycle_ms=cycle_ms,
        seconds=time.perf_counter() - t_start,
    )
