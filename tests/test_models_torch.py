"""Neural families: teacher CNN, position-aided dual-branch teacher, DS-CNN student, GRU seq2seq.

Per family: shapes, determinism, config round trip, ONNX export + parity, thop vs ONNX FLOPs,
and a short training run on the toy data (the temporal model: a few manual optimiser steps).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgebm.budget import FLOPS_TOLERANCE, analyze_onnx, thop_flops
from edgebm.deploy import check_parity, export_onnx
from edgebm.models.dscnn import BeamDSCNN
from edgebm.models.fusion import PositionAidedTeacher, normalise_positions
from edgebm.models.teacher import BeamTeacherCNN, default_grid, regnet_widths
from edgebm.models.temporal import BeamGRU, make_sequences
from edgebm.train import TrainConfig, train_classifier
from tests.conftest import make_toy_dataset

FAMILIES = {
    "teacher": lambda: BeamTeacherCNN(16, 64),
    "fusion": lambda: PositionAidedTeacher(16, 64),
    "dscnn": lambda: BeamDSCNN(16, 64),
    "gru": lambda: BeamGRU(16, 64),
}


def _sequence_input(ds, history: int = 8) -> np.ndarray:
    """Toy Set B rows grouped into 'trajectories' of 50 consecutive samples -> (M, history, 16)."""
    n = len(ds)
    x, _ = make_sequences(ds.rsrp_b, ds.best_a, np.arange(n) // 50, np.arange(n) % 50, history, 3)
    return x


def _inputs(name: str, ds) -> np.ndarray:
    return _sequence_input(ds) if name == "gru" else ds.rsrp_b


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny and batches small: one intra-op thread is as fast as two, and OpenMP's
    spinning barriers make two threads many times slower when the cores are shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, toy_dataset):
    """Each family at its defaults (16 -> 64), exported once: name -> (model, onnx path, inputs)."""
    out = {}
    root = tmp_path_factory.mktemp("families")
    for name, make in FAMILIES.items():
        torch.manual_seed(0)
        model = make().eval()
        x = _inputs(name, toy_dataset)
        out[name] = (model, export_onnx(model, x, root / f"{name}.onnx"), x)
    return out


# --- shapes, determinism, config ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_shapes_and_contract(name, toy_dataset):
    torch.manual_seed(0)
    model = FAMILIES[name]().eval()
    x = torch.from_numpy(_inputs(name, toy_dataset)[:5])
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    head = model.head
    assert isinstance(head, torch.nn.Linear) and head.out_features == 64
    assert feats.shape[-1] == head.in_features
    if name == "gru":
        assert feats.shape == (5, 4, 128) and logits.shape == (5, 4, 64)
    else:
        assert feats.shape[0] == 5 and feats.ndim == 2 and logits.shape == (5, 64)
    assert torch.allclose(logits, head(feats))
    assert isinstance(model.pre, torch.nn.Module) and type(model.pre).__name__ == "RelativeDb"
    # config is JSON-able and rebuilds the same architecture
    cfg = json.loads(json.dumps(model.config()))
    assert cfg["n_in"] == 16 and cfg["n_out"] == 64
    clone = type(model)(**cfg)
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.eval()(x), logits)
    # invariant to a common dB offset (RelativeDb comes first)
    with torch.no_grad():
        assert torch.allclose(model(x + 17.0), logits, atol=1e-5)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_determinism(name, toy_dataset):
    x = torch.from_numpy(_inputs(name, toy_dataset)[:8])
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        m = FAMILIES[name]().eval()
        with torch.no_grad():
            outs.append((m.state_dict(), m(x)))
    (s1, y1), (s2, y2) = outs
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(y1, y2)
    torch.manual_seed(124)
    m3 = FAMILIES[name]()
    assert any(not torch.equal(s1[k], v) for k, v in m3.state_dict().items() if v.is_floating_point() and v.numel() > 1)


def test_default_grid_and_other_sizes():
    assert default_grid(16) == (4, 4) and default_grid(8) == (2, 4) and default_grid(4) == (2, 2) and default_grid(6) == (1, 6)
    x = torch.randn(3, 8) - 80
    for model in (BeamTeacherCNN(8, 32), BeamDSCNN(8, 32), PositionAidedTeacher(8, 32, widths=(16, 32), depths=(1, 1)),
                  BeamTeacherCNN(6, 10, widths=(16,), depths=(1,), backbone="resnet"), BeamDSCNN(8, 32, grid=(4, 2))):
        with torch.no_grad():
            assert model.eval()(x[:, : model.n_in]).shape == (3, model.n_out)
    with pytest.raises(ValueError, match="grid"):
        BeamTeacherCNN(16, 64, grid=(3, 4))
    with pytest.raises(ValueError, match="backbone"):
        BeamTeacherCNN(16, 64, backbone="vgg")


# --- ONNX export, parity, FLOPs -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_onnx_parity(name, exported):
    model, path, x = exported[name]
    rep = check_parity(model, path, x[:100])
    assert rep.n_samples == 100 and rep.max_abs_diff < 1e-3 and rep.argmax_agreement == 1.0
    if name == "gru":  # check_parity takes argmax over axis 1 (the slots here): check per-slot beams too
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x[:100]})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(x[:100])).numpy()
        assert got.shape == (100, 4, 64) and np.array_equal(got.argmax(-1), want.argmax(-1))
    # dynamic batch: a single row runs too
    assert check_parity(model, path, x[:1]).max_abs_diff < 1e-3


@pytest.mark.parametrize("name", list(FAMILIES))
def test_thop_agrees_with_onnx_count(name, exported):
    model, path, x = exported[name]
    stats = analyze_onnx(path)
    assert stats.uncounted_ops == [] and stats.flops > 0
    th = thop_flops(model, x)
    ratio = th / stats.flops
    print(f"{name}: onnx {stats.flops / 1e6:.3f} MFLOPs, thop {th / 1e6:.3f} MFLOPs, ratio {ratio:.3f}, params {stats.params}")
    assert abs(ratio - 1.0) <= FLOPS_TOLERANCE
    # thop leaves no buffers or hooks behind: the model still runs and exports
    assert not any("total_ops" in k for k in model.state_dict())
    with torch.no_grad():
        model(torch.from_numpy(x[:2]))


def test_thop_leaves_sector_model_usable(tmp_path, toy_dataset):
    m = BeamTeacherCNN(16, 64, widths=(16, 32), depths=(1, 1), sectors=2).eval()
    thop_flops(m, toy_dataset.rsrp_b)
    assert not any(h for mod in m.modules() for h in (mod._forward_hooks, mod._forward_pre_hooks))
    path = export_onnx(m, toy_dataset.rsrp_b, tmp_path / "s.onnx")  # exports sector 0 (``head``)
    with torch.no_grad():
        want = m(torch.from_numpy(toy_dataset.rsrp_b[:10]))[:, 0]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: toy_dataset.rsrp_b[:10]})[0]
    assert np.abs(got - want.numpy()).max() < 1e-4


def test_default_sizes(exported):
    flops = {k: analyze_onnx(p).flops for k, (_, p, _) in exported.items()}
    params = {k: analyze_onnx(p).params for k, (_, p, _) in exported.items()}
    assert 2e6 <= flops["teacher"] <= 50e6
    assert flops["fusion"] > flops["teacher"]
    assert flops["dscnn"] < 5e6 and params["dscnn"] < 100_000
    assert flops["gru"] < 10e6


# --- teacher specifics ----------------------------------------------------------------------------


def test_regnet_widths_hand_computation():
    # u = 24, 40, 56, 72, 88, 104; log2(u/24) = 0, .74, 1.22, 1.58, 1.87, 2.12 -> 24, 24, 48, 48, 48, 96
    assert regnet_widths(24, 16, 2.0, 6) == ((24, 48, 96), (2, 3, 1))
    # u = 22, 32, 42, 52; log1.5(u/22) = 0, .92, 1.60, 2.12 -> 22, 22, 33, 49.5 -> /8 rounded: 24, 24, 32, 48
    assert regnet_widths(22, 10, 1.5, 4, q=8) == ((24, 32, 48), (2, 1, 1))
    # u/w0 exactly a power of wm lands on that power (no floor(0.999...) = 0)
    assert regnet_widths(16, 16, 2.0, 2) == ((16, 32), (1, 1))
    assert regnet_widths(24, 0, 2.0, 3) == ((24,), (3,))
    m = BeamTeacherCNN.from_regnet(16, 64)
    assert m.widths == (24, 48, 96) and m.depths == (2, 3, 1)
    assert BeamTeacherCNN(**m.config()).widths == (24, 48, 96)
    with pytest.raises(ValueError):
        regnet_widths(24, 16, 1.0, 6)


def test_grouped_convs_follow_backbone():
    regnet = BeamTeacherCNN(16, 64)
    resnet = BeamTeacherCNN(16, 64, backbone="resnet")
    g_reg = [m.groups for m in regnet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)][1:]
    g_res = [m.groups for m in resnet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert g_reg == [4, 8, 16, 16, 32]  # group width 8 at widths 32, 64, 128, 128, 256
    assert set(g_res) == {1}


def test_sector_heads(toy_dataset):
    torch.manual_seed(0)
    m = BeamTeacherCNN(16, 64, widths=(16, 32), depths=(1, 1), sectors=3).eval()
    x = torch.from_numpy(toy_dataset.rsrp_b[:6])
    with torch.no_grad():
        all_ = m(x)
        assert all_.shape == (6, 3, 64)
        assert torch.equal(m(x, sector=2), all_[:, 2])
        sec = torch.tensor([0, 1, 2, 2, 1, 0])
        assert torch.equal(m(x, sector=sec), all_[torch.arange(6), sec])
        assert m.head is m.heads[0] and len(m.heads) == 3 and torch.allclose(m.head(m.forward_features(x)), all_[:, 0])
    assert BeamTeacherCNN(**m.config()).sectors == 3
    assert len(list(m.parameters())) == len(m.state_dict()) - sum(1 for k in m.state_dict() if "running" in k or "num_batches" in k)
    single = BeamTeacherCNN(16, 64, widths=(16,), depths=(1,))
    assert len(single.heads) == 1 and single.heads[0] is single.head and "head.weight" in single.state_dict()


# --- short trainings --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_split():
    ds = make_toy_dataset(1000, seed=1)
    return ds, slice(0, 800), slice(800, 1000)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: BeamTeacherCNN(16, 64, upsample=16), id="teacher"),  # 16: 4x cheaper than the default 32
        pytest.param(lambda: BeamDSCNN(16, 64), id="dscnn"),
    ],
)
def test_cnn_trains_above_chance(make, train_split):
    ds, tr, va = train_split
    torch.manual_seed(0)
    model = make()
    res = train_classifier(model, ds.rsrp_b[tr], ds.best_a[tr], ds.rsrp_b[va], ds.best_a[va],
                           TrainConfig(epochs=6, batch_size=64, lr=3e-3, seed=0))
    best = max(h["val_top1"] for h in res.history)
    assert best > 0.2, res.history  # chance is 1/64


def test_position_aided_teacher_trains_with_aux_losses(train_split):
    ds, tr, va = train_split
    pos_tr, mean, std = normalise_positions(ds.pos[tr])
    assert np.allclose(pos_tr[:, :2].mean(0), 0, atol=1e-5) and np.all(pos_tr[:, 2] == 0)  # constant height: std -> 1
    torch.manual_seed(0)
    model = PositionAidedTeacher(16, 64, upsample=16)
    x = torch.from_numpy(ds.rsrp_b[:32])
    logits, pos, recon = model.forward_aux(x)
    assert logits.shape == (32, 64) and pos.shape == (32, 3) and recon.ndim == 0
    logits2, aux = model.aux_loss(x, torch.from_numpy(pos_tr[:32]))
    aux.backward()
    assert model.pos_branch.stem[0].weight.grad.abs().sum() > 0  # the position branch is supervised
    assert model.fusion.gen[0].weight.grad.abs().sum() > 0  # and so is the AutoFusion decoder
    model.zero_grad(set_to_none=True)

    res = train_classifier(model, ds.rsrp_b[tr], ds.best_a[tr], ds.rsrp_b[va], ds.best_a[va],
                           TrainConfig(epochs=6, batch_size=64, lr=3e-3, seed=0), extra_loss=model.make_extra_loss(pos_tr))
    assert max(h["val_top1"] for h in res.history) > 0.2, res.history
    pos_va, _, _ = normalise_positions(ds.pos[va], mean, std)
    model.eval()
    with torch.no_grad():
        _, pos_pred, _ = model.forward_aux(torch.from_numpy(ds.rsrp_b[va]))
    assert float(((pos_pred.numpy() - pos_va) ** 2)[:, :2].mean()) < 0.5  # position learned from RSRP (variance 1)
    assert model._last_aux is None  # eval-mode forward keeps nothing


def test_gru_optimisation_steps_reduce_loss(toy_dataset):
    n = len(toy_dataset)
    x, y = make_sequences(toy_dataset.rsrp_b, toy_dataset.best_a, np.arange(n) // 50, np.arange(n) % 50, 8, 3)
    x, y = torch.from_numpy(x[:128]), torch.from_numpy(y[:128])
    torch.manual_seed(0)
    model = BeamGRU(16, 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(x).reshape(-1, 64), y.reshape(-1))

    model.train()
    with torch.no_grad():
        first = float(loss_fn())
    for _ in range(20):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss_fn()) < 0.7 * first


# --- make_sequences ---------------------------------------------------------------------------------


def test_make_sequences_hand_example():
    # trajectory 7: 5 samples (t = 0..4), trajectory 3: 4 samples (t = 0..3), rows shuffled
    traj = np.array([7] * 5 + [3] * 4)
    tt = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3], dtype=np.float32) * 0.02
    code = traj * 100 + np.array([0, 1, 2, 3, 4, 0, 1, 2, 3])  # identifies (trajectory, step)
    rsrp = np.stack([code, -code], 1).astype(np.float32)
    best = code.astype(np.int64)
    perm = np.random.default_rng(0).permutation(9)
    X, Y, idx = make_sequences(rsrp[perm], best[perm], traj[perm], tt[perm], history=2, horizon=1, return_index=True)
    assert X.shape == (5, 2, 2) and X.dtype == np.float32 and Y.shape == (5, 2) and Y.dtype == np.int64
    # sorted by trajectory id: 3 first
    assert X[:, :, 0].tolist() == [[300, 301], [301, 302], [700, 701], [701, 702], [702, 703]]
    assert Y.tolist() == [[301, 302], [302, 303], [701, 702], [702, 703], [703, 704]]
    assert np.array_equal(X[:, :, 1], -X[:, :, 0])
    assert np.array_equal(best[perm][idx], Y[:, 0])  # index points at the current sample
    # windows never cross trajectories
    assert np.all(X[:, :, 0] // 100 == Y[:, :1] // 100) and np.all(Y // 100 == Y[:, :1] // 100)
    # a window longer than trajectory 3 (4 samples) leaves only trajectory 7's
    X5, Y5 = make_sequences(rsrp, best, traj, tt, history=3, horizon=2)
    assert X5[:, 0, 0].tolist() == [700] and Y5.tolist() == [[702, 703, 704]]
    X0, Y0 = make_sequences(rsrp, best, traj, tt, history=8, horizon=3)
    assert X0.shape == (0, 8, 2) and Y0.shape == (0, 4)
    # horizon 0: current beam only
    _, Yc = make_sequences(rsrp, best, traj, tt, history=4, horizon=0)
    assert Yc.tolist() == [[303], [703], [704]]


def test_make_sequences_many_trajectories_no_crossing():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 30, size=40)
    traj = np.repeat(np.arange(40) * 3 + 1, lengths)
    t = np.concatenate([np.sort(rng.uniform(0, 10, size=k)) for k in lengths])
    n = len(traj)
    rsrp = np.stack([traj, t], 1).astype(np.float32)
    perm = rng.permutation(n)
    X, Y = make_sequences(rsrp[perm], np.arange(n)[perm], traj[perm], t[perm], history=5, horizon=3)
    assert len(X) == int(np.maximum(lengths - 7, 0).sum())
    assert np.all(X[:, :, 0] == X[:, :1, 0])  # one trajectory per window
    assert np.all(np.diff(X[:, :, 1], axis=1) > 0)  # time increases within a window
    assert np.all(np.diff(Y, axis=1) == 1)  # consecutive samples of the (sorted) trajectory
    assert np.all(traj[Y[:, 0]] == X[:, 0, 0])
