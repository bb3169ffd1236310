import numpy as np
import pytest

from edgebm import baselines as B


def test_measure_beams_unbiased_at_high_snr_and_noisy_at_low():
    rng = np.random.default_rng(0)
    p = np.full((4000, 1), -80.0)
    hi = B.measure_beams(p, np.full(4000, -120.0), rng, n_avg=24)  # 40 dB SNR
    assert abs(np.mean(hi) + 80.0) < 0.05
    lo = B.measure_beams(p, np.full(4000, -80.0), rng, n_avg=24)  # 0 dB: mean power P + sigma^2 -> +3 dB
    assert np.mean(10 ** (lo / 10)) == pytest.approx(2 * 10 ** (-8.0), rel=0.03)
    assert np.std(lo) > np.std(hi) * 5


def test_exhaustive_overhead_and_noise_free_limit(toy_dataset):
    rng = np.random.default_rng(0)
    sel = B.exhaustive_search(toy_dataset.rsrp_a, np.full(len(toy_dataset), -250.0), rng)
    assert np.all(sel.beams_measured == 64)
    np.testing.assert_array_equal(sel.chosen, toy_dataset.best_a)


def test_hierarchical_search_picks_under_best_wide(toy_dataset):
    rng = np.random.default_rng(0)
    ch = toy_dataset.codebooks["cb_children"]
    sel = B.hierarchical_search(toy_dataset.rsrp_b, toy_dataset.rsrp_a, ch, np.full(len(toy_dataset), -250.0), rng)
    assert np.all(sel.beams_measured == 16 + 4)
    wide = toy_dataset.rsrp_b.argmax(1)
    assert np.all(np.any(ch[wide] == sel.chosen[:, None], axis=1))
    assert np.mean(sel.chosen == toy_dataset.best_a) > 0.6


def test_topk_refinement_known():
    rsrp_a = np.array([[-80.0, -70.0, -90.0, -60.0]])
    scores = np.array([[0.4, 0.3, 0.2, 0.1]])  # model ranks beam 3 last
    rng = np.random.default_rng(0)
    noise = np.array([-300.0])
    assert B.topk_refinement(scores, rsrp_a, noise, rng, k=2, n_set_b=16).chosen[0] == 1
    sel = B.topk_refinement(scores, rsrp_a, noise, rng, k=4, n_set_b=16)
    assert sel.chosen[0] == 3 and sel.beams_measured[0] == 20


def test_nearest_position():
    train_pos = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    train_best = np.array([1, 2, 3])
    s = B.nearest_position(train_pos, train_best, np.array([[9.0, 1, 0]]), n_out=4, k=1)
    assert s.argmax() == 2


def test_selection_metrics_genie_is_perfect(toy_dataset):
    sel = B.genie(toy_dataset.rsrp_a)
    m = B.selection_metrics(sel, toy_dataset.rsrp_a, toy_dataset.noise_dbm)
    assert m["top1"] == 1.0 and m["se_drop_mean"] == 0.0
    assert m["effective_se_mean"] == pytest.approx(m["genie_se_mean"], abs=1e-5)
