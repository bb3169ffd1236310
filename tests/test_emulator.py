import json

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data.simulated import generate_dataset
from edgebm.emulator import EmulatorConfig, EmulatorError, parse_shift, run_emulator, write_report
from edgebm.sim import ScenarioConfig


@pytest.fixture(scope="module")
def sim_bundle(tmp_path_factory):
    from edgebm.pipeline import export_for_profile
    from edgebm.train import TrainConfig

    ds = generate_dataset(ScenarioConfig(), n_samples=3000, seed=1)
    out = tmp_path_factory.mktemp("emu") / "smartphone"
    from tests.conftest import lean_profile

    export_for_profile(lean_profile("smartphone"), ds, out, train_cfg=TrainConfig(epochs=6, seed=0), latency_runs=50)
    return out


def test_parse_shift():
    assert parse_shift("array:8x8", 2.0).apply(ScenarioConfig()).ue_array == (8, 8)
    s = parse_shift("city:city2@1.5", 2.0)
    assert (s.kind, s.value, s.at_s) == ("city", "city2", 1.5)
    c = parse_shift("codebook:random64", 2.0).apply(ScenarioConfig())
    assert c.codebook_a == "random" and c.set_a == 64
    for bad in ("array", "colour:red", "array:eightbyeight", "city:atlantis"):
        with pytest.raises(EmulatorError):
            parse_shift(bad, 1.0)


def test_emulator_deterministic_by_seed(sim_bundle):
    cfg = EmulatorConfig(n_ues=3, duration_s=0.6, deadline_ms=1e9, seed=4)
    a, b = run_emulator(sim_bundle, cfg), run_emulator(sim_bundle, cfg)
    for m in a.se:
        np.testing.assert_array_equal(a.se[m], b.se[m])
    np.testing.assert_array_equal(a.fallback, b.fallback)
    c = run_emulator(sim_bundle, EmulatorConfig(n_ues=3, duration_s=0.6, deadline_ms=1e9, seed=5))
    assert not np.array_equal(a.se["edgebm"], c.se["edgebm"])


def test_emulator_city_is_the_bundles_own_unless_a_scenario_is_given(sim_bundle):
    own = run_emulator(sim_bundle, EmulatorConfig(n_ues=2, duration_s=0.4, deadline_ms=1e9))
    assert (own.config["city"], own.config["city_source"]) == ("city0", "the bundle's own city")
    other = run_emulator(sim_bundle, EmulatorConfig(n_ues=2, duration_s=0.4, deadline_ms=1e9, city="city2"))
    assert (other.config["scenario"]["city"], other.config["city_source"]) == ("city2", "--scenario")
    assert {k: v for k, v in other.config["scenario"].items() if k != "city"} == {k: v for k, v in own.config["scenario"].items() if k != "city"}
    assert not np.array_equal(own.se["exhaustive"], other.se["exhaustive"])


def test_emulator_shift_adapt_and_report(sim_bundle, tmp_path):
    cfg = EmulatorConfig(n_ues=4, duration_s=2.0, shifts=(parse_shift("codebook:random64", 1.0),), seed=0, full_sweep_every=2)
    res = run_emulator(sim_bundle, cfg)
    assert res.se["edgebm"].shape == (100, 4)
    assert np.all(res.beams["exhaustive"] == 64)
    assert res.updates, "fallback/full sweeps must produce on-device updates"
    assert any(u["steps"] >= 1 for u in res.updates), [(u["steps"], u["stop"], round(u["host_ms"], 3)) for u in res.updates]
    k = write_report(res, tmp_path / "rep", window=20)
    for name in ("kpis.json", "summary.md", "se_over_time.png", "se_drop_cdf.png", "latency_hist.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    kp = json.loads((tmp_path / "rep" / "kpis.json").read_text())
    assert kp["shifts"][0]["shift"] == "codebook:random64"
    assert kp["config"]["backend"] == "onnxruntime" and "onnxruntime" in (tmp_path / "rep" / "summary.md").read_text()
    for w in ("before", "just_after", "adapted"):
        assert set(kp["shifts"][0][w]) >= {"edgebm", "hierarchical", "exhaustive", "cycles"}
    # SE never exceeds the genie and the genie has zero drop
    assert np.all(res.se["exhaustive"] <= res.se_genie + 1e-9)
    assert k["methods"]["exhaustive"]["beams_per_cycle"] == 64.0
    assert "Shift `codebook:random64`" in (tmp_path / "rep" / "summary.md").read_text()
    # a second report into the same folder replaces it whole: a plot of the earlier run does not survive
    (tmp_path / "rep" / "se_stale_plot.png").write_bytes(b"old")
    write_report(res, tmp_path / "rep", window=20)
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(k["plots"] + ["kpis.json", "summary.md"])
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no temp folder left beside it


def test_late_decisions_keep_previous_beam(sim_bundle):
    res = run_emulator(sim_bundle, EmulatorConfig(n_ues=2, duration_s=0.3, deadline_ms=1e-6, seed=0, adapt=False, drop_db=100.0))
    assert res.stale[1:].all() and not res.stale[0].any()  # every decision after the first is late
    # a stale UE serves the exact beam it chose in cycle 0 for ever, and pays Set B + the serving-beam re-measurement only
    np.testing.assert_array_equal(res.served[1:], np.broadcast_to(res.served[0], res.served[1:].shape))
    assert np.all(res.beam_parts["edgebm"]["refine"][1:] == 0) and np.all(res.beam_parts["edgebm"]["serving"][1:] == 1)


def test_cli_emulate(sim_bundle, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["emulate", str(sim_bundle), "--ues", "2", "--duration", "0.6", "--shift", "array:2x2@0.3", "--out", str(out)])
    assert rc == 0
    assert (out / "kpis.json").is_file()
    assert "shift array:2x2" in capsys.readouterr().out
    assert main(["emulate", str(sim_bundle), "--shift", "warp:9"]) == 2
    assert main(["emulate", str(tmp_path / "missing")]) == 2
