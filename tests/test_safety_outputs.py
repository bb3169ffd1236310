"""Commands that write a user-named file or folder never destroy something edgebm did not create.

Every output argument (``data generate --out / --paths-out``, ``data from-paths --out``, ``data raytrace --out``,
``train --out``, ``emulate --out``, ``keygen --out``, ``export --out``) accepts a new name or a previous output of
the same kind (replaced atomically) and refuses anything else with one line and exit 2, the file untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data import load_dataset, save_dataset
from edgebm.data.dataset import is_dataset_file
from edgebm.data.paths import WRITER, is_path_table_file, load_path_table, save_path_table
from edgebm.sim import ScenarioConfig, simulate
from edgebm.sim.pathtable import sim_to_path_table
from tests.conftest import make_toy_dataset

GEN = "data generate --samples 30"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A user's plain file, a user folder, an edgebm dataset, an edgebm path table, a path table from the
    user's own tools (np.savez, no writer mark), a symlink to the user's file."""
    d = tmp_path_factory.mktemp("outs")
    f = {"afile": d / "notes.txt", "userdir": d / "userdir", "ds": d / "ds.npz", "table": d / "table.npz",
         "foreign_table": d / "deepmimo.npz", "link": d / "link.npz", "userpub": d / "k.pub.pem", "key": d / "k.pem"}
    f["afile"].write_text("my notes\n")
    (f["userdir"] / "sub").mkdir(parents=True)
    (f["userdir"] / "sub" / "thesis.tex").write_text("\\documentclass{article}\n")
    save_dataset(make_toy_dataset(40, seed=1), f["ds"])
    table = sim_to_path_table(simulate(ScenarioConfig(), 20, seed=0))
    save_path_table(f["table"], table)
    np.savez(f["foreign_table"], **{k: v for k, v in table.items()})
    f["link"].symlink_to(f["afile"])
    f["userpub"].write_text("the user's own public key\n")
    return f


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(root.rglob("*"))}


# (case id, argv with {placeholders} from `files`, fragment of the one stderr line)
REFUSED = [
    ("generate_out_user_file", f"{GEN} --out {{afile}}", "--out: {afile} already exists and is not an edgebm dataset"),
    ("generate_out_path_table", f"{GEN} --out {{table}}", "is not an edgebm dataset"),
    ("generate_out_symlink", f"{GEN} --out {{link}}", "--out: {link} is a symbolic link"),
    ("generate_out_folder", f"{GEN} --out {{userdir}}", "--out: {userdir} is a folder"),
    ("generate_paths_out_user_file", f"{GEN} --out new.npz --paths-out {{afile}}", "--paths-out: {afile} already exists and is not an edgebm path table"),
    ("generate_paths_out_dataset", f"{GEN} --out new.npz --paths-out {{ds}}", "is not an edgebm path table"),
    ("generate_paths_out_unmarked_table", f"{GEN} --out new.npz --paths-out {{foreign_table}}", "is not an edgebm path table"),
    ("generate_out_equals_paths_out", f"{GEN} --out same.npz --paths-out same.npz", "--paths-out: same.npz is also --out"),
    ("generate_shards_out_user_file", f"{GEN} --shards 2 --out {{afile}}", "is an existing file, not an edgebm shard folder"),
    ("generate_shards_out_dataset_file", f"{GEN} --shards 2 --out {{ds}}", "is an existing file, not an edgebm shard folder"),
    ("generate_shards_out_user_folder", f"{GEN} --shards 2 --out {{userdir}}", "not an edgebm shard folder (sub/, sub/thesis.tex)"),
    ("from_paths_out_user_file", "data from-paths {table} --out {afile}", "--out: {afile} already exists and is not an edgebm dataset"),
    ("from_paths_out_is_input", "data from-paths {table} --out {table}", "--out: {table} is also PATHS (the input path table)"),
    ("from_paths_out_unmarked_table", "data from-paths {table} --out {foreign_table}", "is not an edgebm dataset"),
    ("raytrace_out_user_file", "data raytrace --out {afile}", "--out: {afile} already exists and is not an edgebm path table"),
    ("raytrace_out_dataset", "data raytrace --out {ds}", "is not an edgebm path table"),
    ("raytrace_out_unmarked_table", "data raytrace --out {foreign_table}", "is not an edgebm path table"),
    ("train_out_user_file", "train --data {ds} --model mlp --out {afile}", "is an existing file, not an edgebm run folder"),
    ("train_out_dataset_file", "train --data {ds} --model mlp --out {ds}", "is an existing file, not an edgebm run folder"),
    ("keygen_out_user_file", "keygen --out {afile}", "--out: {afile} already exists"),
    ("keygen_pub_is_user_file", "keygen --out {key}", "--out: {userpub} already exists"),
    ("export_out_dataset_file", "export --profile smartphone --data {ds} --out {ds}", "is an existing file, not an edgebm bundle folder"),
]


@pytest.mark.parametrize("case,argv,fragment", REFUSED, ids=[c[0] for c in REFUSED])
def test_output_that_is_not_ours_refused_untouched(case, argv, fragment, files, tmp_path, monkeypatch, capsys):
    if "keygen" in argv:
        pytest.importorskip("cryptography", reason="keygen needs edgebm[sign]")
    monkeypatch.chdir(tmp_path)
    root = files["afile"].parent
    before = _tree(root)
    rc = main([a.format(**files) for a in argv.split()])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("edgebm: error: ") and "Traceback" not in err, err
    assert fragment.format(**files) in lines[0]
    assert _tree(root) == before                       # nothing written, replaced or removed
    assert list(tmp_path.iterdir()) == []              # and nothing new next to the command either


def test_our_own_outputs_are_replaced(files, tmp_path, monkeypatch, capsys):
    """A previous dataset / marked path table is an output edgebm may replace (atomically, no temp left)."""
    monkeypatch.chdir(tmp_path)
    save_dataset(make_toy_dataset(40, seed=1), "d.npz")
    save_path_table("p.npz", load_path_table(files["table"]))
    assert main(["data", "generate", "--samples", "30", "--out", "d.npz", "--paths-out", "p.npz"]) == 0
    assert len(load_dataset("d.npz")) == 30 and load_dataset("d.npz").meta["generator"] != "tests.toy"
    assert len(load_path_table("p.npz")["rx_pos"]) == 30 and str(load_path_table("p.npz")["writer"]) == WRITER
    assert main(["data", "from-paths", "p.npz", "--out", "d.npz"]) == 0
    assert load_dataset("d.npz").meta["generator"] == "edgebm.data.paths/1"
    assert sorted(os.listdir(tmp_path)) == ["d.npz", "p.npz"]
    capsys.readouterr()


def test_output_appearing_during_the_simulation_is_not_overwritten(tmp_path, monkeypatch, capsys):
    """The check runs again just before writing: a file created meanwhile (by the user) survives."""
    import edgebm.data.simulated as simulated

    monkeypatch.chdir(tmp_path)
    real = simulated.generate_dataset

    def slow(*args, **kw):
        Path("late.npz").write_text("written by someone else meanwhile\n")
        return real(*args, **kw)

    monkeypatch.setattr(simulated, "generate_dataset", slow)
    assert main(["data", "generate", "--samples", "30", "--out", "late.npz"]) == 2
    assert "late.npz already exists and is not an edgebm dataset" in capsys.readouterr().err
    assert Path("late.npz").read_text() == "written by someone else meanwhile\n"


def test_ownership_tests_read_headers_only(files, tmp_path):
    assert is_dataset_file(files["ds"]) and not is_dataset_file(files["table"]) and not is_dataset_file(files["afile"])
    assert is_path_table_file(files["table"]) and not is_path_table_file(files["foreign_table"])
    assert not is_path_table_file(files["ds"]) and not is_path_table_file(tmp_path / "missing.npz")
    # a file whose header claims 1e12 rows is judged without inflating anything (and is not ours)
    big = tmp_path / "big.npz"
    import zipfile

    with zipfile.ZipFile(big, "w") as zf, zf.open("rsrp_b.npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 16)})
    assert not is_dataset_file(big) and not is_path_table_file(big)


def test_stale_temp_sibling_of_a_killed_writer_cleaned(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / ".d.npz.tmp-999999-abcd"       # pid 999999: not alive
    stale.write_bytes(b"half a dataset")
    assert main(["data", "generate", "--samples", "30", "--out", "d.npz"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["d.npz"]
    capsys.readouterr()


def test_run_folder_replaced_whole_no_stale_model(files, tmp_path, monkeypatch, capsys):
    """Training another family into a previous run folder replaces the folder: the old model file does not
    survive next to the new one (it used to: model.pt of an mlp next to the new sgd's model.pkl, and
    load_model / evaluate then read the stale mlp)."""
    from edgebm.models.estimator import load_model

    monkeypatch.chdir(tmp_path)
    base = ["train", "--data", str(files["ds"]), "--epochs", "1", "--out", "run"]
    assert main(base + ["--model", "mlp"]) == 0
    assert sorted(os.listdir("run")) == ["config.json", "history.json", "metrics.json", "model.pt"]
    assert main(base + ["--model", "sgd"]) == 0
    assert sorted(os.listdir("run")) == ["config.json", "history.json", "metrics.json", "model.pkl"]
    assert load_model("run").family == "sgd" and sorted(os.listdir(tmp_path)) == ["run"]
    # a failure after training (here: writing the model) leaves the previous run folder as it was
    before = _tree(tmp_path / "run")
    import edgebm.models.estimator as est

    def broken_save(self, run_dir):
        (Path(run_dir) / "model.pt").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(est.TorchBeamModel, "save", broken_save)
    assert main(base + ["--model", "mlp"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _tree(tmp_path / "run") == before and sorted(os.listdir(tmp_path)) == ["run"]


# ---------------------------------------------------------------------------------------------- evaluate --trusted-key
@pytest.fixture
def signed(toy_bundle, tmp_path):
    """A copy of the session bundle signed by `vendor`, a second key pair `other`, a run folder, the toy data."""
    pytest.importorskip("cryptography", reason="signing needs edgebm[sign]")
    import shutil

    from edgebm.runtime import sign_bundle
    from edgebm.runtime.signing import generate_keypair

    d = {"bundle": tmp_path / "b", "unsigned": tmp_path / "u", "run": tmp_path / "run", "data": tmp_path / "d.npz"}
    shutil.copytree(toy_bundle.bundle_dir, d["bundle"])
    shutil.copytree(toy_bundle.bundle_dir, d["unsigned"])
    d["priv"], d["pub"] = generate_keypair(tmp_path / "vendor.pem")
    d["other_pub"] = generate_keypair(tmp_path / "other.pem")[1]
    sign_bundle(d["bundle"], d["priv"])
    d["run"].mkdir()
    (d["run"] / "config.json").write_text("{}")
    save_dataset(make_toy_dataset(200, seed=3), d["data"])
    return d


def _evaluate(signed, source: str, *keys: str, data: str | None = None) -> list[str]:
    argv = ["evaluate", str(signed[source]), "--data", data or str(signed["data"]), "--json"]
    for k in keys:
        argv += ["--trusted-key", str(signed[k]) if k in signed else k]
    return argv


def test_evaluate_trusted_key_accepts_the_signer(signed, capsys):
    import json

    assert main(_evaluate(signed, "bundle", "other_pub", "pub")) == 0      # any of the keys (repeatable)
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 200 and any(r["method"] == "mlp (bundle)" for r in out["rows"])
    assert main(_evaluate(signed, "unsigned")) == 0                         # no keys: as before
    capsys.readouterr()


@pytest.mark.parametrize("source,keys,fragment", [
    ("unsigned", ("pub",), "bundle is not signed but trusted keys were given"),
    ("bundle", ("other_pub",), "not among the trusted keys"),
    ("bundle", ("nokey.pub.pem",), "--trusted-key: nokey.pub.pem: no such key file"),
    ("run", ("pub",), "--trusted-key: {run} is a run folder (edgebm train), not a bundle"),
    ("tampered", ("pub",), "does not match the bundle"),
])
def test_evaluate_trusted_key_refuses_before_reading_data(source, keys, fragment, signed, capsys):
    if source == "tampered":   # metrics edited, sha256 and digest fixed as an attacker without the key would
        import json

        from edgebm.runtime import manifest_digest

        m = json.loads((signed["bundle"] / "manifest.json").read_text())
        m["metrics_heldout"]["top1"] = 0.999
        m["bundle_digest"] = manifest_digest(m)
        (signed["bundle"] / "manifest.json").write_text(json.dumps(m))
        source = "bundle"
    # --data does not exist: the bundle and the keys are judged first, so the message is about them
    rc = main(_evaluate(signed, source, *keys, data="missing.npz"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("edgebm: error: ")
    assert fragment.format(**signed) in err[0]


# ---------------------------------------------------------------------------------------------- datasets too big for a job
@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from edgebm.data.shards import ShardSpec, write_shards

    return write_shards(ShardSpec(ScenarioConfig(), 60, seed=0, shards=3), tmp_path_factory.mktemp("sh") / "f")


def test_dataset_size_from_headers(folder, files):
    """The in-memory size of a dataset, from headers: shard 0's bytes per row x N, codebooks and metadata once."""
    from edgebm.data.shards import dataset_size

    for path, n in ((folder, 60), (files["ds"], 40)):
        ds = load_dataset(path)
        arrays = sum(a.nbytes for a in ds.arrays.values()) + sum(a.nbytes for a in ds.codebooks.values())
        got_n, nbytes = dataset_size(path)
        assert got_n == n == len(ds)
        assert arrays < nbytes < arrays + 16 * 2**10     # + the metadata string (a few KiB)


@pytest.mark.parametrize("argv,fragment", [
    ("train --data {folder} --model mlp --out run", "for edgebm train --model mlp, which holds the whole dataset in memory"),
    ("train --data {folder} --model teacher --out run --distil-from r", "for edgebm train --model teacher"),
    ("evaluate {bundle} --data {folder}", "for edgebm evaluate"),
])
def test_dataset_too_big_for_memory_refused_before_reading(argv, fragment, folder, toy_bundle, tmp_path, monkeypatch, capsys):
    """Training and evaluation hold the whole dataset in memory: a folder that will not fit is refused from its index
    and shard 0's headers, before any shard is read (shard 2 is corrupt here and is never reached)."""
    import shutil

    import edgebm.data.npz as npz
    from edgebm.data.shards import dataset_size
    from edgebm.pipeline.train_job import MEMORY_FACTOR

    big = tmp_path / "big"
    shutil.copytree(folder, big)
    (big / "shard-00002.npz").write_bytes(b"corrupt")
    n, nbytes = dataset_size(big)
    # available memory between what the dataset takes and what the job needs: only the job's factor refuses it
    monkeypatch.setattr(npz, "available_memory_bytes", lambda: 3 * nbytes)
    monkeypatch.chdir(tmp_path)
    assert MEMORY_FACTOR["mlp"] > 3
    rc = main(argv.format(folder=big, bundle=toy_bundle.bundle_dir).split())
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"--data: {big}: 60 samples (" in err[0] and fragment in err[0] and "is available now" in err[0]
    assert sorted(os.listdir(tmp_path)) == ["big"]
    # with enough memory the same command gets past the check and reaches the corrupt shard
    monkeypatch.setattr(npz, "available_memory_bytes", lambda: 10**15)
    assert main(argv.format(folder=big, bundle=toy_bundle.bundle_dir).split()) == 2
    assert "shard-00002.npz" in capsys.readouterr().err
