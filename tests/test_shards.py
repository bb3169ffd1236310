"""Shard folders (edgebm.data.shards): reproducible bytes whatever the workers, atomic writing that never
touches a folder it did not create, loading as one dataset everywhere, streaming batches."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data import ShardSpec, generate_shard, load_dataset, open_dataset, write_shards
from edgebm.data.shards import INDEX_NAME, _sha256, shard_name
from edgebm.errors import ConfigError, DatasetError
from edgebm.sim import RandomScenario, ScenarioConfig

RAND = ShardSpec(RandomScenario(cities=5, snr_db=(0.0, 30.0)), n_samples=600, seed=7, shards=3)


@pytest.fixture(scope="module")
def rand_folder(tmp_path_factory):
    return write_shards(RAND, tmp_path_factory.mktemp("sh") / "rand")


def test_bytes_do_not_depend_on_workers(rand_folder, tmp_path):
    with ProcessPoolExecutor(max_workers=2) as pool:
        other = write_shards(RAND, tmp_path / "par", map_fn=pool.map)
    for j in range(3):
        assert (rand_folder / shard_name(j)).read_bytes() == (other / shard_name(j)).read_bytes()
    assert (rand_folder / INDEX_NAME).read_bytes() == (other / INDEX_NAME).read_bytes()
    # one shard alone, generated anywhere, is the same file (what a Ray task does)
    p = generate_shard(RAND, 2, tmp_path / "alone")
    assert p.read_bytes() == (rand_folder / shard_name(2)).read_bytes()


def test_index_and_cities(rand_folder):
    idx = json.loads((rand_folder / INDEX_NAME).read_text())
    assert idx["format"] == "edgebm.shards/1" and idx["n_samples"] == 600 and len(idx["shards"]) == 3
    assert [r["samples"] for r in idx["shards"]] == [200, 200, 200]
    assert all(r["sha256"] == _sha256(rand_folder / r["file"]) for r in idx["shards"])
    assert idx["meta"]["scenario"]["kind"] == "random" and idx["meta"]["scenario"]["seed"] == 7
    assert ShardSpec.from_dict(idx["spec"]) == RAND
    ds = load_dataset(rand_folder)
    assert len(ds) == 600 and set(np.unique(ds.city_id)) == set(range(5))
    for j in range(3):   # each city's geometry is built by one shard only: cities j, j + 3, ...
        part = open_dataset(rand_folder).shard(j)
        assert set(np.unique(part.city_id)) <= set(range(j, 5, 3))


def test_named_shards_and_trajectories(tmp_path):
    spec = ShardSpec(ScenarioConfig(), n_samples=0, seed=1, shards=2, trajectories=(5, 4, 0.1))
    ds = load_dataset(write_shards(spec, tmp_path / "traj"))
    assert len(ds) == 20 and sorted(np.unique(ds.traj_id)) == [0, 1, 2, 3, 4]
    parts = ds.split((0.6, 0.2, 0.2), seed=0)            # split by trajectory still works on the folder
    ids = [set(p.traj_id.tolist()) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2])
    drops = load_dataset(write_shards(ShardSpec(ScenarioConfig(city="city2"), 90, seed=1, shards=2), tmp_path / "d"))
    assert len(drops) == 90 and drops.meta["scenario"]["city"] == "city2"


def test_streaming_batches_cover_everything_once(rand_folder):
    ds = open_dataset(rand_folder)
    assert len(ds) == 600 and (ds.n_b, ds.n_a) == (16, 64) and ds.n_shards == 3
    assert ds.codebooks["cb_a_weights"].shape == (64, 64)
    batches = list(ds.iter_batches(128, seed=3, fields=("rsrp_b", "best_a", "city_id")))
    assert [len(b["best_a"]) for b in batches] == [128, 128, 128, 128, 88]
    assert set(batches[0]) == {"rsrp_b", "best_a", "city_id"}
    got = np.concatenate([b["rsrp_b"] for b in batches])
    ref = load_dataset(rand_folder).rsrp_b
    key = lambda a: np.sort(a.view(np.uint8).reshape(len(a), -1).view(f"V{a.shape[1] * 4}").ravel())  # noqa: E731
    assert np.array_equal(key(got), key(ref))               # every row exactly once
    assert not np.array_equal(got, ref)                      # shuffled
    again = np.concatenate([b["rsrp_b"] for b in ds.iter_batches(128, seed=3, fields=("rsrp_b",))])
    assert np.array_equal(again, got)                        # seeded
    ordered = np.concatenate([b["rsrp_b"] for b in ds.iter_batches(1000, shuffle=False, buffer_shards=2)])
    assert np.array_equal(ordered, ref)
    assert len(list(ds.iter_batches(128, seed=0, drop_last=True))) == 4
    with pytest.raises(DatasetError, match="field 'bogus'"):
        next(ds.iter_batches(10, fields=("bogus",)))


def test_open_single_file(tmp_path, toy_dataset):
    from edgebm.data import save_dataset

    p = save_dataset(toy_dataset, tmp_path / "t.npz")
    ds = open_dataset(p)
    assert len(ds) == len(toy_dataset) and ds.n_shards == 1
    assert sum(len(b["rsrp_b"]) for b in ds.iter_batches(100)) == len(toy_dataset)


def test_refuses_foreign_folder_and_file(tmp_path):
    user = tmp_path / "thesis"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("keep me")
    (user / "sub" / "thesis.tex").write_text("keep me too")
    small = ShardSpec(ScenarioConfig(), 20, seed=0, shards=2)
    with pytest.raises(ConfigError, match="not an edgebm shard folder"):
        write_shards(small, user)
    assert (user / "notes.txt").read_text() == "keep me" and (user / "sub" / "thesis.tex").exists()
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is an existing file"):
        write_shards(small, f)
    assert f.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "thesis"]     # no temp folders left
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(load_dataset(write_shards(small, empty))) == 20


def test_replaces_own_folder_atomically_and_recovers(tmp_path):
    out = tmp_path / "ds"
    write_shards(ShardSpec(ScenarioConfig(), 20, seed=0, shards=2), out)
    write_shards(ShardSpec(ScenarioConfig(), 30, seed=0, shards=3), out)
    assert len(load_dataset(out)) == 30 and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    # a crash between the two renames: DIR gone, complete .DIR.old-* left -> restored on the next open
    os.replace(out, tmp_path / ".ds.old-999999-abcd")
    (tmp_path / ".ds.tmp-999999-ef01").mkdir()           # a stale temp folder of a dead writer
    assert len(load_dataset(out)) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import edgebm.data.shards as sh

    out = tmp_path / "ds"
    write_shards(ShardSpec(ScenarioConfig(), 20, seed=0, shards=2), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(spec, index, out_dir):
        if index == 1:
            raise KeyboardInterrupt
        return generate_shard(spec, index, out_dir)

    monkeypatch.setattr(sh, "generate_shard", boom)
    with pytest.raises(KeyboardInterrupt):
        write_shards(ShardSpec(ScenarioConfig(), 40, seed=1, shards=2), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d / "shard-00001.npz", "sha256 does not match"),
    (lambda d: (d / "shard-00001.npz").unlink() or None, "is missing"),
    (lambda d: _edit_index(d, lambda i: i["shards"][0].update(file="../x.npz")), "shards[0].file"),
    (lambda d: _edit_index(d, lambda i: i.update(format="other")), "field 'format'"),
    (lambda d: _edit_index(d, lambda i: i.update(n_samples=5)), "field 'n_samples'"),
    (lambda d: (d / INDEX_NAME).write_text("{nope") and None, "not valid JSON"),
    (lambda d: (d / INDEX_NAME).unlink() or None, "needs index.json"),
])
def test_tampered_folder_refused(tmp_path, edit, msg):
    out = write_shards(ShardSpec(ScenarioConfig(), 20, seed=0, shards=2), tmp_path / "ds")
    target = edit(out)
    if target is not None:
        raw = bytearray(target.read_bytes())
        raw[-30] ^= 0xFF
        target.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(out)


def _edit_index(folder, change):
    idx = json.loads((folder / INDEX_NAME).read_text())
    change(idx)
    (folder / INDEX_NAME).write_text(json.dumps(idx))


@pytest.mark.parametrize("kw,field", [
    ({"shards": 0}, "shards"), ({"shards": 50}, "shards"), ({"seed": -1}, "seed"), ({"n_samples": 0}, "n_samples"),
])
def test_spec_validation(kw, field):
    base = dict(scenario=ScenarioConfig(), n_samples=20, seed=0, shards=2)
    with pytest.raises(ConfigError) as ei:
        ShardSpec(**{**base, **kw})
    assert ei.value.field == field


def test_cli_shards_everywhere(tmp_path, capsys):
    out = tmp_path / "sh"
    assert main(["data", "generate", "--scenario", "random", "--cities", "3", "--samples", "90", "--shards", "2",
                 "--out", str(out)]) == 0
    assert main(["data", "info", str(out)]) == 0
    assert "(2 shards)" in capsys.readouterr().out
    assert main(["train", "--data", str(out), "--model", "tree", "--out", str(tmp_path / "run")]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(out), "--json"]) == 0
    rc = main(["data", "generate", "--samples", "10", "--workers", "2", "--out", str(tmp_path / "x.npz")])
    assert rc == 2 and "--workers" in capsys.readouterr().err
    rc = main(["data", "generate", "--samples", "10", "--out", str(out)])
    assert rc == 2 and "is a folder; pass --shards" in capsys.readouterr().err
    rc = main(["data", "generate", "--samples", "10", "--shards", "20", "--out", str(tmp_path / "y")])
    assert rc == 2 and "--shards: 20 shards for 10 samples" in capsys.readouterr().err


def test_folder_larger_than_memory_limit_is_streamed_not_loaded(rand_folder, monkeypatch):
    import edgebm.data.npz as npz

    monkeypatch.setattr(npz, "MAX_ARRAY_BYTES", 150_000)     # 600 samples x 354 B > 150 kB; one shard (~112 kB) fits
    with pytest.raises(DatasetError, match="stream it with"):
        load_dataset(rand_folder)
    assert sum(len(b["best_a"]) for b in open_dataset(rand_folder).iter_batches(64)) == 600
