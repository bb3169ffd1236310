import numpy as np
import pytest

from edgebm import metrics as M


def test_topk_known():
    scores = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    best = np.array([2, 0, 0])
    assert M.topk_accuracy(scores, best, 1) == pytest.approx(1 / 3)
    assert M.topk_accuracy(scores, best, 2) == pytest.approx(2 / 3)
    assert M.topk_accuracy(scores, best, 3) == 1.0
    np.testing.assert_array_equal(M.topk_indices(scores, 2), [[1, 2], [0, 1], [2, 1]])


def test_within_db_and_gap():
    rsrp = np.array([[-80.0, -80.5, -90.0], [-70.0, -75.0, -71.5]])
    chosen = np.array([1, 2])
    np.testing.assert_allclose(M.rsrp_gap_db(rsrp, chosen), [0.5, 1.5])
    assert M.within_db(rsrp, chosen, 1.0) == 0.5
    assert M.within_db(rsrp, chosen, 2.0) == 1.0


def test_se_drop_known():
    # best beam SNR 30 dB, chosen 20 dB, noise 0 dBm
    rsrp = np.array([[30.0, 20.0]])
    drop = M.se_drop(rsrp, np.array([1]), np.array([0.0]))
    expect = 1 - np.log2(1 + 100) / np.log2(1 + 1000)
    assert drop[0] == pytest.approx(expect)
    assert M.se_drop(rsrp, np.array([0]), np.array([0.0]))[0] == 0.0


def test_dba_known():
    best = np.array([10, 10])
    top = np.array([[10, 0, 0], [12, 11, 10]])
    # sample 0: cost 0 at every k; sample 1: costs 2/5, then min(2/5, 1/5), then 0
    y1 = 1 - np.mean([0.0, 0.4])
    y2 = 1 - np.mean([0.0, 0.2])
    y3 = 1 - np.mean([0.0, 0.0])
    assert M.dba_score(top, best) == pytest.approx((y1 + y2 + y3) / 3)


def test_effective_se():
    se = np.array([10.0, 10.0])
    out = M.effective_se(se, np.array([64, 0]), cycle_ms=20.0, beam_ms=5 / 64)
    np.testing.assert_allclose(out, [7.5, 10.0])


def test_summarize_perfect():
    rng = np.random.default_rng(0)
    rsrp = rng.normal(-90, 5, size=(50, 8))
    m = M.summarize(rsrp.copy(), rsrp, np.full(50, -120.0))
    assert m["top1"] == 1.0 and m["within_1db"] == 1.0 and m["se_drop_mean"] == 0.0 and m["dba_top3"] == 1.0


def test_dba_on_the_2d_beam_grid():
    from edgebm.sim.arrays import upa_steering

    # 2x2 DFT codebook on a 2x2 UPA, row-major: psi_v, psi_h in {-0.5, +0.5}; neighbours are 1 grid step apart
    pv, ph = np.meshgrid([-0.5, 0.5], [-0.5, 0.5], indexing="ij")
    xy = M.beam_grid_xy(upa_steering(pv.ravel(), ph.ravel(), (2, 2)), (2, 2))
    np.testing.assert_allclose(xy, [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]], atol=1e-6)
    # predicting beam 3 for true beam 0: one diagonal step, d = sqrt(2) on the grid (the index distance would say 3)
    # DBA (K = 1, delta = 5) = 1 - sqrt(2) / 5 = 0.717157; with index distance 1 - 3 / 5 = 0.4
    assert M.dba_score(np.array([[3]]), np.array([0]), xy) == pytest.approx(1 - np.sqrt(2) / 5, abs=1e-6)
    assert M.dba_score(np.array([[3]]), np.array([0])) == pytest.approx(0.4)
    # weights that do not encode distinct directions (the toy dataset's all-ones) -> None: index distance
    assert M.beam_grid_xy(np.ones((4, 4), np.complex64), (2, 2)) is None
