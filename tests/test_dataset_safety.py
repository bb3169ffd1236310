"""Hostile or broken dataset files (issue 10): each is refused with one DatasetError line naming the field, from
the npy headers before any array is inflated where the problem is visible there; `data info` exits 2 without a
traceback. Table: file builder -> message fragment."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from edgebm.cli import main
from edgebm.data import DatasetError, load_dataset
from edgebm.data.paths import validate_path_table


def _payload(ds) -> dict:
    p = {**ds.arrays, **ds.codebooks}
    p["meta_json"] = np.array(json.dumps({**ds.meta, "schema_version": 1}))
    return p


def _write(path, arrays: dict, extra_members: dict | None = None) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(v), allow_pickle=True)
            zf.writestr(f"{k}.npy", buf.getvalue())
        for name, raw in (extra_members or {}).items():
            zf.writestr(name, raw)


def _header_only(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def rows_1e12(path, ds):
    p = _payload(ds)
    p.pop("rsrp_b")
    _write(path, p, {"rsrp_b.npy": _header_only((10**12, 16))})


def lying_size(path, ds):
    p = _payload(ds)
    p.pop("rsrp_b")
    _write(path, p, {"rsrp_b.npy": _header_only((600, 16)) + b"\0" * 100})


def zip_bomb(path, ds):
    """~100 MB of zeros that deflate to ~0.1 MB (the 1.6 MB -> 1.6 GB bomb of the issue, scaled to test time)."""
    p = _payload(ds)
    p.pop("rsrp_a")
    n = 1_600_000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in p.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(v))
            zf.writestr(f"{k}.npy", buf.getvalue())
        zi = zipfile.ZipInfo("rsrp_a.npy")
        zi.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zi, "w", force_zip64=True) as f:
            f.write(_header_only((n, 16)))
            zero = bytes(1 << 22)
            left = n * 16 * 4
            while left:
                f.write(zero[:min(left, len(zero))])
                left -= min(left, len(zero))


def zero_samples(path, ds):
    _write(path, {**_payload(ds.subset(np.arange(0)))})


def sub(**changes):
    def build(path, ds):
        p = _payload(ds)
        for k, v in changes.items():
            p[k] = v(p) if callable(v) else v
        _write(path, p)
    return build


def nan_at(key, idx):
    def f(p):
        a = p[key].astype(np.float32).copy()
        a[idx] = np.nan
        return a
    return f


CASES = {
    "1e12 rows in a header": (rows_1e12, "field 'rsrp_b': header claims shape (1000000000000, 16)"),
    "entry size vs header": (lying_size, "field 'rsrp_b': the zip entry holds"),
    "zip bomb": (zip_bomb, "refused as a zip bomb"),
    "0 samples": (zero_samples, "0 samples"),
    "meta_json not JSON": (sub(meta_json=np.array("{not json")), "field 'meta_json': not valid JSON"),
    "meta_json a list": (sub(meta_json=np.array("[1, 2]")), "field 'meta_json': expected a JSON object"),
    "meta_json numbers": (sub(meta_json=np.arange(3)), "field 'meta_json': expected a JSON string"),
    "rsrp_b linear 1e30": (sub(rsrp_b=lambda p: np.full_like(p["rsrp_b"], 1e30)), "field 'rsrp_b': values must be RSRP in [-300, 60] dBm"),
    "rsrp_a -1000 dBm": (sub(rsrp_a=lambda p: p["rsrp_a"] - 1000), "field 'rsrp_a': values must be RSRP"),
    "NaN codebook angle": (sub(cb_a_az=nan_at("cb_a_az", 3)), "field 'cb_a_az': 1 NaN/inf"),
    "elevation out of range": (sub(cb_b_el=lambda p: p["cb_b_el"] + 500), "field 'cb_b_el': elevations must be in [0, 180]"),
    "float cb_children": (sub(cb_children=lambda p: p["cb_children"].astype(np.float64)), "field 'cb_children': expected integer dtype"),
    "children out of range": (sub(cb_children=lambda p: p["cb_children"] + 64), "field 'cb_children': expected (16, c) integer"),
    "codebook beams": (sub(cb_a_weights=lambda p: p["cb_a_weights"][:10]), "field 'cb_a_weights': axis 0 has size 10, expected 64"),
    "pickled object array": (sub(pos=np.array([object()] * 600, dtype=object)), "field 'pos': object arrays"),
    "unknown member": (lambda path, ds: _write(path, _payload(ds), {"evil.sh": b"rm -rf /"}), "'evil.sh' is not a top-level .npy"),
    "psi out of range": (sub(cb_a_psi=np.full((64, 2), 3.0, np.float32)), "field 'cb_a_psi': spatial frequencies"),
    "bool rsrp": (sub(rsrp_b=lambda p: p["rsrp_b"] > -80), "field 'rsrp_b': expected float dtype"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_dataset_refused(tmp_path, toy_dataset, name, capsys):
    build, msg = CASES[name]
    path = tmp_path / "bad.npz"
    build(path, toy_dataset)
    with pytest.raises(DatasetError) as ei:
        load_dataset(path)
    assert msg in str(ei.value) and "\n" not in str(ei.value)
    assert main(["data", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_headers_checked_before_data(tmp_path, toy_dataset, monkeypatch):
    """Shape errors are found from the headers: no array is inflated."""
    path = tmp_path / "bad.npz"
    sub(snr_db=np.zeros(599, np.float32))(path, toy_dataset)
    calls = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(DatasetError, match="field 'snr_db': has 599 rows"):
        load_dataset(path)
    assert calls == []


def test_good_file_with_constant_arrays_is_not_a_bomb(tmp_path, toy_dataset):
    """Constant fields compress > 1000x; only large files are ratio-checked, so small datasets load."""
    p = _payload(toy_dataset)
    _write(tmp_path / "ok.npz", p)
    assert len(load_dataset(tmp_path / "ok.npz")) == 600


def test_path_table_accepts_boolean_los():
    n, P = 4, 2
    table = {"rx_pos": np.zeros((n, 3)), "tx_pos": np.array([0.0, 0.0, 20.0]), "carrier_hz": np.array(28e9),
             "power": np.full((n, P), -100.0), "phase": np.full((n, P), 10.0), "delay": np.full((n, P), 1e-6),
             "aoa_az": np.zeros((n, P)), "aoa_el": np.full((n, P), 90.0), "aod_az": np.zeros((n, P)),
             "aod_el": np.full((n, P), 95.0), "inter": np.zeros((n, P)), "los": np.array([True, False, True, True])}
    out = validate_path_table(table)
    assert out["los"].dtype == bool
