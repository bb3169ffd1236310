from pathlib import Path

import pytest

from edgebm.cli import main
from edgebm.profiles import ProfileError, list_profiles, load_profile, parse_profile, tomllib  # tomli on Python 3.10

SHIPPED = ("smartphone", "vehicle", "iot", "fwa")


def _base() -> dict:
    return tomllib.loads(Path(load_profile("smartphone").source).read_text())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load(name):
    p = load_profile(name)
    assert p.name == name
    assert p.timing.inference_budget_ms <= p.timing.beam_cycle_ms
    assert p.precision.preferred in p.precision.allowed
    assert 5 <= p.timing.beam_cycle_ms <= 20  # the beam-management timing the project targets


def test_list_has_all():
    assert set(SHIPPED) <= set(list_profiles())


def test_unknown_key_named():
    d = _base()
    d["limits"]["max_gflops"] = 3
    with pytest.raises(ProfileError, match=r"x.toml: key 'limits.max_gflops': unknown key"):
        parse_profile(d, "x.toml")


def test_missing_key_named():
    d = _base()
    del d["timing"]["beam_cycle_ms"]
    with pytest.raises(ProfileError, match=r"key 'timing.beam_cycle_ms': missing"):
        parse_profile(d, "x.toml")


@pytest.mark.parametrize(
    "section,key,value,msg",
    [
        ("timing", "beam_cycle_ms", "20ms", "expected number"),
        ("compute", "threads", 1.5, "expected integer"),
        ("adaptation", "on_device_update", 1, "expected boolean"),
        ("limits", "max_params", True, "expected integer"),
        ("compute", "backend", "tflite", "must be one of"),
        ("limits", "max_mflops", -1, "must be > 0"),
        ("precision", "allowed", ["int4"], "unknown value"),
    ],
)
def test_wrong_type_or_value_named(section, key, value, msg):
    d = _base()
    d[section][key] = value
    with pytest.raises(ProfileError, match=rf"key '{section}.{key}': {msg}"):
        parse_profile(d, "x.toml")


def test_unknown_profile_name():
    with pytest.raises(ProfileError, match="unknown profile 'toaster'"):
        load_profile("toaster")


def test_cli_bad_profile_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    text = Path(load_profile("iot").source).read_text().replace("threads = 1", 'threads = "one"')
    bad.write_text(text)
    assert main(["profiles", "show", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compute.threads" in err[0] and str(bad) in err[0]


def test_cli_profiles_list_and_show(capsys):
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in SHIPPED)
    assert main(["profiles", "show", "vehicle", "--json"]) == 0
    assert '"backend": "tensorrt"' in capsys.readouterr().out
