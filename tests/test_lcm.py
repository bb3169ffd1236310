"""Life-cycle decisions on hand-made label streams: keep, adapt, switch, deactivate, reactivate, and the
configuration (functionality) path."""

from __future__ import annotations

import numpy as np
import pytest

from edgebm.errors import ConfigError
from edgebm.runtime.lcm import LcmConfig, LifeCycleManager, RegisteredBundle
from edgebm.runtime.monitor import MonitorConfig

A, B = 8, 4  # Set A / Set B beams of the hand-made labels


def labels(n: int, seed: int):
    """n labels: Set B input encodes the true best Set A beam (x_b[0] = -100 + beam), Set A measured
    RSRP with that beam 10 dB above every other."""
    rng = np.random.default_rng(seed)
    best = rng.integers(0, A, n)
    x = np.full((n, B), -100.0, np.float32)
    x[:, 0] += best
    meas = np.full((n, A), -90.0, np.float32)
    meas[np.arange(n), best] = -80.0
    return x, meas, best


def oracle(x: np.ndarray) -> np.ndarray:
    """A model that reads the best beam off the input: top-3 = best, best+1, best+2."""
    b = np.rint(np.atleast_2d(x)[:, 0] + 100).astype(int)
    return np.stack([b, (b + 1) % A, (b + 2) % A], 1)


def wrong(x: np.ndarray) -> np.ndarray:
    b = np.rint(np.atleast_2d(x)[:, 0] + 100).astype(int)
    return np.stack([(b + 3) % A, (b + 4) % A, (b + 5) % A], 1)


def feed(lcm: LifeCycleManager, n: int, seed: int, model_miss: float, legacy_miss: float = 0.0, t0: float = 0.0, per_cycle: int = 4):
    """Feed n labels, per_cycle per call; the active model misses with prob model_miss (top-1 and top-K),
    the legacy beam with prob legacy_miss. Returns every event."""
    x, meas, best = labels(n, seed)
    rng = np.random.default_rng(seed + 1)
    top = oracle(x)
    bad = rng.random(n) < model_miss
    top[bad] = wrong(x[bad])
    leg = np.where(rng.random(n) < legacy_miss, (best + 4) % A, best)
    out = []
    for i in range(0, n, per_cycle):
        out += lcm.on_labels(t0 + i / per_cycle * 0.02, x[i:i + per_cycle], meas[i:i + per_cycle], top[i:i + per_cycle], leg[i:i + per_cycle])
    return out


def fn(ue=(1, 1), cb="a" * 64, agnostic=False):
    return {"schema": "edgebm.functionality/1", "set_b": B, "set_a": A, "codebook_b": "b" * 64, "codebook_a": cb,
            "bs_array": [8, 8], "ue_array": [list(ue)], "carrier_hz": [28e9], "snr_db": [20.0, 20.0],
            "scenario": {"kind": "named", "city": "city0"}, "codebook_agnostic": agnostic, "id": "fn-x"}


def cfg_of(ue=(1, 1), cb="a" * 64):
    return {"set_b": B, "set_a": A, "codebook_b": "b" * 64, "codebook_a": cb, "bs_array": [8, 8], "ue_array": list(ue), "carrier_hz": 28e9}


MON = MonitorConfig(n_ref=64, arl0=2000, window=64)


def test_in_control_keeps_quiet():
    lcm = LifeCycleManager([RegisteredBundle("m", fn(), oracle, can_adapt=True)], LcmConfig(monitor=MON))
    assert lcm.on_configuration(0.0, cfg_of()) == []
    assert feed(lcm, 1200, seed=1, model_miss=0.05) == []
    assert lcm.monitor.p0 is not None and lcm.serving_model


def test_degradation_adapt_then_keep():
    lcm = LifeCycleManager([RegisteredBundle("m", fn(), oracle, can_adapt=True)], LcmConfig(monitor=MON, adapt_labels=80))
    feed(lcm, 200, seed=2, model_miss=0.05)
    ev = []
    for i in range(100):  # degraded, but legacy is no better: until the alarm
        ev = feed(lcm, 4, seed=300 + i, model_miss=0.4, legacy_miss=0.4, t0=1.0 + i * 0.02)
        if ev:
            break
    assert [e.action for e in ev] == ["adapt"] and ev[0].trigger == "monitor" and lcm.wants_labels
    assert ev[0].metric == "top1_within_1dB_miss" and ev[0].value > 0.05 and ev[0].bundle == "m"
    ev = feed(lcm, 200, seed=4, model_miss=0.05, t0=3.0)  # the update worked
    assert [e.action for e in ev] == ["keep"] and ev[0].trigger == "adaptation" and not lcm.wants_labels and lcm.serving_model


def test_degradation_worse_than_legacy_deactivates_then_reactivates():
    lcm = LifeCycleManager([RegisteredBundle("m", fn(), oracle, can_adapt=False)], LcmConfig(monitor=MON))
    feed(lcm, 200, seed=14, model_miss=0.05)
    ev = feed(lcm, 200, seed=5, model_miss=0.6, legacy_miss=0.0, t0=1.0)
    assert ev and ev[0].action == "deactivate" and "legacy" in ev[0].reason and not lcm.serving_model
    ev = feed(lcm, 600, seed=6, model_miss=0.02, t0=2.0)  # the model (in shadow) is good again
    assert [e.action for e in ev] == ["reactivate"] and lcm.serving_model


def test_switch_to_a_bundle_that_monitors_better():
    # on an alarm both bundles run on the buffered labels: "bad" (active) always misses, "good" never does
    lcm = LifeCycleManager([RegisteredBundle("bad", fn(), wrong), RegisteredBundle("good", fn(), oracle)], LcmConfig(monitor=MON))
    feed(lcm, 200, seed=7, model_miss=0.05)
    ev = feed(lcm, 200, seed=8, model_miss=0.7, legacy_miss=0.7, t0=1.0)
    assert ev and ev[0].action == "switch" and lcm.bundle.name == "good" and "McNemar" in ev[0].reason


def test_configuration_change_switches_or_deactivates_or_keeps():
    b1 = RegisteredBundle("ue1x1", fn(ue=(1, 1)), oracle, can_adapt=True)
    b2 = RegisteredBundle("ue8x8", fn(ue=(8, 8)), oracle)
    lcm = LifeCycleManager([b1, b2], LcmConfig(monitor=MON))
    lcm.on_configuration(0.0, cfg_of())
    ev = lcm.on_configuration(1.0, cfg_of(ue=(8, 8)))
    assert [e.action for e in ev] == ["switch"] and ev[0].trigger == "configuration" and lcm.bundle.name == "ue8x8"
    ev = lcm.on_configuration(2.0, cfg_of(ue=(8, 8), cb="c" * 64))  # nobody covers the new codebook
    assert [e.action for e in ev] == ["deactivate"] and ev[0].metric == "functionality" and "codebook_a" in ev[0].value
    agn = LifeCycleManager([RegisteredBundle("agn", fn(agnostic=True), oracle)], LcmConfig(monitor=MON))
    agn.on_configuration(0.0, cfg_of())
    ev = agn.on_configuration(1.0, cfg_of(cb="c" * 64))
    assert [e.action for e in ev] == ["keep"] and "codebook-agnostic" in ev[0].value and agn.serving_model


def test_inapplicable_but_adaptable_adapts_in_shadow_and_comes_back():
    lcm = LifeCycleManager([RegisteredBundle("m", fn(), oracle, can_adapt=True)], LcmConfig(monitor=MON, adapt_labels=50))
    lcm.on_configuration(0.0, cfg_of())
    feed(lcm, 200, seed=9, model_miss=0.05)
    ev = lcm.on_configuration(1.0, cfg_of(cb="c" * 64))
    assert [e.action for e in ev] == ["deactivate", "adapt"] and lcm.wants_labels and not lcm.serving_model
    ev = feed(lcm, 800, seed=10, model_miss=0.03, t0=1.0)  # the shadow-adapted head is good on the new codebook
    assert "reactivate" in [e.action for e in ev] and lcm.serving_model


def test_validation():
    with pytest.raises(ConfigError, match="duplicate"):
        LifeCycleManager([RegisteredBundle("m", None), RegisteredBundle("m", None)])
    with pytest.raises(ConfigError, match="lcm.adapt_labels"):
        LcmConfig(adapt_labels=0)


def test_adaptation_that_does_not_hold_deactivates():
    lcm = LifeCycleManager([RegisteredBundle("m", fn(), oracle, can_adapt=True)], LcmConfig(monitor=MON, adapt_labels=400, shadow_adapt=False))
    feed(lcm, 200, seed=2, model_miss=0.05)
    ev = feed(lcm, 400, seed=3, model_miss=0.4, legacy_miss=0.4, t0=1.0)  # stays degraded while adapting
    assert [e.action for e in ev] == ["adapt", "deactivate"] and "adaptation did not hold" in ev[1].reason
