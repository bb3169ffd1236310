"""The emulator with a bundle trained on randomised cities (no city of its own): which city the UEs move in
(``--scenario``), and a codebook shift on a codebook-agnostic (angular) bundle through ``Predictor.set_codebook``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data.simulated import generate_dataset
from edgebm.emulator import EmulatorConfig, parse_shift, run_emulator
from edgebm.emulator.loop import scenario_for
from edgebm.emulator.monitoring import MonitoringSettings
from edgebm.errors import EmulatorConfigError
from edgebm.runtime import Predictor
from edgebm.runtime.functionality import codebook_sha256
from edgebm.sim import RandomScenario, build_codebooks


@pytest.fixture(scope="module")
def random_angular_bundle(tmp_path_factory):
    """An angular bundle trained on 3 randomised cities (limits lifted: the fp32 angular graph is over the
    smartphone's 1 MiB and 10 MFLOPs, and its host latency on a loaded test machine may be over the 2 ms budget;
    what is tested here is the emulator, not the gate)."""
    from edgebm.pipeline import export_for_profile
    from edgebm.train import TrainConfig
    from tests.conftest import lean_profile

    ds = generate_dataset(RandomScenario(cities=3), n_samples=1500, seed=7)
    prof = lean_profile("smartphone", prune=False)
    prof = dataclasses.replace(prof, models=dataclasses.replace(prof.models, families=("angular",)),
                               limits=dataclasses.replace(prof.limits, max_model_kib=4096, max_mflops=100.0, max_peak_ram_kib=16384),
                               timing=dataclasses.replace(prof.timing, inference_budget_ms=prof.timing.beam_cycle_ms),
                               compute=dataclasses.replace(prof.compute, slowdown_vs_host=1.0))
    out = tmp_path_factory.mktemp("rand") / "angular"
    res = export_for_profile(prof, ds, out, train_cfg=TrainConfig(epochs=3, seed=0), latency_runs=20)
    assert res.manifest["functionality"]["codebook_agnostic"] is True and res.manifest["dataset"]["meta"]["scenario"]["kind"] == "random"
    return out


def test_a_random_city_bundle_runs_in_city0_unless_a_city_is_given(random_angular_bundle):
    pred = Predictor(random_angular_bundle)
    cfg, src = scenario_for(pred)
    assert cfg.city == "city0" and "3 randomised cities" in src
    assert cfg.snr_db == 15.0  # the middle of its 0..30 dB training range
    cfg, src = scenario_for(pred, "city2")
    assert (cfg.city, src) == ("city2", "--scenario")
    cfg, _ = scenario_for(pred, "rand-7-1")  # one of its own training cities, as its scenario drew it
    assert cfg == RandomScenario(cities=3).city_config(7, 1)
    with pytest.raises(EmulatorConfigError, match="3 cities"):
        scenario_for(pred, "rand-7-3")
    with pytest.raises(EmulatorConfigError, match="city"):
        EmulatorConfig(city="atlantis")
    res = run_emulator(random_angular_bundle, EmulatorConfig(n_ues=2, duration_s=0.4, deadline_ms=1e9, city="city1"))
    assert (res.config["city"], res.config["scenario"]["city"], res.config["city_source"]) == ("city1", "city1", "--scenario")


@pytest.mark.parametrize("monitoring", [None, MonitoringSettings()], ids=["plain", "lcm"])
def test_a_codebook_shift_on_an_angular_bundle_goes_through_set_codebook(random_angular_bundle, monkeypatch, monitoring):
    calls = []
    real = Predictor.set_codebook

    def spy(self, weights_a, array_shape=None):
        calls.append((codebook_sha256(weights_a), array_shape))
        return real(self, weights_a, array_shape)

    monkeypatch.setattr(Predictor, "set_codebook", spy)
    shift = parse_shift("codebook:random32@9", 1.0)  # another codebook of another size: only an angular bundle can serve it
    cfg = EmulatorConfig(n_ues=3, duration_s=2.0, deadline_ms=1e9, shifts=(shift,), seed=0, full_sweep_every=2, monitoring=monitoring)
    res = run_emulator(random_angular_bundle, cfg)
    base, _ = scenario_for(Predictor(random_angular_bundle))
    want = codebook_sha256(build_codebooks(shift.apply(base))["set_a"].weights)
    assert calls == [(want, (8, 8))], "the shifted phase's Set A codebook, once, with the BS array"
    after = res.served[res.shifts[0]["cycle"]:]
    assert after.max() < 32 and np.all(res.beams["exhaustive"][res.shifts[0]["cycle"]:] == 32)
    if monitoring is None:
        assert res.config["codebooks_served"] == [{"phase": 1, "codebook_a": want, "set_a": 32}]
        assert any(u["phase"] == 1 for u in res.updates), "the on-device update goes on with the new head"
    else:  # accepted and recorded, not refused: the bundle is codebook-agnostic
        assert [e["action"] for e in res.monitoring["events"] if e["t_s"] == 1.0][:1] == ["keep"]


def test_cli_scenario(random_angular_bundle, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["emulate", str(random_angular_bundle), "--ues", "2", "--duration", "0.4", "--out", str(out)]) == 0
    k = json.loads((out / "kpis.json").read_text())
    assert k["config"]["city"] == "city0" and "randomised" in k["config"]["city_source"]
    assert "in city0 (default: the bundle was trained on 3 randomised cities" in (out / "summary.md").read_text()
    for bad in ("atlantis", "rand-7-3"):
        capsys.readouterr()
        assert main(["emulate", str(random_angular_bundle), "--scenario", bad, "--ues", "2", "--duration", "0.4",
                     "--out", str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--scenario" in err[0], err
