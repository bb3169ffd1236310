"""HeadAdapter: time bound (with a deterministic clock), any batch size, argument checks, the held-out guard."""

from __future__ import annotations

import numpy as np
import pytest

import edgebm.runtime.adapt as adapt_mod
from edgebm.errors import ConfigError
from edgebm.runtime import HeadAdapter, InputError, Predictor


class FakeClock:
    """Seconds that only advance when the test says work happened."""

    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s

    def spend(self, ms: float) -> None:
        self.s += ms / 1e3


@pytest.fixture
def timed(toy_bundle, monkeypatch):
    """A predictor whose features pass costs 0.5 ms + per_row ms per row and whose every loss/gradient evaluation
    costs grad_ms, on a fake clock; everything else is free."""
    clock = FakeClock()
    cost = {"per_row": 0.01, "grad": 1.0}
    pred = Predictor(toy_bundle.bundle_dir)
    real_features = pred.features

    def features(x):
        out = real_features(x)
        clock.spend(0.5 + cost["per_row"] * len(np.atleast_2d(x)))
        return out

    real_grad = adapt_mod.softmax_ce_grad

    def grad(*a, **k):
        clock.spend(cost["grad"])
        return real_grad(*a, **k)

    pred.features = features
    monkeypatch.setattr(adapt_mod, "softmax_ce_grad", grad)
    return pred, clock, cost


def test_never_starts_a_step_that_would_overrun(timed, toy_dataset):
    pred, clock, _ = timed
    ad = HeadAdapter(pred, steps=50, seed=0, max_update_ms=10.0, slowdown=2.0, clock=clock, min_holdout=1)
    # calibration: features 1 row = 0.51 ms, 64 rows = 1.14 ms -> 0.01 ms/row; one step = 1 gradient = 1 ms; loss 1 ms; copy 0
    est = ad.cost_estimates_ms()
    assert est["features_fixed"] == pytest.approx(0.51) and est["features_per_row"] == pytest.approx(0.01)
    assert est["step"] == pytest.approx(1.0) and est["loss"] == pytest.approx(1.0) and est["copy"] == 0.0
    st = ad.update(toy_dataset.rsrp_b[:10], toy_dataset.best_a[:10])
    # host budget 10 / 2 = 5 ms. features of 10 rows: 0.5 + 0.1 = 0.6 ms (room: 5 - 3 reserved - 0.51 fixed -> all 10 fit);
    # held out ceil(0.2 x 10) = 2, trained 8. loss before: 1 ms -> 1.6. step 1: 1.6 + 1 (step) + 1 (closing loss) = 3.6 <= 5
    # -> 2.6; step 2: 4.6 <= 5 -> 3.6; step 3: 3.6 + 2 = 5.6 > 5: not started. loss after: 1 ms -> 4.6 ms host, 9.2 ms device.
    assert (st.n_new, st.n_trained, st.n_holdout, st.n_pending) == (10, 8, 2, 0)
    assert st.steps == 2 and st.stop == "budget"
    assert st.host_ms == pytest.approx(4.6) and st.device_ms == pytest.approx(9.2) and not st.overrun


def test_nothing_fits_leaves_labels_queued(timed, toy_dataset):
    pred, clock, _ = timed
    ad = HeadAdapter(pred, steps=50, seed=0, max_update_ms=4.0, slowdown=2.0, clock=clock, min_holdout=1)
    w0 = ad.w.copy()
    st = ad.update(toy_dataset.rsrp_b[:10], toy_dataset.best_a[:10])
    # host budget 2 ms < the 3 ms reserved for one step, two losses and the copy: no features pass, no step
    assert (st.steps, st.n_trained, st.n_pending, st.stop) == (0, 0, 10, "budget")
    assert st.host_ms == 0.0 and np.array_equal(ad.w, w0)


def test_an_overrun_is_reported_not_hidden(timed, toy_dataset):
    pred, clock, cost = timed
    ad = HeadAdapter(pred, steps=50, seed=0, max_update_ms=10.0, slowdown=2.0, clock=clock, min_holdout=1)
    cost["per_row"] = 0.5  # the device got 50x slower per row after calibration
    st = ad.update(toy_dataset.rsrp_b[:10], toy_dataset.best_a[:10])
    # features of 10 rows now take 0.5 + 5 = 5.5 ms > the 5 ms host budget: no step may start, and the overrun shows
    assert st.steps == 0 and st.host_ms == pytest.approx(5.5) and st.device_ms == pytest.approx(11.0) and st.overrun
    assert ad.timing()["overruns"] == 1 and ad.timing()["device_ms_max"] == pytest.approx(11.0)
    # the running mean learned the new per-row cost: measured (5.5 - 0.51 fixed) / 10 = 0.499; mean (0.01 + 0.499) / 2
    assert ad.cost_estimates_ms()["features_per_row"] == pytest.approx(0.2545)


def test_any_batch_size_works(toy_bundle, toy_dataset):
    pred = Predictor(toy_bundle.bundle_dir)
    ad = HeadAdapter(pred, replay=1024, seed=0, max_update_ms=1e9)
    x = np.concatenate([toy_dataset.rsrp_b] * 3)[:1500]
    y = np.concatenate([toy_dataset.best_a] * 3)[:1500]
    st = ad.update(x, y)  # 1500 labels into a 1024-sample replay buffer
    assert st.n_trained + st.n_holdout == 1500 and st.n_pending == 0 and st.steps >= 1
    assert ad.n_buffered == 1024 and st.n_holdout == 300  # ceil(0.2 x 1500)
    assert ad.update(x[:1], y[:1]).n_new == 1  # and a single sample
    assert ad.update(x[:0], y[:0]).n_new == 0  # and none


def test_no_step_before_enough_labels_are_held_back(toy_bundle, toy_dataset):
    ad = HeadAdapter(Predictor(toy_bundle.bundle_dir), seed=0, max_update_ms=1e9, min_holdout=8)
    w0 = ad.w.copy()
    # 4 labels at a time, 20 % held back: ceil(0.2 n) held after n labels -> 8 held once n = 36 (9 calls)
    stops = [ad.update(toy_dataset.rsrp_b[i : i + 4], toy_dataset.best_a[i : i + 4]).stop for i in range(0, 40, 4)]
    assert stops[:8] == ["holdout"] * 8 and stops[8] == "steps" and np.array_equal(w0, w0)
    assert ad.history[7].steps == 0 and ad.history[8].steps == 20


@pytest.mark.parametrize("kw,field", [
    ({"replay": 0}, "replay"), ({"replay": 2.5}, "replay"), ({"lr": float("nan")}, "lr"), ({"lr": float("inf")}, "lr"),
    ({"lr": -0.1}, "lr"), ({"lr": 0}, "lr"), ({"batch": 0}, "batch"), ({"steps": 0}, "steps"), ({"l2": -1.0}, "l2"),
    ({"holdout": 1.0}, "holdout"), ({"min_holdout": -1}, "min_holdout"), ({"max_update_ms": 0.0}, "max_update_ms"), ({"slowdown": float("nan")}, "slowdown"),
])
def test_constructor_rejects_bad_arguments(toy_bundle, kw, field):
    with pytest.raises(ConfigError, match=field) as e:
        HeadAdapter(Predictor(toy_bundle.bundle_dir), **kw)
    assert e.value.field == f"HeadAdapter {field}"


@pytest.mark.parametrize("labels,msg", [  # the predictor's one label check (Predictor.check_labels)
    (np.array([2**70]), "labels: must be numeric, got dtype object"),
    ([2**70], "must be numeric"),
    (np.array([1.5]), "whole numbers"),
    (np.array([True]), "must be numeric, got dtype bool"),
    (np.array([64]), r"out of range \[64, 64\]; labels are Set A beam indices: integers in \[0, 64\)"),
    (np.array([-1]), r"out of range \[-1, -1\]"),
    (np.array([1, 2]), "1 samples but 2 labels"),
])
def test_bad_labels_one_clear_error(toy_bundle, toy_dataset, labels, msg):
    ad = HeadAdapter(Predictor(toy_bundle.bundle_dir), max_update_ms=1e9)
    with pytest.raises(InputError, match=msg):
        ad.update(toy_dataset.rsrp_b[:1], labels)
    assert ad.n_pending == 0  # nothing was queued


def test_update_that_hurts_held_out_labels_is_rolled_back(toy_bundle, toy_dataset):
    pred = Predictor(toy_bundle.bundle_dir)
    x = toy_dataset.rsrp_b[:200]
    p_before = pred.predict_proba(x)
    # 64 relabelled samples, lr 0.5 and 200 steps: the head memorises the 51 trained labels and the 13 held back (mostly
    # beams it never saw relabelled) get worse -> rolled back, the predictor keeps the shipped head
    perm = np.random.default_rng(0).permutation(64)
    ad = HeadAdapter(pred, lr=0.5, steps=200, seed=0, max_update_ms=1e9)
    w0 = ad.w.copy()
    st = ad.update(toy_dataset.rsrp_b[:64], perm[toy_dataset.best_a[:64]])
    assert st.steps == 200 and not st.accepted and st.loss_after > st.loss_before
    assert np.array_equal(ad.w, w0)
    np.testing.assert_array_equal(pred.predict_proba(x), p_before)
    assert ad.timing()["rolled_back"] == 1
