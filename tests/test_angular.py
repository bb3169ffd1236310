"""The codebook-aware `angular` family, numpy codebook scoring, multi-codebook training, meta-init and aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgebm.runtime.codebook_scoring import gain_patterns, psi_grid, score_codebook, visible_mask


def _codebooks(**kw):
    from edgebm.data.simulated import codebook_arrays
    from edgebm.sim import ScenarioConfig, build_codebooks

    return codebook_arrays(build_codebooks(ScenarioConfig(**kw)))


def plane_wave_parts(n: int, seed: int, codebooks: dict, noise_db: float = 0.3):
    """Single-path channels from random visible panel directions: RSRP_i = |f_i^H a(psi)|^2 exactly (the answer is
    known), Set B with ``noise_db`` dB of measurement noise. Returns (rsrp_b, rsrp_a)."""
    from edgebm.sim.arrays import upa_steering

    rng = np.random.default_rng(seed)
    r = np.sqrt(rng.uniform(0, 0.95, n))
    th = rng.uniform(0, 2 * np.pi, n)
    a = upa_steering(r * np.cos(th), r * np.sin(th), (8, 8))                       # (n, 64)
    p = lambda w: np.abs(a @ np.conj(np.asarray(w)).T) ** 2                        # noqa: E731  |f^H a|^2
    rx = rng.uniform(-100, -70, (n, 1))
    rsrp_a = (rx + 10 * np.log10(p(codebooks["cb_a_weights"]) + 1e-9)).astype(np.float32)
    rsrp_b = (rx + 10 * np.log10(p(codebooks["cb_b_weights"]) + 1e-9) + rng.normal(0, noise_db, (n, 16))).astype(np.float32)
    return rsrp_b, rsrp_a


def test_gain_patterns_match_the_simulator_and_sum_to_one_for_an_orthogonal_dft():
    from edgebm.sim import measure_rsrp
    from edgebm.sim.arrays import upa_steering
    from edgebm.sim.codebooks import Codebook

    cb = _codebooks()
    g = gain_patterns(cb["cb_a_weights"], (8, 8))
    assert g.shape == (64, 32 * 32) and g.min() >= 0 and g.max() <= 1 + 1e-5
    # an orthogonal 8x8 DFT codebook captures all the power of any plane wave: sum_i |f_i^H a|^2 = ||a||^2
    assert np.allclose(g.sum(0), 1.0, atol=1e-4)
    # a one-path channel from grid point k: the simulator's RSRP of beam i is |f_i^H a|^2, i.e. 64 * g[i, k]
    k = 37 * 32 // 2 + 5
    pv, ph = psi_grid()[k]
    h = np.conj(upa_steering(np.array([pv]), np.array([ph]), (8, 8)))[:, None, None, :]   # (1, K=1, 1, 64): H = a^H
    w = Codebook("set_a", cb["cb_a_weights"], cb["cb_a_az"], cb["cb_a_el"], (8, 8))
    rsrp = measure_rsrp(h.astype(np.complex64), w, None, None)[0]
    assert np.allclose(10 ** (rsrp / 10), 64 * g[:, k], rtol=1e-3, atol=1e-5)


def test_score_codebook_is_log_of_projected_aps():
    rng = np.random.default_rng(0)
    aps = rng.dirichlet(np.ones(1024), size=3).astype(np.float32)
    g = rng.random((10, 1024)).astype(np.float32)
    z = score_codebook(aps, g, temperature=2.0)
    assert z.shape == (3, 10)
    assert np.allclose(z, np.log(aps @ g.T + 1e-6) / 2.0, atol=1e-5)
    assert score_codebook(aps[0], g).shape == (10,)
    with pytest.raises(ValueError):
        score_codebook(aps, g[:, :100])
    assert visible_mask().sum() < 1024


@pytest.fixture(scope="module")
def trained_plane_wave_model():
    """An angular model trained (CPU, seconds) on plane waves with the 8x8 DFT Set A codebook only."""
    from edgebm.models.angular import AngularBeamNet, codebook_gains
    from edgebm.train import TrainConfig
    from edgebm.train.multicodebook import Part, train_on_parts

    cb = _codebooks()
    gb, ga = codebook_gains(cb, (8, 8))
    xb, xa = plane_wave_parts(6000, 0, cb)
    vb, va = plane_wave_parts(500, 1, cb)
    torch.manual_seed(0)
    m = AngularBeamNet(16, 64, gb, ga, hidden=(128, 128))
    res = train_on_parts(m, [Part(xb, xa, ga)], [Part(vb, va, ga)], TrainConfig(epochs=12, soft_weight=0.5, seed=0))
    return m, cb, res


def test_angular_serves_a_codebook_it_never_saw(trained_plane_wave_model):
    """Trained on the DFT codebook only, scored zero-shot on a random 64-beam subset of the x4 oversampled DFT:
    the gain patterns carry the new beams' directions, so top-1 is far above chance (1/64) and the chosen beam is
    close in power to the best."""
    from edgebm.models.angular import codebook_gains

    m, _, res = trained_plane_wave_model
    assert res.history[-1]["val_top1"] > 0.6
    new = _codebooks(codebook_a="random", codebook_seed=7)
    xb, xa = plane_wave_parts(1000, 2, new)
    gb, ga = codebook_gains(new, (8, 8))
    m2 = m.with_codebooks(gains_a=ga)
    with torch.no_grad():
        z = m2(torch.from_numpy(xb)).numpy()
    top1 = float(np.mean(z.argmax(1) == xa.argmax(1)))
    gap = xa.max(1) - np.take_along_axis(xa, z.argmax(1)[:, None], 1)[:, 0]
    assert z.shape == (1000, 64)
    assert top1 > 0.3, top1          # chance: 1/64
    assert np.median(gap) < 1.0      # dB
    # a codebook of another size (256 beams) works the same way
    m3 = m.with_codebooks(gains_a=codebook_gains(_codebooks(set_a=256), (8, 8))[1])
    assert m3(torch.from_numpy(xb[:4])).shape == (4, 256)


def test_angular_onnx_parity_and_runtime_scoring_equals_graph_logits(trained_plane_wave_model, tmp_path):
    import onnxruntime as ort

    from edgebm.deploy import check_parity, export_onnx
    from edgebm.models.angular import codebook_gains

    m, cb, _ = trained_plane_wave_model
    xb, _ = plane_wave_parts(200, 3, cb)
    path = export_onnx(m, xb, tmp_path / "ang.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logits", "features", "aps"]
    logits, feats, aps = sess.run(None, {"rsrp_b": xb})
    assert check_parity(m, path, xb).max_abs_diff < 1e-3
    assert np.allclose(aps.sum(1), 1.0, atol=1e-4)
    # the runtime path (numpy gain patterns of the bundle's codebook) reproduces the graph's logits
    _, ga = codebook_gains(cb, (8, 8))
    assert np.allclose(score_codebook(aps, ga, m.temperature), logits, atol=1e-3)


def test_angular_family_trains_through_the_estimator_and_predictor_takes_a_new_codebook(tmp_path):
    """make_model('angular') reads the gain patterns from the dataset; a bundle of it serves a new codebook
    through Predictor.set_codebook (numpy), equal to scoring the APS output by hand."""
    from dataclasses import replace

    from edgebm.data import BeamDataset
    from edgebm.models.angular import codebook_gains
    from edgebm.pipeline import export_for_profile
    from edgebm.profiles import load_profile
    from edgebm.runtime import Predictor
    from edgebm.train import TrainConfig

    cb = _codebooks()
    xb, xa = plane_wave_parts(1500, 4, cb)
    n = len(xb)
    arrays = {"rsrp_b": xb, "rsrp_a": xa, "best_a": xa.argmax(1).astype(np.int64), "pos": np.zeros((n, 3), np.float32),
              "los": np.ones(n, bool), "snr_db": np.full(n, 20.0, np.float32), "noise_dbm": np.full(n, -130.0, np.float32)}
    meta = {"scenario": {"city": "plane-waves"}, "carrier_hz": 28e9, "bs_array": [8, 8], "ue_array": [1, 1], "set_a": 64,
            "set_b": 16, "seed": 4, "generator": "tests.plane_waves"}
    ds = BeamDataset(arrays=arrays, codebooks=cb, meta=meta)
    prof = load_profile("smartphone")
    prof = replace(prof, models=replace(prof.models, families=("angular",)), precision=replace(prof.precision, allowed=("fp32",)))
    res = export_for_profile(prof, ds, tmp_path / "b", train_cfg=TrainConfig(epochs=4, seed=0, soft_weight=0.5), latency_runs=20,
                             force=True)   # fp32 only: 1.6 MB of weights is over the 1 MiB limit (int8 fits)
    assert res.chosen.family == "angular" and res.manifest["aps_output"] == "aps"
    assert res.manifest["functionality"]["codebook_agnostic"] is True  # it serves codebooks it never saw: a new one is accepted
    pred = Predictor(res.bundle_dir, allow_failed=True)
    new = _codebooks(codebook_a="random", codebook_seed=3)
    pred.set_codebook(new["cb_a_weights"])
    s = pred.decision_scores(xb[:50])
    aps = pred.session.run(["aps"], {"rsrp_b": xb[:50]})[0]
    want = score_codebook(aps, codebook_gains(new, (8, 8))[1], res.manifest["model_config"]["params"]["temperature"])
    assert s.shape == (50, 64) and np.allclose(s, want, atol=1e-4)
    assert pred.predict(xb[0], k=3)[0].shape == (3,)
    assert pred.features(xb[:2]).shape == (2, 64)
    from edgebm.runtime import HeadAdapter

    HeadAdapter(pred, max_update_ms=1e9).update(xb[:25], xa[:25].argmax(1))   # the new head is adaptable on device


def test_predictor_set_codebook_refuses_a_non_angular_bundle(toy_bundle):
    from edgebm.runtime import BundleError, Predictor

    pred = Predictor(toy_bundle.bundle_dir)
    with pytest.raises(BundleError, match="not codebook-aware"):
        pred.set_codebook(np.ones((4, 64), np.complex64))


def test_reptile_moves_the_init_towards_what_tasks_share():
    """Tasks share a label bias the offline head does not have: after Reptile the init starts closer to every
    task's solution, so a few SGD steps on 25 labels reach a higher accuracy than from the plain init."""
    from edgebm.train.meta import HeadTask, adapt_head, head_accuracy, reptile_head_init

    rng = np.random.default_rng(0)
    f, a = 8, 5
    w_true = rng.normal(0, 1, (a, f)).astype(np.float32)

    def task(shift, n=400):
        x = rng.normal(0, 1, (n, f)).astype(np.float32)
        y = (x @ w_true.T + shift).argmax(1)
        return HeadTask(x, y)

    shared = np.array([3.0, 0, 0, 0, 0], np.float32)   # every site prefers beam 0
    tasks = [task(shared + rng.normal(0, 0.3, a)) for _ in range(20)]
    w0, b0 = np.zeros((a, f), np.float32), np.zeros(a, np.float32)
    wm, bm = reptile_head_init(tasks, w0, b0, meta_steps=300, seed=0)
    assert bm[0] > bm[1:].max()          # learned the shared preference
    new = task(shared)
    shots, test = slice(0, 25), slice(25, None)
    acc = {}
    for name, (w, b) in {"plain": (w0, b0), "meta": (wm, bm)}.items():
        wa, ba = adapt_head(w, b, new.feats[shots], new.labels[shots], steps=10, lr=0.1)
        acc[name] = head_accuracy(wa, ba, new.feats[test], new.labels[test])
    assert acc["meta"] > acc["plain"] + 0.05, acc
    # deterministic for a seed
    w2, b2 = reptile_head_init(tasks, w0, b0, meta_steps=300, seed=0)
    assert np.array_equal(w2, wm) and np.array_equal(b2, bm)


def test_wasserstein2_and_similarity_weighted_aggregation():
    from edgebm.runtime.aggregate import aggregate_heads, feature_stats, similarity_weights, wasserstein2

    rng = np.random.default_rng(0)
    a = feature_stats(rng.normal(0, 1, (4000, 3)))
    b = feature_stats(rng.normal([2, 0, 0], 1, (4000, 3)))
    # equal covariances: W2 is the distance between the means (2); same Gaussian: 0
    assert abs(wasserstein2(a, b) - 2.0) < 0.1
    assert wasserstein2(a, a) < 1e-6
    # 1-D closed form: W2 = sqrt((m1 - m2)^2 + (s1 - s2)^2)
    c, d = feature_stats(rng.normal(0, 1, (20000, 1))), feature_stats(rng.normal(1, 3, (20000, 1)))
    assert abs(wasserstein2(c, d) - np.sqrt(1 + 4)) < 0.1
    # the site nearest the target gets the largest weight; weights sum to 1
    target = feature_stats(rng.normal([1.9, 0, 0], 1, (500, 3)))
    g = similarity_weights(target, [a, b])
    assert g[1] > g[0] and abs(g.sum() - 1) < 1e-9
    h1 = (np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    h2 = (np.ones((2, 3), np.float32), np.ones(2, np.float32))
    w, bias = aggregate_heads([h1, h2], np.array([1.0, 3.0]))
    assert np.allclose(w, 0.75) and np.allclose(bias, 0.75)
    with pytest.raises(ValueError):
        aggregate_heads([h1], np.array([1.0, 1.0]))


def test_pretrained_weights_roundtrip_byte_stable_and_serve_any_codebook(tmp_path, trained_plane_wave_model):
    """save_weights writes the same bytes twice; load_angular rebuilds the model for another Set A codebook (the gain
    patterns are recomputed, not stored) and scores like with_codebooks; a missing file says how to make it."""
    from edgebm.errors import ModelError
    from edgebm.models.angular import codebook_gains
    from edgebm.models.pretrained import load_angular, module_arrays, read_weights, save_weights

    m, cb, _ = trained_plane_wave_model
    meta = {"family": "angular", "config": m.config(), "train": {"seed": 0}}
    a, b = save_weights(tmp_path / "a.npz", module_arrays(m), meta), save_weights(tmp_path / "b.npz", module_arrays(m), meta)
    assert a.read_bytes() == b.read_bytes()
    arrays, back = read_weights(a)
    assert back == meta and "score.weight" not in arrays and arrays["body.0.weight"].dtype == np.float16
    new = _codebooks(set_a=256)
    m2, _ = load_angular(a, 16, 256, new, (8, 8))
    xb, _ = plane_wave_parts(50, 9, cb)
    ref = m.with_codebooks(gains_a=codebook_gains(new, (8, 8))[1])
    with torch.no_grad():
        z2, zr = m2(torch.from_numpy(xb)).numpy(), ref(torch.from_numpy(xb)).numpy()
    assert z2.shape == (50, 256)
    assert np.mean(z2.argmax(1) == zr.argmax(1)) > 0.95      # equal up to the float16 storage of the weights
    with pytest.raises(ModelError, match="bench pretrain"):
        read_weights(tmp_path / "missing.npz")
    with pytest.raises(ModelError, match="Set B"):
        load_angular(a, 8, 64, cb, (8, 8))


def test_random_corpus_records_scenario_and_never_uses_the_named_cities():
    from edgebm.train.corpus import CorpusSpec, codebook_mix, random_corpus

    ds = random_corpus(CorpusSpec(n_samples=300, seed=5, cities=7))
    sc = ds.meta["scenario"]
    assert sc["kind"] == "random" and sc["cities"] == 7 and ds.meta["seed"] == 5
    assert len(ds) == 300 and set(np.unique(ds.city_id)) <= set(range(7))
    mix = codebook_mix(400, seed=1, cities=3, parts=4, dft64_share=0.5)
    assert [d.n_a for d in mix] == [64, 64, 64, 256] and [d.meta["scenario"]["codebook_a"] for d in mix] == ["dft", "dft", "random", "dft"]
    assert sum(len(d) for d in mix) == 400


def test_train_on_parts_streams_a_shard_folder(tmp_path):
    """A shard folder (edgebm.data.open_dataset) trains the angular model next to in-memory parts, one shard in memory
    at a time; the same seed gives the same weights."""
    from edgebm.data import open_dataset
    from edgebm.data.shards import ShardSpec, write_shards
    from edgebm.models.angular import AngularBeamNet
    from edgebm.sim import RandomScenario
    from edgebm.train import TrainConfig
    from edgebm.train.multicodebook import parts_from_dataset, train_on_parts
    from edgebm.train.corpus import CorpusSpec, random_corpus

    folder = write_shards(ShardSpec(RandomScenario(cities=4), n_samples=600, seed=3, shards=3), tmp_path / "shards")
    streamed = open_dataset(folder)
    mem = parts_from_dataset(random_corpus(CorpusSpec(n_samples=300, seed=4, cities=3)))
    val = parts_from_dataset(random_corpus(CorpusSpec(n_samples=100, seed=5, cities=2)))
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        m = AngularBeamNet(16, 64, gains_a=val[0].gains_a, hidden=(32,))
        res = train_on_parts(m, [streamed, *mem], val, TrainConfig(epochs=2, seed=0, batch_size=128, soft_weight=0.5))
        assert res.epochs_run == 2 and np.isfinite(res.best_val_loss)
        weights.append(m.body[0].weight.detach().numpy().copy())
    assert np.array_equal(weights[0], weights[1])


def test_shipped_pretrained_teacher_student_and_meta_head_load_for_any_codebook():
    """The weights in edgebm/_pretrained load for 16 -> 64 and 16 -> 256 (same file, gain patterns recomputed), predict
    far above chance on an unseen named city, and the meta head matches the student's head shape."""
    from edgebm.data.simulated import generate_dataset
    from edgebm.models.pretrained import load_pretrained_student, load_pretrained_teacher, pretrained_info, pretrained_meta_head
    from edgebm.sim import ScenarioConfig

    ds = generate_dataset(ScenarioConfig(city="city1"), 300, seed=12)
    for load in (load_pretrained_teacher, load_pretrained_student):
        m = load(16, 64, ds.codebooks, (8, 8))
        assert m.family == "angular" and m.predict(ds.rsrp_b).shape == (300,)
        assert np.mean(m.predict(ds.rsrp_b) == ds.best_a) > 0.6            # chance: 1/64
    d256 = generate_dataset(ScenarioConfig(city="city1", set_a=256), 50, seed=13)
    assert load_pretrained_teacher(16, 256, d256.codebooks).decision_scores(d256.rsrp_b).shape == (50, 256)
    w, b = pretrained_meta_head(64)
    assert w.shape == (64, 64) and b.shape == (64,) and pretrained_meta_head(256) is None
    info = pretrained_info()
    assert info["angular_teacher.npz"]["role"] == "teacher" and info["angular_student.npz"]["distilled_from"] == "angular_teacher.npz"
