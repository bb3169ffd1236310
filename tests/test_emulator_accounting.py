"""Emulator accounting with hand-made arrays and hand-computed expected values (no simulator, no model).

Measurements are exact (``measure = lambda rsrp, noise: rsrp``) so every chosen beam, level and SE can be
worked out on paper; the arithmetic is in the comments next to each expected value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgebm import metrics as M
from edgebm.emulator.cycle import COMPONENTS, CyclePolicy, UEState, beam_cycle
from edgebm.emulator.loop import EmulatorConfig, Phase, emulate_traces
from edgebm.emulator.report import compute_kpis
from edgebm.runtime import UpdateStats

NOISE = -100.0  # dBm


def exact(rsrp: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.asarray(rsrp, dtype=float)


def dbm(snr_linear: float) -> float:
    """The RSRP (dBm) whose SNR over NOISE is ``snr_linear``: SE = log2(1 + snr_linear)."""
    return NOISE + 10 * math.log10(snr_linear)


def state(serving: list[int], level: list[float]) -> UEState:
    return UEState(np.array(serving, dtype=np.int64), np.array(level, dtype=float))


# 4 wide beams (Set B) over 8 narrow beams (Set A): wide j covers narrow 2j and 2j+1
CHILDREN = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
POLICY = CyclePolicy(deadline_ms=1.0, confidence=0.2, drop_db=6.0)


def four_ue_cycle():
    """UE0 refines, UE1 falls back on low confidence, UE2 falls back on an RSRP drop, UE3 does a full sweep."""
    a = np.full((4, 8), -90.0)
    a[0, [1, 2, 3]] = [-75.0, -65.0, -80.0]  # UE0: serving beam 1 was -70, now -75 (5 dB < 6: no drop rule)
    a[1, [0, 6, 7]] = [-60.0, -72.0, -68.0]  # UE1: best is beam 0, but HS under wide 3 only sees 6 and 7
    a[2, [2, 3, 5]] = [-66.0, -64.0, -70.0]  # UE2: serving beam 5 was -60, now -70 (10 dB > 6: drop rule)
    a[3, 4] = -50.0  # UE3: sweep finds beam 4
    b = np.full((4, 4), -95.0)
    b[1, 3] = -80.0  # UE1's best wide beam: 3 -> children 6, 7
    b[2, 1] = -80.0  # UE2's best wide beam: 1 -> children 2, 3
    st = state([1, -1, 5, 0], [-70.0, -np.inf, -60.0, -55.0])
    top = np.array([[3, 2, 1], [0, 1, 2], [0, 1, 2], [0, 1, 2]])
    conf = np.array([0.9, 0.1, 0.9, 0.9])
    lat = np.array([0.5, 0.5, 0.5, 0.5])
    sweep = np.array([False, False, False, True])
    return st, b, a, top, conf, lat, sweep


def test_beam_cycle_charges_every_component():
    st, b, a, top, conf, lat, sweep = four_ue_cycle()
    out = beam_cycle(st, b, a, np.full(4, NOISE), CHILDREN, top, conf, lat, sweep, POLICY, exact)
    # served: UE0 best of beams 3, 2, 1 measured = beam 2 (-65); UE1 HS under wide 3 = beam 7 (-68 > -72);
    # UE2 HS under wide 1 = beam 3 (-64 > -66); UE3 sweep = beam 4 (-50)
    np.testing.assert_array_equal(out.served, [2, 7, 3, 4])
    np.testing.assert_array_equal(st.serving, [2, 7, 3, 4])
    np.testing.assert_allclose(st.serving_dbm, [-65.0, -68.0, -64.0, -50.0])
    # set_b: |B| = 4 for every UE; serving: 1 for UEs with a serving beam and no sweep (UE0, UE2);
    # refine: K = 3 for UE0; fallback: c = 2 children for UE1 and UE2; full_sweep: |A| = 8 for UE3
    expect = {"set_b": [4, 4, 4, 4], "serving": [1, 0, 1, 0], "refine": [3, 0, 0, 0], "fallback": [0, 2, 2, 0], "full_sweep": [0, 0, 0, 8]}
    assert set(out.beams) == set(COMPONENTS)
    for c, v in expect.items():
        np.testing.assert_array_equal(out.beams[c], v, err_msg=c)
    # totals: UE0 4+1+3 = 8, UE1 4+2 = 6, UE2 4+1+2 = 7, UE3 4+8 = 12
    np.testing.assert_array_equal(out.total_beams, [8, 6, 7, 12])
    np.testing.assert_array_equal(out.fallback_conf, [False, True, False, False])
    np.testing.assert_array_equal(out.fallback_drop, [False, False, True, False])
    np.testing.assert_array_equal(out.label, [-1, 7, 3, 4])  # labels come from sweeps only (HS and full)
    # SE of the served beam: UE0 -65 dBm over -100 dBm noise = 35 dB -> log2(1 + 10^3.5)
    assert out.se[0] == pytest.approx(math.log2(1 + 10 ** 3.5))
    # genie of UE1: beam 0 at -60 dBm = 40 dB -> log2(1 + 10^4)
    assert out.se_genie[1] == pytest.approx(math.log2(1 + 10 ** 4.0))


def test_stale_ue_serves_exactly_its_previous_beam():
    a = np.full((2, 8), -90.0)
    a[:, 6] = -50.0  # refinement would find beam 6 for both
    b = np.full((2, 4), -90.0)
    st = state([5, 2], [-88.0, -88.0])
    top = np.array([[6, 1], [6, 1]])
    conf = np.array([0.05, 0.9])  # UE0's low confidence arrives late: it cannot be acted on
    lat = np.array([3.0, 0.5])  # UE0 misses the 1 ms deadline
    out = beam_cycle(st, b, a, np.full(2, NOISE), CHILDREN, top, conf, lat, np.zeros(2, bool), POLICY, exact)
    assert out.served[0] == 5 and st.serving[0] == 5  # the exact previous beam, not the better beam 6
    assert st.serving_dbm[0] == -88.0  # and its reference level for the drop rule is kept
    assert out.served[1] == 6
    np.testing.assert_array_equal(out.stale, [True, False])
    np.testing.assert_array_equal(out.late, [True, False])
    assert not out.fallback.any()
    # the stale UE pays Set B and the serving-beam re-measurement, no refinement: 4 + 1 = 5; UE1 4 + 1 + 2 = 7
    np.testing.assert_array_equal(out.total_beams, [5, 7])
    # SE: UE0 serves beam 5 at -90 dBm = 10 dB -> log2(11); UE1 beam 6 at -50 dBm = 50 dB -> log2(1 + 1e5)
    np.testing.assert_allclose(out.se, [math.log2(11), math.log2(1 + 1e5)])


def test_late_decision_without_a_previous_beam_is_used():
    a = np.full((1, 8), -90.0)
    a[0, 3] = -60.0
    st = state([-1], [-np.inf])
    out = beam_cycle(st, np.full((1, 4), -90.0), a, np.full(1, NOISE), CHILDREN, np.array([[3, 0]]), np.array([0.9]),
                     np.array([5.0]), np.zeros(1, bool), POLICY, exact)
    assert out.late[0] and not out.stale[0] and out.served[0] == 3


@pytest.mark.parametrize(
    "conf,now_dbm,late,expect_conf,expect_drop",
    [
        (0.19, -70.0, False, True, False),  # rule 1: 0.19 < 0.2
        (0.20, -70.0, False, False, False),  # 0.2 is not below 0.2
        (0.90, -76.0, False, False, False),  # rule 2: -76 < -70 - 6 = -76 is false (exactly 6 dB)
        (0.90, -76.5, False, False, True),  # -76.5 < -76: a 6.5 dB drop
        (0.05, -70.0, True, False, False),  # late: the low confidence arrives too late, the UE keeps its beam (stale)
        (0.05, -80.0, True, False, True),  # late but the serving beam dropped 10 dB: HS fallback (needs no model)
        (0.05, -80.0, False, False, True),  # both rules: counted once, as the drop (checked first)
    ],
)
def test_fallback_rules(conf, now_dbm, late, expect_conf, expect_drop):
    a = np.full((1, 8), -90.0)
    a[0, 1] = now_dbm  # serving beam 1, chosen at -70 dBm
    a[0, 4] = -65.0
    b = np.full((1, 4), -95.0)
    b[0, 2] = -80.0  # HS: wide 2 -> children 4, 5
    st = state([1], [-70.0])
    out = beam_cycle(st, b, a, np.full(1, NOISE), CHILDREN, np.array([[0, 1]]), np.array([conf]), np.array([5.0 if late else 0.1]),
                     np.zeros(1, bool), POLICY, exact)
    assert bool(out.fallback_conf[0]) is expect_conf and bool(out.fallback_drop[0]) is expect_drop
    if expect_conf or expect_drop:
        assert out.served[0] == 4 and out.beams["fallback"][0] == 2 and out.label[0] == 4  # HS picks beam 4 (-65 dBm)
    elif late:
        assert out.served[0] == 1 and out.stale[0]


# -- scripted multi-cycle runs through emulate_traces -----------------------------------------------------------------
def _scripted(steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """An infer() that replays (top, conf, latency) per cycle."""
    it = iter(steps)
    return lambda xb: next(it)


def test_two_ue_scripted_run_se_drop_and_effective_se():
    # Set A = 4 beams, Set B = 2 wide beams over children [0, 1] and [2, 3]; 2 cycles of 20 ms; noise -100 dBm
    snr = [15.0, 7.0, 3.0, 1.0]  # SE = log2(1 + snr) = 4, 3, 2, 1 b/s/Hz
    a0 = [dbm(s) for s in snr]  # UE0: beam 0 best (SE 4)
    a1 = [dbm(s) for s in reversed(snr)]  # UE1: beam 3 best (SE 4)
    rsrp_a = np.array([[a0, a1], [a0, a1]])
    rsrp_b = np.array([[[-80.0, -90.0], [-95.0, -85.0]]] * 2)  # UE0 wide 0 -> HS {0, 1}; UE1 wide 1 -> HS {2, 3}
    phase = Phase(0, rsrp_b, rsrp_a, np.full((2, 2), NOISE), np.array([[0, 1], [2, 3]]))
    infer = _scripted([
        (np.array([[1, 2], [3, 0]]), np.array([0.9, 0.9]), np.array([0.1, 0.1])),  # cycle 0: both refine
        (np.array([[1, 2], [0, 1]]), np.array([0.9, 0.1]), np.array([0.1, 5.0])),  # cycle 1: UE1 late -> stale
    ])
    cfg = EmulatorConfig(n_ues=2, duration_s=0.04, full_sweep_every=0, idle_sweep_every=0, adapt=False)
    res = emulate_traces([phase], infer, cfg, cycle_ms=20.0, deadline_ms=1.0, measure=exact)
    # UE0 refines {1, 2} -> beam 1 (SE 3) both cycles; UE1 refines {3, 0} -> beam 3 (SE 4), then keeps beam 3 (stale)
    np.testing.assert_array_equal(res.served, [[1, 3], [1, 3]])
    np.testing.assert_allclose(res.se["edgebm"], [[3, 4], [3, 4]])
    np.testing.assert_array_equal(res.stale, [[False, False], [False, True]])
    # beams: cycle 0 both 2 + 2 = 4; cycle 1 UE0 2 + 1 (serving) + 2 = 5, UE1 2 + 1 = 3
    np.testing.assert_array_equal(res.beams["edgebm"], [[4, 4], [5, 3]])
    k = compute_kpis(res)
    e, hs, ex = k["methods"]["edgebm"], k["methods"]["hierarchical"], k["methods"]["exhaustive"]
    # SE drop per UE-cycle: UE0 1 - 3/4 = 0.25 twice, UE1 0 twice -> mean 0.125, p90 of [0, 0, .25, .25] = 0.25
    assert e["se_mean"] == pytest.approx(3.5)
    assert e["se_drop_mean"] == pytest.approx(0.125)
    assert e["se_drop_p90"] == pytest.approx(0.25)
    # overhead per beam 5/64 ms in a 20 ms cycle: factor 1 - n * 5/64/20 = 1 - n/256
    # eff. SE = (3 (1 - 4/256) + 4 (1 - 4/256) + 3 (1 - 5/256) + 4 (1 - 3/256)) / 4 = 3.4462890625
    assert e["effective_se_mean"] == pytest.approx(3.4462890625)
    assert e["beams_per_cycle"] == pytest.approx(4.0)  # (4 + 4 + 5 + 3) / 4
    # by component: set_b 2; serving (0 + 0 + 1 + 1) / 4 = 0.5; refine (2 + 2 + 2 + 0) / 4 = 1.5
    assert e["beams_by_component"] == pytest.approx({"set_b": 2.0, "serving": 0.5, "refine": 1.5, "fallback": 0.0, "full_sweep": 0.0})
    # HS finds the best beam for both (SE 4, drop 0) with 2 + 2 = 4 beams: 4 (1 - 4/256) = 3.9375; exhaustive: 4 beams too
    assert hs["se_drop_mean"] == 0.0 and hs["effective_se_mean"] == pytest.approx(3.9375) and hs["beams_per_cycle"] == 4.0
    assert hs["beams_by_component"] == {"set_b": 2.0, "children": 2.0}
    assert ex["se_drop_mean"] == 0.0 and ex["effective_se_mean"] == pytest.approx(3.9375)
    assert k["timing"]["stale_decisions"] == 1 and k["timing"]["deadline_misses"] == 1
    # the metric the KPIs use is the library's
    assert e["effective_se_mean"] == pytest.approx(float(M.effective_se(res.se["edgebm"], res.beams["edgebm"], 20.0).mean()))


class RecordingAdapter:
    """Stands in for HeadAdapter: records what it is handed, trains nothing."""

    n_classes = 4

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def update(self, x, y) -> UpdateStats:
        self.calls.append(np.asarray(y))
        return UpdateStats(len(y), len(y), 0, 0, 1, 0.1, 0.25, 5.0, False, True, 1.0, 0.9, 0.1, "steps")


def _phase(start: int, n: int, best: int) -> Phase:
    """n cycles, 2 UEs, the true best Set A beam is ``best`` (10 dB above the rest); Set B points at its parent."""
    a = np.full((n, 2, 4), -90.0)
    a[..., best] = -80.0
    b = np.full((n, 2, 2), -90.0)
    b[..., best // 2] = -80.0
    return Phase(start, b, a, np.full((n, 2), NOISE), np.array([[0, 1], [2, 3]]), name=f"best{best}")


def _low_conf(n_ues: int = 2):
    return lambda xb: (np.tile([0, 1], (n_ues, 1)), np.full(n_ues, 0.05), np.full(n_ues, 0.1))  # always falls back: a label per UE


def test_labels_counted_per_shift_window_and_capped():
    # cycles 0-19 before the shift (HS fallbacks give labels every cycle: none may be used), 20-39 after it
    cfg = EmulatorConfig(n_ues=2, duration_s=0.8, full_sweep_every=1, idle_sweep_every=0, update_every=5, max_labels=5)
    ad = RecordingAdapter()
    res = emulate_traces([_phase(0, 20, 1), _phase(20, 20, 2)], _low_conf(), cfg, cycle_ms=20.0, deadline_ms=1.0, adapter=ad, measure=exact)
    # 2 labels per cycle from cycle 20: 2 + 2 + 1 (capped at 5); the first update after the shift is at the end of cycle 24
    assert len(ad.calls) == 1 and len(ad.calls[0]) == 5
    np.testing.assert_array_equal(ad.calls[0], [2, 2, 2, 2, 2])  # all post-shift labels (the pre-shift best beam was 1)
    assert res.labels == [{"phase": 0, "gathered": 0, "used": 0}, {"phase": 1, "gathered": 5, "used": 5}]
    assert res.adaptation_from_s == pytest.approx(0.4)
    # before the shift no sweeps were scheduled (no adaptation yet, idle sweeps off); after it every cycle sweeps
    # until 5 labels are in (cycles 20-22), then none
    assert not res.full_sweep[:20].any() and res.full_sweep[20:22].all() and res.full_sweep[22, 0] and not res.full_sweep[23:].any()
    res.shifts = [{"kind": "test", "value": "best2", "at_s": 0.4, "cycle": 20}]
    k = compute_kpis(res, window=5)
    assert k["shifts"][0]["labels_used"] == 5 and k["shifts"][0]["labels_gathered"] == 5
    assert k["adaptation"]["starts_at_s"] == pytest.approx(0.4)


def test_pending_labels_of_an_old_window_are_dropped():
    # two shifts (cycles 5 and 10); update_every = 12: the only update is at the end of cycle 11, when phase 1's
    # labels (cycles 5-9) would still be pending had they not been dropped at the second shift
    cfg = EmulatorConfig(n_ues=2, duration_s=0.4, full_sweep_every=0, idle_sweep_every=0, update_every=12, max_labels=50)
    ad = RecordingAdapter()
    res = emulate_traces([_phase(0, 5, 0), _phase(5, 5, 1), _phase(10, 10, 3)], _low_conf(), cfg, cycle_ms=20.0, deadline_ms=1.0,
                         adapter=ad, measure=exact)
    # the update holds phase 2's labels of cycles 10-11 x 2 UEs = 4, all beam 3 (none of phase 1's beam 1)
    assert len(ad.calls) == 1
    np.testing.assert_array_equal(ad.calls[0], [3] * 4)
    assert ad.resets == 2  # buffers cleared at each shift
    # gathered: phase 1 cycles 5-9 x 2 = 10 (dropped unused), phase 2 cycles 10-19 x 2 = 20 (4 used by the update)
    assert [r["gathered"] for r in res.labels] == [0, 10, 20] and [r["used"] for r in res.labels] == [0, 0, 4]


def test_no_shift_means_no_adaptation():
    cfg = EmulatorConfig(n_ues=2, duration_s=0.2, full_sweep_every=1, idle_sweep_every=0, update_every=1)
    ad = RecordingAdapter()
    res = emulate_traces([_phase(0, 10, 1)], _low_conf(), cfg, cycle_ms=20.0, deadline_ms=1.0, adapter=ad, measure=exact)
    assert ad.calls == [] and res.updates == [] and res.adaptation_from_s is None and not res.full_sweep.any()
