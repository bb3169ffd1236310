"""Scale-out (edgebm.parallel, --ray): executors return results in input order and the same results as a serial
run; sharded generation writes the same bytes with and without Ray; without --ray nothing imports Ray; bad
--ray values and a missing Ray are one line, exit 2. The Ray tests run when the edgebm[ray] extra is installed
and are skipped with the reason otherwise (one local Ray runtime, 2 CPUs, shared by the module)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data import ShardSpec, write_shards
from edgebm.errors import ConfigError
from edgebm.parallel import (ProcessExecutor, Resources, SerialExecutor, make_executor, parse_ray_address,
                             ray_available, thread_limit)
from edgebm.sim import RandomScenario, ScenarioConfig

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:       # bench/ is a checkout package next to tests/
    sys.path.insert(0, str(ROOT))
needs_ray = pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install -e '.[ray]')")

RAND = ShardSpec(RandomScenario(cities=5, snr_db=(0.0, 30.0)), n_samples=450, seed=11, shards=3)
TRAJ = ShardSpec(ScenarioConfig(city="city1"), n_samples=0, seed=3, shards=2, trajectories=(4, 6, 0.05))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _slow_square(x: int) -> int:
    time.sleep(0.05 * (3 - x % 4))      # later items finish first
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ConfigError("item", f"{x} is odd enough to fail", "anything but 3")
    return x


def _threads_seen(_: int) -> tuple[int, str]:
    import os

    import torch

    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS", "")


# ------------------------------------------------------------------------------------------------- without Ray
def test_nothing_imports_ray_without_the_flag(tmp_path):
    """The CLI, the executors, the export pipeline with its scale-out modules and bench's entry point never import
    Ray unless --ray is given."""
    code = (
        "import sys\n"
        "from edgebm.cli import main\n"
        f"rc = main(['data', 'generate', '--samples', '40', '--shards', '2', '--out', r'{tmp_path / 'd'}'])\n"
        f"rc += main(['data', 'generate', '--samples', '40', '--shards', '2', '--workers', '2', '--out', r'{tmp_path / 'w'}'])\n"
        f"rc += main(['export', '--profile', 'smartphone', '--search', 'tune', '--out', r'{tmp_path / 'b'}']) - 2\n"
        "import bench.__main__, edgebm.parallel, edgebm.search_tune, edgebm.candidate_fanout, edgebm.pipeline\n"
        "print(rc, 'ray' in sys.modules, sorted(m for m in sys.modules if m.startswith('ray.'))[:3])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 False []"
    assert _digests(tmp_path / "d") == _digests(tmp_path / "w")


@pytest.mark.parametrize("text", ["local", "auto", "10.0.0.5:6379", "ray://head.example:10001", "[::1]:6379"])
def test_ray_address_accepted(text):
    assert parse_ray_address(text) == text


@pytest.mark.parametrize("text", ["accuracy", "", "http://x", "host", "host:port", "a b:1"])
def test_ray_address_refused(text):
    with pytest.raises(ConfigError, match="--ray"):
        parse_ray_address(text)


@pytest.mark.parametrize("argv, needle", [
    (["--shards", "2", "--ray", "nowhere"], "--ray"),                      # not an address
    (["--ray", "local"], "--ray: parallel generation needs --shards"),    # no shards
    (["--shards", "2", "--workers", "2", "--ray", "local"], "--workers"),  # both
])
def test_cli_ray_flag_errors(tmp_path, capsys, argv, needle):
    rc = main(["data", "generate", "--samples", "20", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_missing_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)        # import ray -> ImportError, as without the extra
    with pytest.raises(ConfigError, match=r"--ray: Ray is not installed; install the extra: pip install 'edgebm\[ray\]'"):
        make_executor(ray="local")
    rc = main(["data", "generate", "--samples", "20", "--shards", "2", "--ray", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "edgebm[ray]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_serial_and_process_executors_keep_input_order():
    with SerialExecutor() as ex:
        assert ex.map(_slow_square, range(6)) == [x * x for x in range(6)]
    with ProcessExecutor(2) as ex:
        assert ex.map(_slow_square, range(6)) == [x * x for x in range(6)]
        with pytest.raises(ConfigError, match="odd enough"):
            ex.map(_fail_on_three, range(6))


def test_thread_limit_applies_and_restores():
    import os

    import torch

    before = torch.get_num_threads()
    with SerialExecutor(threads=1) as ex:
        assert ex.map(_threads_seen, [0]) == [(1, "1")]
    assert torch.get_num_threads() == before and os.environ.get("OMP_NUM_THREADS") != "1" or before == 1
    with thread_limit(1):
        assert torch.get_num_threads() == 1


def test_resources_validated():
    with pytest.raises(ConfigError, match="resources.cpus"):
        Resources(cpus=0)
    with pytest.raises(ConfigError, match="resources.gpus"):
        Resources(gpus=-1)


@needs_ray
def test_unreachable_cluster_is_one_line(tmp_path, capsys):
    """Checked before ray.init, which retries an unreachable address for minutes (runs before the module's runtime
    starts)."""
    rc = main(["data", "generate", "--samples", "20", "--shards", "2", "--ray", "127.0.0.1:9", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--ray: could not join Ray at '127.0.0.1:9'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------- with Ray
@pytest.fixture(scope="module")
def ray_runtime():
    """One local Ray runtime (2 CPUs) for the module; executors made with --ray local reuse it."""
    if not ray_available():
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    import ray

    import os

    # the workers import this test module by name (its helper functions are pickled by reference)
    path = os.pathsep.join([str(ROOT / "tests"), str(ROOT)])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@needs_ray
@pytest.mark.parametrize("spec", [RAND, TRAJ], ids=["random-cities", "trajectories"])
def test_shards_same_bytes_with_and_without_ray(ray_runtime, tmp_path, spec):
    serial = write_shards(spec, tmp_path / "serial")
    with make_executor(ray="local") as ex:
        assert ex.name == "ray"
        on_ray = write_shards(spec, tmp_path / "ray", executor=ex)
    assert _digests(serial) == _digests(on_ray) and len(_digests(serial)) == spec.shards + 1
    assert ray_runtime.is_initialized()          # a runtime the executor did not start is left running


@needs_ray
def test_cli_generate_with_ray_matches_serial(ray_runtime, tmp_path, capsys):
    base = ["data", "generate", "--scenario", "random", "--cities", "4", "--samples", "120", "--seed", "5", "--shards", "4"]
    assert main(base + ["--out", str(tmp_path / "s")]) == 0
    assert main(base + ["--ray", "--out", str(tmp_path / "r")]) == 0
    cap = capsys.readouterr()
    assert "on ray (local Ray runtime: 2 CPU(s))" in cap.out + cap.err
    assert _digests(tmp_path / "s") == _digests(tmp_path / "r")
    assert main(["data", "info", str(tmp_path / "r")]) == 0


@needs_ray
def test_ray_executor_order_errors_and_threads(ray_runtime):
    with make_executor(ray="local") as ex:
        assert ex.map(_slow_square, range(8)) == [x * x for x in range(8)]
        with pytest.raises(ConfigError, match="odd enough") as e:     # the task's own exception, not a RayTaskError
            ex.map(_fail_on_three, range(6))
        assert type(e.value) is ConfigError
        assert ex.map(_threads_seen, [0, 1]) == [(1, "1"), (1, "1")]


@needs_ray
def test_bench_accuracy_same_results_on_ray(ray_runtime, serial_accuracy_digest, tmp_path):
    with make_executor(ray="local") as ex:
        assert _accuracy_digest(tmp_path, ex) == serial_accuracy_digest


@needs_ray
def test_ray_task_options(ray_runtime):
    with make_executor(ray="local") as ex:
        assert ex.options(Resources(cpus=1)) == {"num_cpus": 1.0, "max_retries": 2}
        assert ex.options(Resources(cpus=8))["num_cpus"] == 2.0            # capped at the cluster's CPUs
        assert "num_gpus" not in ex.options(Resources(cpus=1, gpus=1))    # CPU-only runtime: no GPU request
        ex._gpus = 1.0                                                    # as on a node with one GPU
        assert ex.options(Resources(cpus=1, gpus=0.5))["num_gpus"] == 0.5


# ------------------------------------------------------------------------------------------------- bench fan-out
def _tiny_accuracy_sizes():
    from bench.accuracy import Sizes

    return Sizes(set_as=(64,), snrs=(20.0,), cities=("city0", "city1"), n_samples=300, epochs=1, batch_size=64,
                 upsample=8, gru_runs=((0.2, 30, 12),), gru_epochs=1, gru_set_a=64, labels=("teacher", "mlp (KD)", "tree"))


def _accuracy_digest(tmp_path: Path, executor) -> str:
    import re

    from bench import accuracy

    text = accuracy.run(quick=True, out_dir=tmp_path, executor=executor, sizes=_tiny_accuracy_sizes())
    assert "Failures" not in text
    return re.search(r"results digest [^`]*`([0-9a-f]{64})`", text).group(1)


@pytest.fixture(scope="module")
def serial_accuracy_digest(tmp_path_factory):
    with SerialExecutor() as ex:
        return _accuracy_digest(tmp_path_factory.mktemp("acc-serial"), ex)


def test_bench_accuracy_same_results_on_processes(serial_accuracy_digest, tmp_path):
    with ProcessExecutor(2) as ex:
        assert _accuracy_digest(tmp_path, ex) == serial_accuracy_digest


# ------------------------------------------------------------------------------------------------- export on Ray
def _candidate_table(res) -> list:
    """Every candidate's name, error and validation scores (bytes): what the recipe built and measured."""
    return [(c.name, c.error, None if c.val is None else (c.val.top1, c.val.hits.tobytes(), c.val.scores.tobytes()))
            for c in res.candidates]


def test_export_search_tune_needs_ray(tmp_path, capsys, monkeypatch):
    """--search tune without --ray, --tune-trials without --search tune, and --search tune without Ray are one line
    each, exit 2, before any simulation or training; nothing written."""
    out = str(tmp_path / "b")
    for argv, needle in [(["--search", "tune"], "--search tune: needs --ray"),
                         (["--tune-trials", "4"], "--tune-trials: only with --search tune"),
                         (["--search", "tune", "--tune-trials", "1", "--ray"], "--tune-trials")]:
        rc = main(["export", "--profile", "smartphone", "--out", out, *argv])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
    monkeypatch.setitem(sys.modules, "ray", None)        # as without the extra
    rc = main(["export", "--profile", "smartphone", "--out", out, "--ray", "--search", "tune"])
    err = capsys.readouterr().err
    assert rc == 2 and "--ray: Ray is not installed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_ratio_grid_and_tune_check(monkeypatch):
    from edgebm.search_tune import check_tune, ratio_grid

    g = ratio_grid(6, 0.97)
    keep = 1 - np.array(g)
    assert g[0] == 0.0 and g[-1] == 0.97 and len(g) == 6
    assert np.allclose(keep[1:] / keep[:-1], keep[1] / keep[0], rtol=1e-3)   # each step keeps the same fraction
    with pytest.raises(ConfigError, match="--tune-trials"):
        ratio_grid(1)
    monkeypatch.setitem(sys.modules, "ray.tune", None)   # Ray without its Tune dependencies
    with pytest.raises(ConfigError, match=r"--search: tune needs Ray Tune.*edgebm\[ray\]"):
        check_tune()


def _fp32_only(prof):
    """``prof`` with fp32 only and no accelerator / ORT-format targets (fewer graphs to build in a test)."""
    import dataclasses

    return dataclasses.replace(prof, precision=dataclasses.replace(prof.precision, allowed=("fp32",), preferred="fp32"),
                               compute=dataclasses.replace(prof.compute, ort_mobile=False, accelerator="none"))


@needs_ray
def test_export_students_on_ray_same_candidates(ray_runtime, tmp_path):
    """Two profiles sharing the teacher and their students: on Ray each student is one task (two tasks, not four)
    and every candidate, the choice, the held-out metrics and the model / head / codebook bytes equal the serial
    run's."""
    from edgebm.pipeline import export_profiles
    from edgebm.train import TrainConfig
    from tests.conftest import lean_profile, make_toy_dataset

    ds = make_toy_dataset(500)
    profs = [_fp32_only(lean_profile("smartphone", prune=False)), _fp32_only(lean_profile("fwa", prune=False))]
    kw = dict(train_cfg=TrainConfig(epochs=2, seed=0), families=["mlp", "dscnn"], latency_runs=20, named_cities=False)
    serial = export_profiles(profs, ds, tmp_path / "serial", **kw)
    seen: list[str] = []
    with make_executor(ray="local") as ex:
        on_ray = export_profiles(profs, ds, tmp_path / "ray", executor=ex, progress=lambda st, d, t, det="": seen.append(det), **kw)
    assert any(s.startswith("2 students as tasks on ray") for s in seen)
    for name, s in serial.items():
        r = on_ray[name]
        assert _candidate_table(s) == _candidate_table(r) and s.chosen.name == r.chosen.name
        assert s.metrics == r.metrics and s.manifest["lineage"] == r.manifest["lineage"]
        for f in ("model.onnx", "head.npz", "codebook.npz"):
            assert (s.bundle_dir / f).read_bytes() == (r.bundle_dir / f).read_bytes(), (name, f)


@needs_ray
def test_cli_export_search_tune_trial_table(ray_runtime, tmp_path, capsys):
    """edgebm export --ray --search tune: a profile whose unpruned MLP breaks max_params; the Tune trials over the
    ratio grid are infeasible below the budget (gate fail, not trained) and fine-tuned above it under ASHA; the
    trial table is in the manifest and budget.md, and the ratio it keeps becomes a candidate with the trial's
    validation top-1 (the refit is the same computation as the trial)."""
    import json

    from edgebm.data import save_dataset
    from edgebm.search_tune import ratio_grid
    from tests.conftest import make_toy_dataset

    toml = (ROOT / "profiles" / "smartphone.toml").read_text()
    for a, b in [("max_params = 500000", "max_params = 6000"), ('teacher = "pretrained"', 'teacher = "none"'),
                 ('allowed = ["fp32", "fp16", "int8"]', 'allowed = ["fp32"]'), ('preferred = "int8"', 'preferred = "fp32"'),
                 ("ort_mobile = true", "ort_mobile = false"), ('accelerator = "nnapi"', 'accelerator = "none"')]:
        assert a in toml
        toml = toml.replace(a, b)   # the unpruned MLP breaks max_params; fp32 only, no teacher: fewer graphs to build
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "smartphone.toml").write_text(toml + "\nfinetune_epochs = 3\n")   # in [recipe]
    save_dataset(make_toy_dataset(500), tmp_path / "toy.npz")
    rc = main(["export", "--profile", str(tmp_path / "p" / "smartphone.toml"), "--data", str(tmp_path / "toy.npz"), "--epochs", "3",
               "--families", "mlp", "--force", "--ray", "--search", "tune", "--tune-trials", "4", "--out", str(tmp_path / "b")])
    cap = capsys.readouterr()
    assert rc in (0, 3), cap.err
    assert "students and Tune trials on ray (local Ray runtime: 2 CPU(s))" in cap.out
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (entry,) = [e for e in man["recipe"]["prune_search"] if e.get("search") == "ray_tune"]
    trials = entry["trials"]
    assert [t["ratio"] for t in trials] == ratio_grid(4) and entry["scheduler"]["name"] == "ASHA"
    assert trials[0]["gate"] == "fail" and "params" in trials[0]["why"] and trials[0]["epochs_run"] == 0   # the constraint
    assert all(t["params"] <= 6000 for t in trials if t["gate"] == "pass")
    assert all(t["top1_val"] is None for t in trials if t["gate"] == "fail")
    ran = [t for t in trials if t["gate"] == "pass"]
    assert ran and all(1 <= t["epochs_run"] <= 3 for t in ran)
    assert all(t["epochs_run"] < 3 for t in ran if t["stopped_by_asha"])
    assert any(not t["stopped_by_asha"] and t["epochs_run"] == 3 for t in ran)     # the best always runs to the end
    assert entry["chosen"] and all(r["top1_val_candidate"] == r["top1_val_trial"] for r in entry["refit"])
    names = [c["candidate"] for c in man["candidates"]]
    assert all(any(n.startswith(r["model"] + " ") for n in names) for r in entry["refit"])
    md = (tmp_path / "b" / "budget.md").read_text()
    assert "## Pruning-ratio search: Ray Tune with ASHA" in md
    assert sum(line.startswith(f"| {t['trial']} |") for t in trials for line in md.splitlines()) == len(trials)
