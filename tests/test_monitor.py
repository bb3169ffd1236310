"""The torch-free model monitor: CUSUM maths (hand-computed cases), the stated false-alarm rate checked
empirically on simulated Bernoulli streams (fixed seeds), Phase-I calibration, windows and metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgebm.errors import ConfigError
from edgebm.runtime.monitor import (
    BernoulliCusum,
    ModelMonitor,
    MonitorConfig,
    WindowRate,
    binomial_upper_bound,
    cusum_arl,
    cusum_run_length_cdf,
    design_cusum,
    margin_hits,
    mcnemar_p_value,
)


def run_lengths(design, p: float, n_streams: int, seed: int, cap: int) -> np.ndarray:
    """Labels to the first alarm of the real BernoulliCusum on n_streams i.i.d. Bernoulli(p) miss streams
    (censored at cap)."""
    rng = np.random.default_rng(seed)
    out = np.full(n_streams, cap)
    for i in range(n_streams):
        cs = BernoulliCusum(design)
        misses = rng.random(cap) < p
        for n, miss in enumerate(misses.tolist()):
            if cs.update(miss):
                out[i] = n + 1
                break
    return out


def test_arl_hand_computed_two_state_chain():
    # up=+1, down=-1, H=2: states {0, 1}.  L0 = 1 + p L1 + (1-p) L0,  L1 = 1 + (1-p) L0  (a miss from 1 alarms)
    # => p L0 = 1 + p L1 = 1 + p + p(1-p) L0  => p^2 L0 = 1 + p  => L0 = (1+p)/p^2; at p = 0.5: 6, at p = 0.2: 30
    assert cusum_arl(0.5, 1, -1, 2) == pytest.approx(6.0)
    assert cusum_arl(0.2, 1, -1, 2) == pytest.approx(30.0)
    # P(alarm within 2 labels) = P(miss, miss) = p^2 ; within 3 = p^2 + P(hit, miss, miss) = p^2 + (1-p) p^2
    cdf = cusum_run_length_cdf(0.5, 1, -1, 2, 3)
    assert cdf[0] == 0.0 and cdf[1] == pytest.approx(0.25) and cdf[2] == pytest.approx(0.375)


def test_design_meets_target_with_the_smallest_threshold():
    d = design_cusum(0.05, 0.15, arl0=2000)
    assert d.up > 0 > d.down and math.gcd(d.up, d.down) == 1
    assert d.arl0 >= 2000 and d.arl0 == pytest.approx(cusum_arl(0.05, d.up, d.down, d.threshold))
    assert cusum_arl(0.05, d.up, d.down, d.threshold - 1) < 2000  # one step lower misses the target
    assert d.arl1 < d.arl0 / 20  # it detects the alternative far sooner than it false-alarms
    # the integer steps approximate the log-likelihood ratio: a = ln(p1/p0), b = ln((1-p0)/(1-p1))
    a, b = math.log(0.15 / 0.05), math.log(0.95 / 0.85)
    assert d.up * d.unit == pytest.approx(a, rel=0.07) and -d.down * d.unit == pytest.approx(b, rel=0.07)
    # Lorden: for the exact LLR CUSUM ARL0 >= e^h, so the designed h (in nats) is at most ln(ARL0) (+ rounding)
    assert d.threshold * d.unit <= math.log(d.arl0) * 1.1


def test_false_alarm_rate_matches_the_design_empirically():
    """In control (p0 = 0.1), 1500 simulated streams: the mean run length matches the exact ARL0 and the
    fraction alarmed within 60 labels matches the chain's probability, both within 4 standard errors."""
    d = design_cusum(0.1, 0.25, arl0=300)
    rl = run_lengths(d, 0.1, 1500, seed=1234, cap=6000)
    assert (rl < 6000).mean() > 0.999  # essentially uncensored
    se = rl.std(ddof=1) / math.sqrt(len(rl))
    assert abs(rl.mean() - d.arl0) < 4 * se, (rl.mean(), d.arl0, se)
    p60 = d.false_alarm_probability(60)
    emp = float((rl <= 60).mean())
    assert abs(emp - p60) < 4 * math.sqrt(p60 * (1 - p60) / len(rl)) + 1e-3, (emp, p60)


def test_detection_delay_matches_arl1_empirically():
    d = design_cusum(0.1, 0.25, arl0=300)
    rl = run_lengths(d, 0.25, 1500, seed=99, cap=3000)
    se = rl.std(ddof=1) / math.sqrt(len(rl))
    assert abs(rl.mean() - d.arl1) < 4 * se, (rl.mean(), d.arl1)


def test_recovery_test_is_the_mirror_image():
    fwd, rev = design_cusum(0.1, 0.25, 500), design_cusum(0.25, 0.1, 500)
    assert rev.up < 0 < rev.down  # a hit raises the recovery statistic
    assert rev.arl(0.25) >= 500 and rev.arl(0.1) < rev.arl(0.25) / 10


def test_binomial_upper_bound():
    # k = 0 has the closed form 1 - (1 - conf)^(1/n)
    assert binomial_upper_bound(0, 50, 0.9) == pytest.approx(1 - 0.1 ** (1 / 50), rel=1e-6)
    u = binomial_upper_bound(7, 64, 0.95)
    tail = sum(math.comb(64, i) * u**i * (1 - u) ** (64 - i) for i in range(8))
    assert tail == pytest.approx(0.05, abs=1e-6) and u > 7 / 64
    assert binomial_upper_bound(5, 5) == 1.0 and binomial_upper_bound(0, 0) == 1.0


def test_mcnemar_exact():
    # P(Binomial(9, 1/2) >= 8) = (C(9,8) + C(9,9)) / 2^9 = 10/512
    assert mcnemar_p_value(8, 1) == pytest.approx(10 / 512)
    assert mcnemar_p_value(0, 0) == 1.0 and mcnemar_p_value(0, 5) == 1.0


def test_margin_hits():
    top = np.array([[-80.0, -79.5, -90.0], [-85.0, -79.0, -95.0], [-70.0, -71.0, -72.0]])
    best = np.array([-79.2, -79.0, -70.0])
    h1, hk = margin_hits(top, best, 1.0)
    assert h1.tolist() == [True, False, True]  # -80 >= -80.2 ; -85 < -80 ; -70 >= -71
    assert hk.tolist() == [True, True, True]
    h1, hk = margin_hits(top, best, 0.0)
    assert h1.tolist() == [False, False, True] and hk.tolist() == [False, True, True]


def test_window_rate_ring_buffer():
    w = WindowRate(3)
    assert w.rate is None
    for v in (True, False, False, True):
        w.push(v)
    assert w.values().tolist() == [False, False, True] and w.rate == pytest.approx(1 / 3)


def test_phase_one_calibration_then_detection():
    cfg = MonitorConfig(n_ref=100, arl0=1000, ref_confidence=0.9, window=50)
    mon = ModelMonitor(cfg)
    rng = np.random.default_rng(7)
    ref = rng.random(100) < 0.08  # misses
    for miss in ref:
        assert mon.observe(not miss, True) is None
    assert mon.p0 == pytest.approx(binomial_upper_bound(int(ref.sum()), 100, 0.9))
    assert mon.design is not None and mon.design.arl0 >= 1000
    alarms = mon.observe_many(rng.random(2000) >= 0.6, np.ones(2000, bool))  # miss rate 0.6 after the change
    assert alarms and alarms[0].kind == "degraded" and alarms[0].label < 100 + 60
    assert alarms[0].metric == "top1_within_1dB_miss" and alarms[0].value > ref[-50:].mean()  # window of 50 spans the change


def test_recovery_watch_needs_a_reference():
    mon = ModelMonitor(MonitorConfig(n_ref=10), watch="recovery")
    assert all(mon.observe(True, True) is None for _ in range(50)) and mon.p0 is None
    mon = ModelMonitor(MonitorConfig(p0=0.1, arl0=500), watch="recovery")
    rng = np.random.default_rng(3)
    assert not mon.observe_many(rng.random(300) >= 0.5, np.ones(300, bool))  # still bad: no false reactivation here
    al = mon.observe_many(rng.random(400) >= 0.05, np.ones(400, bool))
    assert al and al[0].kind == "recovered"


def test_worse_than_legacy():
    mon = ModelMonitor(MonitorConfig(p0=0.1, window=100))
    for i in range(100):
        mon.observe(True, i % 3 != 0, True)  # model top-K misses a third; legacy never misses
    worse, p = mon.worse_than_legacy(0.05)
    assert worse and p < 1e-6


@pytest.mark.parametrize("kw", [{"metric": "top2"}, {"arl0": 0.5}, {"odds_ratio": 1.0}, {"p0": 1.5}, {"window": 0},
                                {"ref_confidence": 1.0}, {"margin_db": float("nan")}])
def test_config_validation_names_the_field(kw):
    with pytest.raises(ConfigError) as e:
        MonitorConfig(**kw)
    assert e.value.field.startswith("monitor.")


def test_design_rejects_equal_rates():
    with pytest.raises(ConfigError, match="p1"):
        design_cusum(0.1, 0.1)
