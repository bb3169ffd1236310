"""Issue 10: never destroy user files, never read or write outside a bundle, refuse tampered bundles,
one line and exit 2 for every bad input.

Bad bundles are built by copying the session's small real bundle (``toy_bundle``) and editing it —
never by exporting again per case. ``_rewrite`` plays an attacker who also fixes the sha256 and the
manifest digest, so each case reaches the check it is about.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from edgebm.atomic import ScratchDir, atomic_write_text, clean_stale_siblings
from edgebm.cli import main
from edgebm.data import save_dataset
from edgebm.errors import BundleError, ConfigError, InputError, ProfileError
from edgebm.numerics import softmax
from edgebm.profiles import load_profile, parse_profile, tomllib
from edgebm.runtime import BundleWarning, HeadAdapter, Predictor, manifest_digest, open_bundle, write_bundle
from tests.conftest import make_toy_dataset

REPO = Path(__file__).resolve().parents[1]
try:
    import cryptography  # noqa: F401

    HAS_CRYPTO = True
except ImportError:
    HAS_CRYPTO = False
needs_crypto = pytest.mark.skipif(not HAS_CRYPTO, reason="signing needs edgebm[sign] (the test extra installs cryptography)")


# ---------------------------------------------------------------------------------------------- helpers
def _copy(toy_bundle, tmp_path: Path, name: str = "b") -> Path:
    dst = tmp_path / name
    shutil.copytree(toy_bundle.bundle_dir, dst)
    return dst


def _rewrite(b: Path, edit: Callable[[dict], Any], rehash: tuple[str, ...] = (), digest: bool = True) -> None:
    """Edit manifest.json in place; re-hash the named files and the digest as an attacker without the key would."""
    m = json.loads((b / "manifest.json").read_text())
    edit(m)
    for name in rehash:
        m["files"][name] = hashlib.sha256((b / name).read_bytes()).hexdigest()
    if digest:
        m["bundle_digest"] = manifest_digest(m)
    (b / "manifest.json").write_text(json.dumps(m, indent=2))


def _copy_writers(src: Path) -> dict[str, Callable[[Path], Any]]:
    """write_bundle writers that copy every listed file of bundle ``src``."""
    names = json.loads((src / "manifest.json").read_text())["files"]
    return {n: (lambda p, n=n: p.write_bytes((src / n).read_bytes())) for n in names}


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of everything under ``root`` (detects any write, deletion or creation)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _not_writable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: chmod 0555 for a normal user; root ignores permission
    bits, so as root use /sys (sysfs refuses new files even to root); skip if neither works here."""
    if os.geteuid() != 0:
        ro = tmp_path / "readonly"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    try:
        fd = os.open("/sys/edgebm-probe", os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError:
        return Path("/sys")
    os.close(fd)
    os.unlink("/sys/edgebm-probe")
    pytest.skip("running as root with a writable /sys: no read-only folder available")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def play(tmp_path_factory, toy_bundle) -> dict[str, Path]:
    """Input files for the CLI table: profile variants, small datasets, a user folder, a plain file, keys."""
    d = tmp_path_factory.mktemp("play")
    src = Path(load_profile("smartphone").source).read_text()

    def profile(name: str, *edits: tuple[str, str], file: str | None = None) -> Path:
        text = src.replace('name = "smartphone"', f'name = "{name}"')
        for a, b in edits:
            assert a in text, a
            text = text.replace(a, b)
        p = d / f"{file or name}.toml"
        p.write_text(text)
        return p

    files = {
        "ssb7": profile("ssb7", ("ssb_period_ms = 20 ", "ssb_period_ms = 7 ")),
        "gru_only": profile("gru_only", ('families = ["mlp", "dscnn", "sgd"]', 'families = ["gru"]')),
        "mflops_inf": profile("mflops_inf", ("max_mflops = 10.0", "max_mflops = inf")),
        "cycle_inf": profile("cycle_inf", ("beam_cycle_ms = 20 ", "beam_cycle_ms = inf ")),
        "name_empty": profile("", file="name_empty"),
        "name_escape": profile("../../escaped", file="name_escape"),
        "name_mismatch": profile("other", file="name_mismatch"),
        "userdir": d / "userdir",
        "afile": d / "afile.txt",
        "bundle": toy_bundle.bundle_dir,
        "model": toy_bundle.bundle_dir / "model.onnx",
    }
    (d / "userdir" / "sub").mkdir(parents=True)
    (d / "userdir" / "notes.txt").write_text("my notes\n")
    (d / "userdir" / "sub" / "thesis.tex").write_text("\\documentclass{article}\n")
    files["afile"].write_text("not a bundle\n")
    for n in (0, 1, 2, 10):
        files[f"n{n}"] = save_dataset(make_toy_dataset(n, seed=7), d / f"n{n}.npz")
    files["garbage_key"] = d / "garbage.pem"
    files["garbage_key"].write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    files["existing_key"] = d / "existing.pem"
    files["existing_key"].write_text("keep me\n")
    tampered = d / "tampered"
    shutil.copytree(toy_bundle.bundle_dir, tampered)
    _rewrite(tampered, lambda m: m["metrics_heldout"].update(top1=0.999), digest=False)
    files["tampered"] = tampered
    return files


# ---------------------------------------------------------------------------------------------- CLI table
# (case id, argv with {placeholders} from `play`, exit code, fragment of the one stderr line)
CLI_CASES = [
    ("ssb_period_7", "export --profile {ssb7}", 2, "key 'timing.ssb_period_ms': must be one of 5, 10, 20, 40, 80, 160, got 7"),
    ("families_not_exportable", "export --profile {gru_only}", 2, "models.families: gru: no family export can build"),
    ("max_mflops_inf", "export --profile {mflops_inf}", 2, "key 'limits.max_mflops': must be a finite number > 0, got inf"),
    ("beam_cycle_inf", "export --profile {cycle_inf}", 2, "key 'timing.beam_cycle_ms': must be a finite number > 0, got inf"),
    ("profile_name_empty", "export --profile {name_empty}", 2, "key 'name': '' is not a profile name"),
    ("profile_name_path", "export --profile {name_escape}", 2, "key 'name': '../../escaped' is not a profile name"),
    ("profile_name_vs_file", "export --profile {name_mismatch}", 2, "key 'name': 'other' does not match the file name 'name_mismatch.toml'"),
    ("profile_lookup_path", "export --profile ../../smartphone", 2, "unknown profile '../../smartphone'"),
    ("out_dot", "export --profile smartphone --out .", 2, "--out: . is the current folder or a folder above it"),
    ("out_is_file", "export --profile smartphone --out {afile}", 2, "is an existing file, not an edgebm bundle folder"),
    ("out_user_folder", "export --profile smartphone --out {userdir}", 2, "already holds files that are not an edgebm bundle (notes.txt, sub/, sub/thesis.tex)"),
    ("out_under_file", "export --profile smartphone --out {afile}/b", 2, "is a file, not a folder"),
    ("export_data_10", "export --profile smartphone --data {n10}", 2, "--data: 10 samples split 80/10/10 into train/val/test 8/1/1"),
    ("export_samples_10", "export --profile smartphone --samples 10", 2, "--samples: 10 samples split 80/10/10"),
    ("export_epochs_0", "export --profile smartphone --epochs 0", 2, "argument --epochs: must be an integer >= 1, got '0'"),
    ("export_seed_negative", "export --profile smartphone --seed -1", 2, "argument --seed: must be an integer in [0, 4294967295], got '-1'"),
    ("export_bad_families", "export --profile smartphone --families gbt", 2, "--families: families ['gbt'] are not allowed by profile 'smartphone'"),
    ("export_sign_key_garbage", "export --profile smartphone --sign-key {garbage_key}", 2, "--sign-key: "),
    ("export_sign_key_missing", "export --profile smartphone --sign-key nokey.pem", 2, "--sign-key: nokey.pem: no such key file"),
    ("train_0_samples", "train --data {n0} --model mlp --out run", 2, ""),
    ("train_1_sample", "train --data {n1} --model mlp --out run", 2, "--data: 1 samples split 80/10/10 into train/val/test 1/0/0"),
    ("train_2_samples", "train --data {n2} --model mlp --out run", 2, "--data: 2 samples split 80/10/10 into train/val/test 2/0/0"),
    ("train_out_user_folder", "train --data {n10} --model mlp --out {userdir}", 2, "not an edgebm run folder (notes.txt"),
    ("train_lr_nan", "train --data {n10} --model mlp --out run --lr nan", 2, "argument --lr: must be a finite number > 0, got 'nan'"),
    ("emulate_duration_nan", "emulate {bundle} --duration nan", 2, "argument --duration: must be a finite number > 0, got 'nan'"),
    ("emulate_duration_inf", "emulate {bundle} --duration inf", 2, "argument --duration: must be a finite number > 0, got 'inf'"),
    ("shift_at_soon", "emulate {bundle} --shift city:city2@soon", 2, "--shift: 'city:city2@soon': time 'soon' is not a number of seconds"),
    ("shift_at_nan", "emulate {bundle} --shift city:city2@nan", 2, "--shift: 'city:city2@nan': time nan s must be a finite number > 0"),
    ("shift_at_negative", "emulate {bundle} --shift city:city2@-5", 2, "--shift: 'city:city2@-5': time -5 s must be a finite number > 0"),
    ("shift_past_end", "emulate {bundle} --shift city:city2@100", 2, "--shift: city:city2@100 is outside the run (0, 10) s"),
    ("emulate_k_too_big", "emulate {bundle} --k 100", 2, "--k: 100 beams to refine, the bundle predicts only 64"),
    ("emulate_ues_0", "emulate {bundle} --ues 0", 2, "argument --ues: must be an integer >= 1, got '0'"),
    ("emulate_confidence_2", "emulate {bundle} --confidence 2", 2, "argument --confidence: must be a finite number in [0, 1], got '2'"),
    ("emulate_too_big", "emulate {bundle} --ues 100000 --duration 1000", 2, "--duration: 100000 UEs x 1000 s"),
    ("emulate_ssb_7", "emulate {bundle} --ssb-period 7", 2, "--ssb-period: must be one of 5, 10, 20, 40, 80, 160 ms, got 7.0"),
    ("emulate_out_user_folder", "emulate {bundle} --out {userdir}", 2, "not an edgebm emulator report"),
    ("emulate_edited_manifest", "emulate {tampered}", 2, "manifest.json was edited after export (bundle_digest mismatch)"),
    ("emulate_trusted_key_missing", "emulate {bundle} --trusted-key nokey.pub.pem", 2, "--trusted-key: nokey.pub.pem: no such key file"),
    ("check_runs_0", "check {model} --profile iot --runs 0", 2, "argument --runs: must be an integer in [1, 1000000], got '0'"),
    ("check_missing_model", "check nope.onnx --profile iot", 2, "model: nope.onnx: no such file"),
    ("evaluate_cycle_nan", "evaluate {bundle} --data {n10} --cycle-ms nan", 2, "argument --cycle-ms: must be a finite number > 0, got 'nan'"),
    ("keygen_existing", "keygen --out {existing_key}", 2, "already exists; choose a new file name"),
    ("sign_garbage_key", "sign {bundle} --key {garbage_key}", 2, "--key: "),
    ("no_command", "", 2, "the following arguments are required: COMMAND"),
    ("unknown_option", "export --profile smartphone --bogus 1", 2, "unrecognized arguments: --bogus 1"),
]


@pytest.mark.parametrize("case,argv,code,fragment", [pytest.param(*c, marks=needs_crypto if "key" in c[1] else ()) for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_bad_input_one_line_exit_2_nothing_written(case, argv, code, fragment, play, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    inputs = play["afile"].parent
    before, bundle_before = _tree(inputs), _tree(play["bundle"])
    args = [a.format(**play) for a in argv.split()]
    rc = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("edgebm: error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err
    assert _tree(inputs) == before and _tree(play["bundle"]) == bundle_before  # nothing written or touched
    assert list(cwd.iterdir()) == []


def test_read_only_output_folder_refused_before_training(play, tmp_path, monkeypatch, capsys):
    ro = _not_writable_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    rc = main(["export", "--profile", "smartphone", "--data", str(play["n10"]), "--out", str(ro / "bundle")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--out:" in err[0] and "cannot write in" in err[0]
    rc = main(["train", "--data", str(play["n10"]), "--model", "mlp", "--out", str(ro / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "cannot write in" in err[0]
    assert time.perf_counter() - t0 < 30  # refused up front, not after a training run


@needs_crypto
def test_emulate_trusted_key_unsigned_and_signed(toy_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--out", "k.pem"]) == 0
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600  # private key: never group/world readable
    capsys.readouterr()
    b = _copy(toy_bundle, tmp_path)
    assert main(["emulate", str(b), "--trusted-key", "k.pub.pem"]) == 2
    assert "bundle is not signed but trusted keys were given" in capsys.readouterr().err
    assert main(["sign", str(b), "--key", "k.pem"]) == 0
    capsys.readouterr()
    # the signature verifies; the run then stops at the next check (the toy bundle's city is not a simulator city)
    assert main(["emulate", str(b), "--trusted-key", "k.pub.pem"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the bundle's scenario is not one the simulator can run" in err[0]
    assert main(["verify", str(b), "--trusted-key", "k.pub.pem"]) == 0
    assert "verified" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- destructive
def test_user_folder_survives_export_and_write_bundle(play, tmp_path, capsys):
    user = tmp_path / "mine"
    shutil.copytree(play["userdir"], user)
    before = _tree(user)
    assert main(["export", "--profile", "smartphone", "--data", str(play["n10"]), "--out", str(user)]) == 2
    with pytest.raises(ConfigError, match="not an edgebm bundle"):
        write_bundle(user, {"a.txt": lambda p: p.write_text("x")}, {})
    assert _tree(user) == before
    assert (user / "notes.txt").read_text() == "my notes\n"


def test_existing_bundle_replaced_atomically_and_siblings_cleaned(toy_bundle, tmp_path):
    src = toy_bundle.bundle_dir
    man = Predictor(src).manifest
    out = _copy(toy_bundle, tmp_path, "out")
    # crash leftovers of a killed process (pid 2**22 + 1 is above Linux's pid_max default: never alive)
    dead = 2**22 + 1
    (tmp_path / f".out.tmp-{dead}-abc123").mkdir()
    (tmp_path / f".out.tmp-{dead}-abc123" / "model.onnx").write_bytes(b"partial")
    write_bundle(out, _copy_writers(src), {**man.to_dict(), "metrics_heldout": {"top1": 0.5}})  # a bundle replaces a bundle
    assert Predictor(out).manifest.metrics_heldout == {"top1": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # stale .tmp removed, no .old left
    # HeadAdapter.save writes a new version next to it, and may replace its own earlier save
    ad = HeadAdapter(Predictor(out))
    ad.update(np.full((4, 16), -80.0, np.float32), np.array([1, 2, 3, 4]))
    for _ in range(2):
        assert Predictor(ad.save(tmp_path / "v2")).manifest.head_version == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "v2"]


def test_crash_between_renames_restores_previous_version(toy_bundle, tmp_path, monkeypatch):
    out = _copy(toy_bundle, tmp_path, "out")
    before = _tree(out)
    man = Predictor(out).manifest.to_dict()
    real_rename = Path.rename
    calls = []

    def flaky(self, target):
        calls.append((self.name, Path(target).name))
        if len(calls) == 2:  # out -> .old succeeded, .tmp -> out fails
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(OSError):
        write_bundle(out, _copy_writers(toy_bundle.bundle_dir), {**man, "metrics_heldout": {}})
    monkeypatch.setattr(Path, "rename", real_rename)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # SIGKILL between the renames: only the siblings exist; the next run puts the old version back
    dead = 2**22 + 1
    real_rename(out, tmp_path / f".out.old-{dead}-aaaa")
    (tmp_path / f".out.tmp-{dead}-bbbb").mkdir()
    clean_stale_siblings(out)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_export_scratch_of_dead_process_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    dead = tmp_path / f"edgebm-export-{2**22 + 1}-zz9"
    dead.mkdir()
    alive = tmp_path / f"edgebm-export-{os.getpid()}-yy8"
    alive.mkdir()
    other = tmp_path / "edgebm-export-notmine"
    other.mkdir()
    with ScratchDir("edgebm-export") as d:
        assert d.is_dir() and d.name.startswith(f"edgebm-export-{os.getpid()}-")
    assert not dead.exists() and alive.exists() and other.exists() and not d.exists()


def test_outputs_follow_umask(toy_bundle, tmp_path):
    """mkdtemp/mkstemp create 0700/0600: outputs must get the modes a plain open()/mkdir() would."""
    old = os.umask(0o027)
    try:
        out = write_bundle(tmp_path / "b", _copy_writers(toy_bundle.bundle_dir), Predictor(toy_bundle.bundle_dir).manifest)
        atomic_write_text(tmp_path / "t.txt", "x")
        assert out.stat().st_mode & 0o777 == 0o750
        assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o640}
        assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------------- manifests
MANIFEST_CASES = [
    ("files_as_list", lambda b: _rewrite(b, lambda m: m.update(files=list(m["files"]))), "manifest field 'files': must be an object"),
    ("inputs_empty", lambda b: _rewrite(b, lambda m: m.update(inputs=[])), "manifest field 'inputs': must be a non-empty list"),
    ("score_output_bad", lambda b: _rewrite(b, lambda m: m.update(score_output="nope")), "manifest field 'score_output': 'nope' is not one of the outputs"),
    ("n_beams_a_string", lambda b: _rewrite(b, lambda m: m.update(n_beams_a="64")), "manifest field 'n_beams_a': must be an integer >= 1"),
    ("files_traversal", lambda b: _rewrite(b, lambda m: m["files"].update({"../../victim.txt": "0" * 64})), "'../../victim.txt' is not a file inside the bundle folder"),
    ("model_file_dotdot", lambda b: _rewrite(b, lambda m: m.update(model_file="../../x.onnx")), "manifest field 'model_file': '../../x.onnx' is not a file inside"),
    ("model_file_absolute", lambda b: _rewrite(b, lambda m: m.update(model_file=str(b / "model.onnx"))), "is not a file inside the bundle folder"),
    ("model_not_listed", lambda b: _rewrite(b, lambda m: m["files"].pop("model.onnx")), "manifest field 'model_file': 'model.onnx' is not listed in 'files'"),
    ("head_not_listed", lambda b: _rewrite(b, lambda m: m["files"].pop("head.npz")), "manifest field 'head_file': 'head.npz' is not listed in 'files'"),
    ("digest_removed", lambda b: _rewrite(b, lambda m: m.pop("bundle_digest"), digest=False), "manifest has no bundle_digest"),
    ("metric_edited", lambda b: _rewrite(b, lambda m: m["metrics_heldout"].update(top1=1.0), digest=False), "manifest.json was edited after export"),
    ("verdict_edited", lambda b: _rewrite(b, lambda m: m.update(verdict="pass", export_seconds=0), digest=False), "bundle_digest mismatch"),
    ("old_schema", lambda b: _rewrite(b, lambda m: m.update(schema="edgebm.bundle/1")), "written by an older edgebm: export it again"),
    ("junk_head", lambda b: ((b / "head.npz").write_bytes(b"PK\x03\x04junk"), _rewrite(b, lambda m: None, rehash=("head.npz",))), "'head.npz' is not a readable .npz"),
    ("head_wrong_shape", lambda b: ((b / "head.npz").write_bytes(_npz_bytes(W=np.zeros((3, 4), np.float32), b=np.zeros(3, np.float32))),
                                    _rewrite(b, lambda m: None, rehash=("head.npz",))), "head W must have shape (64, 256), got (3, 4)"),
    ("head_nan", lambda b: ((b / "head.npz").write_bytes(_npz_bytes(W=np.full((64, 256), np.nan, np.float32), b=np.zeros(64, np.float32))),
                            _rewrite(b, lambda m: None, rehash=("head.npz",))), "must be finite"),
    ("model_file_modified", lambda b: (b / "model.onnx").write_bytes(b"\x08\x07"), "'model.onnx' has been modified since export"),
    ("manifest_not_json", lambda b: (b / "manifest.json").write_text("{"), "manifest is not valid JSON"),
    ("feature_output_missing", lambda b: _rewrite(b, lambda m: m.pop("feature_output")), "manifest field 'head_file': a head file needs a feature_output"),
]


@pytest.mark.parametrize("case,make,fragment", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_malformed_or_tampered_bundle_refused(case, make, fragment, toy_bundle, tmp_path, capsys):
    b = _copy(toy_bundle, tmp_path)
    make(b)
    with pytest.raises(BundleError) as e:
        Predictor(b)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert main(["verify", str(b)]) == 2  # the same refusal through the CLI: one line, exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_traversal_manifest_never_writes_outside(toy_bundle, tmp_path):
    """A ``files`` entry ``../../victim.txt`` made HeadAdapter.save overwrite a file outside its folder."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    b = _copy(toy_bundle, tmp_path / "x" / "y")
    (b.parent / "victim.txt").write_text("attacker\n")
    _rewrite(b, lambda m: m["files"].update({"../../victim.txt": hashlib.sha256(b"attacker\n").hexdigest()}))
    with pytest.raises(BundleError, match="not a file inside the bundle folder"):
        Predictor(b)
    # a writer name that escapes is refused before anything is written
    with pytest.raises(BundleError, match="not a file inside the bundle folder"):
        write_bundle(tmp_path / "new", {"../victim.txt": lambda p: p.write_text("overwritten")}, {})
    assert victim.read_text() == "precious\n" and not (tmp_path / "new").exists()
    # save() writes only into a new folder outside the source bundle
    pred = Predictor(toy_bundle.bundle_dir)
    with pytest.raises(BundleError, match="inside the original bundle"):
        HeadAdapter(pred).save(toy_bundle.bundle_dir / "adapted")
    assert not (toy_bundle.bundle_dir / "adapted").exists()


def test_symlink_out_of_bundle_refused(toy_bundle, tmp_path):
    b = _copy(toy_bundle, tmp_path)
    outside = tmp_path / "outside.onnx"
    shutil.move(b / "model.onnx", outside)
    (b / "model.onnx").symlink_to(outside)  # same bytes, same sha256: only the location is wrong
    with pytest.raises(BundleError, match="leads outside the bundle folder"):
        Predictor(b)


def test_extra_files_reported_not_loaded(toy_bundle, tmp_path):
    b = _copy(toy_bundle, tmp_path)
    (b / "model.plan").write_bytes(b"unlisted engine")
    (b / "notes.txt").write_text("hi")
    with pytest.warns(BundleWarning, match="ignoring 2 file"):
        pred = Predictor(b)
    assert pred.extra_files == ("model.plan", "notes.txt")
    with pytest.raises(BundleError, match="not listed in the manifest"):
        pred.bundle.read_bytes("model.plan")


def test_swapped_model_with_wrong_outputs_refused(toy_bundle, tmp_path):
    """A different valid ONNX model, re-hashed: loads in onnxruntime but does not expose the manifest's outputs."""
    import onnx
    from onnx import TensorProto, helper

    b = _copy(toy_bundle, tmp_path)
    g = helper.make_graph([helper.make_node("Identity", ["rsrp_b"], ["y"])], "g",
                          [helper.make_tensor_value_info("rsrp_b", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(b / "model.onnx"))
    _rewrite(b, lambda m: None, rehash=("model.onnx",))
    with pytest.raises(BundleError, match="do not match the manifest"):
        Predictor(b)
    # same names, other widths (the swap that made emulate crash with a matmul traceback)
    g = helper.make_graph([helper.make_node("Identity", ["rsrp_b"], ["logits"]), helper.make_node("Identity", ["rsrp_b"], ["features"])],
                          "g", [helper.make_tensor_value_info("rsrp_b", TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 16]),
                           helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 16])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(b / "model.onnx"))
    _rewrite(b, lambda m: None, rehash=("model.onnx",))
    with pytest.raises(BundleError, match="model tensor 'logits' has width 16, the manifest says 64"):
        Predictor(b)


# ---------------------------------------------------------------------------------------------- signatures
def _keys(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from edgebm.runtime.signing import generate_keypair

    return generate_keypair(tmp_path / f"{name}.pem")


@needs_crypto
def test_signed_bundle_swapped_model_rehashed_refused(toy_bundle, tmp_path):
    import onnx

    from edgebm.runtime import sign_bundle

    priv, pub = _keys(tmp_path, "vendor")
    b = _copy(toy_bundle, tmp_path)
    sign_bundle(b, priv)
    assert Predictor(b, trusted_keys=[pub]).bundle.signed_by  # signed and verified
    # attacker swaps in another valid model (first weight tensor zeroed) and fixes its sha256 and the digest
    model = onnx.load(str(b / "model.onnx"))
    init = next(t for t in model.graph.initializer if t.raw_data)
    init.raw_data = bytes(len(init.raw_data))
    onnx.save(model, str(b / "model.onnx"))
    _rewrite(b, lambda m: None, rehash=("model.onnx",))
    Predictor(b)  # without keys a re-hashed swap loads: this is what the hash alone cannot stop
    with pytest.raises(BundleError, match="does not match the bundle"):
        Predictor(b, trusted_keys=[pub])
    # ... and re-signing with the attacker's own key does not help
    apriv, _ = _keys(tmp_path, "attacker")
    sign_bundle(b, apriv)
    with pytest.raises(BundleError, match="not among the trusted keys"):
        Predictor(b, trusted_keys=[pub])


@needs_crypto
def test_unsigned_refused_when_keys_given_and_key_formats(toy_bundle, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from edgebm.runtime.signing import load_public_key

    _, pub = _keys(tmp_path, "k")
    b = _copy(toy_bundle, tmp_path)
    with pytest.raises(BundleError, match="not signed"):
        Predictor(b, trusted_keys=[pub])
    key = load_public_key(pub)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for form in (str(pub), pub.read_bytes(), raw, key):
        assert load_public_key(form).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw
    with pytest.raises(ConfigError, match="cannot use a int"):
        load_public_key(3)


@needs_crypto
def test_export_sign_key_end_to_end(play, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    priv, pub = _keys(tmp_path, "k")
    data = save_dataset(make_toy_dataset(300, seed=2), tmp_path / "d.npz")
    # fwa: no on-device update and no accelerator line, so a small MLP passes on the toy data
    rc = main(["export", "--profile", "fwa", "--data", str(data), "--out", "b", "--families", "mlp", "--sign-key", str(priv)])
    assert rc == 0, capsys.readouterr().err
    pred = Predictor(tmp_path / "b", trusted_keys=[pub])
    assert pred.manifest.signature["key_id"] == pred.bundle.signed_by
    # re-exporting replaces the bundle (it is ours); the signature is fresh
    assert main(["export", "--profile", "fwa", "--data", str(data), "--out", "b", "--families", "mlp"]) == 0
    assert Predictor(tmp_path / "b").manifest.signature is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "d.npz", "k.pem", "k.pub.pem"]


def test_runtime_loads_unsigned_bundle_without_cryptography(toy_bundle):
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from edgebm.runtime import Predictor\n"
        f"p = Predictor({str(toy_bundle.bundle_dir)!r})\n"
        "try:\n"
        f"    Predictor({str(toy_bundle.bundle_dir)!r}, trusted_keys=['k.pub.pem'])\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert "ConfigError signing: bundle signatures need the optional 'cryptography' package; pip install 'edgebm[sign]'" in out


# ---------------------------------------------------------------------------------------------- runtime inputs
X = np.full((2, 16), -80.0, np.float32)
RUNTIME_CASES = [
    ("empty_batch", lambda p: p.predict(np.zeros((0, 16))), "rsrp_b is an empty batch"),
    ("ragged_list", lambda p: p.predict([[-80.0] * 16, [-80.0] * 15]), "rsrp_b: cannot be read as a numeric array"),
    ("bool_input", lambda p: p.predict(np.ones(16, bool)), "rsrp_b: must be numeric, got dtype bool"),
    ("k_float", lambda p: p.predict(X, k=2.5), "k must be an integer in [1, 64] (beams to return), got 2.5"),
    ("k_bool", lambda p: p.predict(X, k=True), "got True"),
    ("k_zero", lambda p: p.predict(X, k=0), "got 0"),
    ("k_too_big", lambda p: p.predict(X, k=65), "got 65"),
    ("set_head_list_wrong_shape", lambda p: p.set_head([[1.0, 2.0]], [0.0]), "head W must have shape (64, 256), got (1, 2)"),
    ("set_head_nan", lambda p: p.set_head(np.full((64, 256), np.nan), np.zeros(64)), "must be finite"),
    ("set_head_strings", lambda p: p.set_head("W", "b"), "head W: must be numeric"),
    ("beam_direction_negative", lambda p: p.beam_direction(-1), "beam must be integer Set A indices in [0, 64), got -1"),
    ("beam_direction_too_big", lambda p: p.beam_direction(64), "got 64"),
    ("beam_direction_float", lambda p: p.beam_direction(1.5), "got 1.5"),
    ("labels_fractional", lambda p: p.check_labels([1.5, 2.0]), "labels must be whole numbers (a float label would be truncated)"),
    ("labels_huge", lambda p: p.check_labels([2**70]), "labels: must be numeric, got dtype object"),
    ("labels_negative", lambda p: p.check_labels([-1]), "labels out of range [-1, -1]"),
    ("adapter_float_labels", lambda p: HeadAdapter(p).update(X, np.array([0.5, 3.7])), "labels must be whole numbers"),
    ("threads_zero", lambda p: Predictor(p.bundle_dir, threads=0), "threads must be an integer >= 1"),
]


@pytest.mark.parametrize("case,call,fragment", RUNTIME_CASES, ids=[c[0] for c in RUNTIME_CASES])
def test_runtime_bad_inputs(case, call, fragment, toy_bundle):
    pred = Predictor(toy_bundle.bundle_dir)
    with pytest.raises(InputError) as e:
        call(pred)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_runtime_good_inputs_still_work(toy_bundle):
    pred = Predictor(toy_bundle.bundle_dir)
    w, b = pred.head
    pred.set_head(w.tolist(), b.tolist())  # array-likes are converted, not refused
    beams, _ = pred.predict(X.tolist(), k=np.int64(2))
    assert beams.shape == (2, 2)
    np.testing.assert_array_equal(pred.check_labels(np.array([3.0, 4.0])), [3, 4])  # whole-number floats are fine
    az, el = pred.beam_direction(np.array([0, 63]))
    assert az.shape == (2,) and np.isfinite(el).all()


def test_codebook_nan_angles_refused(toy_bundle, tmp_path):
    b = _copy(toy_bundle, tmp_path)
    with np.load(b / "codebook.npz") as z:
        cb = {k: z[k] for k in z.files}
    cb["cb_a_az"] = cb["cb_a_az"].astype(np.float32)
    cb["cb_a_az"][3] = np.nan
    (b / "codebook.npz").write_bytes(_npz_bytes(**cb))
    _rewrite(b, lambda m: None, rehash=("codebook.npz",))
    with pytest.raises(BundleError, match="'cb_a_az' must be 64 finite angles"):
        Predictor(b).beam_direction(0)


# ---------------------------------------------------------------------------------------------- profiles, emulator config
@pytest.mark.parametrize("name", ["", "../../escaped", "Smartphone", "a/b", "x" * 65, "1phone", "with space"])
def test_profile_name_must_be_identifier(name):
    d = tomllib.loads(Path(load_profile("smartphone").source).read_text())
    d["name"] = name
    with pytest.raises(ProfileError, match="key 'name'") as e:
        parse_profile(d, "p.toml")
    assert isinstance(e.value, ConfigError) and e.value.field == "name" and e.value.where == "p.toml"


@pytest.mark.parametrize("section,key,value", [("limits", "max_mflops", float("inf")), ("timing", "beam_cycle_ms", float("inf")),
                                               ("timing", "inference_budget_ms", float("nan")), ("compute", "slowdown_vs_host", float("inf"))])
def test_profile_non_finite_refused(section, key, value):
    d = tomllib.loads(Path(load_profile("smartphone").source).read_text())
    d[section][key] = value
    with pytest.raises(ConfigError, match=f"key '{section}.{key}': must be a finite number > 0"):
        parse_profile(d, "p.toml")


def test_emulator_config_fields_named():
    from edgebm.emulator import EmulatorConfig, EmulatorError
    from edgebm.emulator.loop import Shift

    for kw, field in [({"duration_s": float("nan")}, "duration_s"), ({"n_ues": True}, "n_ues"), ({"k_refine": 0}, "k_refine"),
                      ({"confidence": 1.5}, "confidence"), ({"deadline_ms": float("inf")}, "deadline_ms"), ({"seed": -1}, "seed"),
                      ({"shifts": (Shift("city", "city2", 10.0),)}, "shifts"), ({"max_labels": -1}, "max_labels")]:
        with pytest.raises(EmulatorError) as e:
            EmulatorConfig(**kw)
        assert isinstance(e.value, ConfigError) and e.value.field == field


def test_one_softmax_stable_and_shared(toy_bundle):
    z = np.array([[1000.0, 0.0, -1000.0], [-np.inf, 0.0, -np.inf]], np.float32)
    p = softmax(z)
    assert p.dtype == np.float32 and np.allclose(p, [[1, 0, 0], [0, 1, 0]])
    pred = Predictor(toy_bundle.bundle_dir)
    scores = pred.decision_scores(X)
    np.testing.assert_allclose(pred.predict_proba(X), softmax(scores), rtol=1e-6)


def test_sigterm_one_message_exit_143_temp_cleaned(tmp_path):
    """SIGTERM during training: one message, exit 143, no scratch folder, no half-written bundle."""
    data = save_dataset(make_toy_dataset(600, seed=1), tmp_path / "d.npz")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "edgebm.cli", "export", "--profile", "smartphone", "--data", str(data),
                             "--out", "b", "--families", "mlp", "--epochs", "500"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    scratch = []
    deadline = time.monotonic() + 120
    while not scratch and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        scratch = list(tmp_path.glob(f"edgebm-export-{proc.pid}-*"))
    assert scratch, "export never reached training"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "edgebm: terminated (SIGTERM); temp files removed, nothing half-written left behind"
    assert "Traceback" not in err
    assert not scratch[0].exists()
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*")) and not list(tmp_path.glob("edgebm-*"))
