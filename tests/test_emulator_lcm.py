"""Life-cycle management in the emulator, on hand-made traces with exact measurements (no simulator):
what the configuration check and the monitor decide, when, and what each cycle is charged; the kpis.json
``monitoring`` section, ``detected_after_s`` and the CLI options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgebm.emulator.loop import EmulatorConfig, Phase, emulate_traces
from edgebm.emulator.monitoring import MonitoringDriver, MonitoringSettings
from edgebm.emulator.report import compute_kpis, write_report
from edgebm.runtime.lcm import LcmConfig
from edgebm.runtime.monitor import MonitorConfig, design_cusum

NOISE = -100.0
CHILDREN = np.array([[0, 1], [2, 3]])  # Set B = 2 wide beams over Set A = 4 narrow beams
U = 4


def exact(rsrp, noise):
    return np.asarray(rsrp, dtype=float)


def phase(start: int, n: int, best: int, configuration=None) -> Phase:
    """n cycles, U UEs; the true best Set A beam is ``best`` (10 dB above the rest); Set B points at its parent."""
    a = np.full((n, U, 4), -90.0)
    a[..., best] = -80.0
    b = np.full((n, U, 2), -90.0)
    b[..., best // 2] = -80.0
    return Phase(start, b, a, np.full((n, U), NOISE), CHILDREN, name=f"best{best}", configuration=configuration)


def config(cb: str) -> dict:
    return {"set_b": 2, "set_a": 4, "codebook_b": "b" * 64, "codebook_a": cb, "bs_array": [8, 8], "ue_array": [1, 1], "carrier_hz": 28e9}


def block(cb: str) -> dict:
    from edgebm.runtime.functionality import FUNCTIONALITY_SCHEMA, functionality_id

    f = {"schema": FUNCTIONALITY_SCHEMA, **config(cb), "ue_array": [[1, 1]], "carrier_hz": [28e9], "snr_db": [20.0, 20.0],
         "scenario": {"kind": "named", "city": "hand"}, "codebook_frame": "global", "codebook_agnostic": False}
    f["id"] = functionality_id(f)
    return f


class FakePredictor:
    """What the monitoring driver reads of a Predictor: a bundle that always ranks ``beams`` first."""

    n_b, n_a, head = 2, 4, None

    def __init__(self, name: str, beams: list[int], functionality: dict | None) -> None:
        self.bundle_dir = Path("/bundles") / name
        self.manifest = {"functionality": functionality, "metrics_heldout": {}}
        self.beams = np.array(beams)

    def predict(self, x, k=3):
        n = len(np.atleast_2d(x))
        return np.tile(self.beams[:k], (n, 1)), np.tile(np.linspace(0.9, 0.1, k), (n, 1))


def infer_for(pred: FakePredictor):
    return lambda xb: (pred.predict(xb, 2)[0], np.full(len(xb), 0.9), np.full(len(xb), 0.1))


def run(preds, phases, settings, T_cycles):
    driver = MonitoringDriver(preds, settings, U, 2, slowdown=2.5)
    cfg = EmulatorConfig(n_ues=U, duration_s=T_cycles * 0.02, adapt=False, monitoring=settings)
    res = emulate_traces(phases, infer_for(preds[0]), cfg, cycle_ms=20.0, deadline_ms=1.0, measure=exact, lcm=driver,
                         infers=[infer_for(p) for p in preds])
    res.shifts = [{"kind": "x", "value": p.name, "at_s": p.start * 0.02, "cycle": p.start} for p in phases[1:]]
    return res


def test_configuration_outside_the_functionality_deactivates_at_once():
    # the bundle covers codebook "a"; from cycle 10 the UE is configured with codebook "c": legacy search serves
    pred = FakePredictor("m", [1, 0, 2], block("a" * 64))
    settings = MonitoringSettings(every=1000, lcm=LcmConfig(monitor=MonitorConfig(p0=0.1)))
    res = run([pred], [phase(0, 10, 1, config("a" * 64)), phase(10, 10, 1, config("c" * 64))], settings, 20)
    ev = res.monitoring["events"]
    assert [(e["action"], e["trigger"], e["t_s"]) for e in ev] == [("deactivate", "configuration", 0.2)]
    assert "codebook_a" in ev[0]["value"]
    np.testing.assert_array_equal(res.serving_model, [1] * 10 + [0] * 10)
    # legacy cycles: Set B (2) + the 2 children of the best wide beam, no serving-beam re-measurement, no refinement
    parts = res.beam_parts["edgebm"]
    assert (parts["fallback"][10:] == 2).all() and (parts["serving"][10:] == 0).all() and (parts["refine"][10:] == 0).all()
    assert (res.beams["edgebm"][10:] == 4).all() and np.isnan(res.latency_ms[10:]).all()
    np.testing.assert_array_equal(res.served[10:], 1)  # HS finds the best beam
    k = compute_kpis(res, window=5)
    assert k["shifts"][0]["detected_after_s"] == 0.0 and k["shifts"][0]["detected_by"] == "configuration"
    assert np.isfinite(k["timing"]["latency_p99_ms"])  # the cycles the model did not run are not latencies


def test_monitor_detects_a_degradation_and_deactivates():
    # every UE sweeps every cycle (4 labels per cycle); the model predicts beam 1, right until cycle 30, then the best is 2
    pred = FakePredictor("m", [1, 0, 3], None)
    settings = MonitoringSettings(every=1, lcm=LcmConfig(monitor=MonitorConfig(p0=0.1)))
    res = run([pred], [phase(0, 30, 1), phase(30, 20, 2)], settings, 50)
    d = design_cusum(0.1, MonitorConfig().alternative(0.1), 5000)
    # p0 = 0.1, p1 = 0.25: a miss adds ln(2.5) ~ 5 units, a hit removes ln(1.2) ~ 1 unit, threshold 31 units
    assert (d.up, d.down, d.threshold) == (5, -1, 31)
    # before the change every label hits (S stays 0); after it every label misses: the 7th miss reaches 35 >= 31.
    # 4 labels per cycle -> the 7th is in the 2nd cycle after the change: detected after 1 cycle = 0.02 s
    m = res.monitoring
    assert m["false_alarms"] == 0 and len(m["alarms"]) >= 1 and m["alarms"][0]["t_s"] == pytest.approx(0.62)
    ev = m["events"][0]
    # 7 post-change labels: model misses, legacy hits all -> exact McNemar p = 2^-7 < 0.05 -> legacy serves
    assert ev["action"] == "deactivate" and ev["trigger"] == "monitor" and "McNemar p=0.00781" in ev["reason"]
    assert m["detection"][0]["detected_after_s"] == pytest.approx(0.02)
    assert m["phases"][0] == {"labels": 120, "top1_miss": 0, "topk_miss": 0, "legacy_miss": 0,
                              "top1_miss_rate": 0.0, "topk_miss_rate": 0.0, "legacy_miss_rate": 0.0}
    assert (res.serving_model[32:] == 0).all() and m["cost_us"]["host_p99"] > 0


def test_monitor_switches_to_the_bundle_that_monitors_better(tmp_path):
    old, new = FakePredictor("old", [1, 0, 3], None), FakePredictor("new", [2, 3, 0], None)
    settings = MonitoringSettings(every=1, lcm=LcmConfig(monitor=MonitorConfig(p0=0.1)))
    res = run([old, new], [phase(0, 30, 1), phase(30, 20, 2)], settings, 50)
    ev = res.monitoring["events"][0]
    assert ev["action"] == "switch" and ev["bundle"] == "new" and "misses less on the last 8 labels" in ev["reason"]
    np.testing.assert_array_equal(res.active_bundle[:31], 0)
    assert (res.active_bundle[32:] == 1).all() and (res.served[35:] == 2).all()
    res.config = {"family": "fake", "profile": "smartphone", "scenario": {"city": "hand"}, "seed": 0, "bundle": "old"}
    k = write_report(res, tmp_path / "r", window=5)
    assert k["monitoring"]["events"][0]["action"] == "switch" and (tmp_path / "r" / "se_over_time.png").is_file()
    assert "## Life-cycle management" in (tmp_path / "r" / "summary.md").read_text()


def test_no_monitoring_leaves_detection_empty(toy_bundle):
    from edgebm.emulator.monitoring import shift_detection

    assert shift_detection(None, 2) == [{"detected_after_s": None, "detected_by": None, "detection_action": None}] * 2


@pytest.mark.parametrize("argv, fragment", [
    (["--monitor-every", "0"], "--monitor-every"),
    (["--monitor-reference", "often"], "--monitor-reference"),
    (["--monitor-reference", "1.5"], "--monitor-reference"),
    (["--monitor-arl0", "nan"], "--monitor-arl0"),
    (["--monitor-metric", "top7"], "--monitor-metric"),
])
def test_cli_monitor_options_are_checked(toy_bundle, capsys, argv, fragment):
    from edgebm.cli import main

    assert main(["emulate", str(toy_bundle.bundle_dir), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err


def test_cli_rejects_a_bundle_given_twice_and_a_folder_without_bundles(toy_bundle, tmp_path, capsys):
    from edgebm.cli import main

    b = str(toy_bundle.bundle_dir)
    assert main(["emulate", b, "--bundle", b]) == 2
    assert "given twice" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["emulate", str(tmp_path / "empty")]) == 2
    assert "neither a bundle" in capsys.readouterr().err


def test_settings_validation():
    from edgebm.errors import EmulatorConfigError

    with pytest.raises(EmulatorConfigError, match="monitoring.every"):
        MonitoringSettings(every=0)
    with pytest.raises(EmulatorConfigError, match="monitoring.reference"):
        MonitoringSettings(reference=True)
