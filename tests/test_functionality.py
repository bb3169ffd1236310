"""The manifest's functionality block: contents, stable id, codebook identity, configuration check."""

from __future__ import annotations

import numpy as np
import pytest

from edgebm.runtime.functionality import (
    FUNCTIONALITY_SCHEMA,
    build_functionality,
    check_configuration,
    codebook_sha256,
    configuration_from,
    functionality_id,
)


@pytest.fixture()
def block(toy_dataset):
    return build_functionality(toy_dataset.meta, toy_dataset.codebooks, toy_dataset.snr_db)


def test_block_contents(block, toy_dataset):
    assert block["schema"] == FUNCTIONALITY_SCHEMA
    assert block["set_a"] == 64 and block["set_b"] == 16
    assert block["bs_array"] == [8, 8] and block["ue_array"] == [[1, 1]] and block["carrier_hz"] == [28e9]
    assert block["snr_db"] == [20.0, 20.0] and block["codebook_agnostic"] is False
    assert block["codebook_a"] == codebook_sha256(toy_dataset.codebooks["cb_a_weights"]) and len(block["codebook_a"]) == 64
    assert block["id"] == functionality_id(block) and block["id"].startswith("fn-") and len(block["id"]) == 19


def test_id_is_stable_and_depends_on_conditions(block, toy_dataset):
    again = build_functionality(dict(reversed(list(toy_dataset.meta.items()))), toy_dataset.codebooks, toy_dataset.snr_db)
    assert again["id"] == block["id"]  # key order does not matter
    assert functionality_id({**block, "id": "anything"}) == block["id"]  # the id is not part of what it hashes
    other = build_functionality({**toy_dataset.meta, "ue_array": [4, 4]}, toy_dataset.codebooks, toy_dataset.snr_db)
    assert other["id"] != block["id"]
    agn = build_functionality(toy_dataset.meta, toy_dataset.codebooks, toy_dataset.snr_db, codebook_agnostic=True)
    assert agn["id"] != block["id"]


def test_codebook_hash_is_the_beams_not_the_last_bit():
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(8, 4)) + 1j * rng.normal(size=(8, 4))).astype(np.complex64)
    assert codebook_sha256(w) == codebook_sha256(w.astype(np.complex128) + 1e-9)
    assert codebook_sha256(w) != codebook_sha256(w[::-1])  # beam order is identity: index i means beam i
    w2 = w.copy()
    w2[3, 1] += 0.01
    assert codebook_sha256(w) != codebook_sha256(w2)
    with pytest.raises(ValueError, match="beams, antennas"):
        codebook_sha256(np.zeros(4))


def test_check_configuration(block, toy_dataset):
    cur = configuration_from(toy_dataset.meta, toy_dataset.codebooks)
    assert check_configuration(block, cur).applicable
    bad = check_configuration(block, {**cur, "ue_array": [8, 8], "set_a": 256})
    assert not bad.applicable and len(bad.mismatches) == 2
    assert bad.message().startswith("configuration outside the bundle's functionality: set_a: bundle 64, current 256")
    note = check_configuration(block, {**cur, "snr_db": 0.0})
    assert note.applicable and "snr_db 0 outside [20, 20]" in note.message()
    assert check_configuration(None, cur).applicable  # a bundle from before the block existed
    with pytest.raises(ValueError, match="unknown configuration field"):
        check_configuration(block, {"city": "city1"})


def test_codebook_agnostic_accepts_and_records(toy_dataset):
    agn = build_functionality(toy_dataset.meta, toy_dataset.codebooks, codebook_agnostic=True)
    cur = configuration_from(toy_dataset.meta, toy_dataset.codebooks)
    res = check_configuration(agn, {**cur, "codebook_a": "0" * 64, "set_a": 256})
    assert res.applicable and len(res.accepted) == 2 and "codebook-agnostic" in res.message()
    res = check_configuration(agn, {**cur, "set_b": 8})  # its input size still binds
    assert not res.applicable


def test_random_scenario_meta():
    meta = {"set_a": 64, "set_b": 16, "bs_array": [8, 8], "ue_array": "random", "carrier_hz": "random",
            "snr_db": [0.0, 30.0], "scenario": {"kind": "random", "cities": 200, "seed": 3}, "codebook_frame": "panel"}
    cb = {"cb_a_weights": np.eye(4, dtype=np.complex64), "cb_b_weights": np.eye(2, 4, dtype=np.complex64)}
    b = build_functionality(meta, cb)
    assert b["ue_array"] == "random" and b["snr_db"] == [0.0, 30.0] and b["scenario"] == {"kind": "random", "cities": 200, "seed": 3}
    res = check_configuration(b, {"ue_array": [4, 4], "carrier_hz": 3.5e9, "snr_db": 10.0})
    assert res.applicable and len(res.notes) == 2


# -- in the bundle: written by export, validated by the manifest reader, checked by the Predictor ---------------------
def test_export_writes_the_block_and_the_predictor_checks_against_it(toy_bundle, toy_dataset):
    from edgebm.errors import InputError
    from edgebm.runtime import Predictor

    block = toy_bundle.manifest["functionality"]
    assert block == build_functionality(toy_dataset.meta, toy_dataset.codebooks, toy_dataset.snr_db)
    pred = Predictor(toy_bundle.bundle_dir)
    cur = configuration_from(toy_dataset.meta, toy_dataset.codebooks)
    assert pred.check_configuration(cur).applicable and pred.accepted_configurations == []
    with pytest.raises(InputError) as e:
        pred.check_configuration({**cur, "ue_array": [8, 8]})
    msg = str(e.value)
    assert "ue_array: bundle [[1, 1]], current [8, 8]" in msg and "\n" not in msg
    with pytest.raises(InputError, match="unknown configuration field"):
        pred.check_configuration({"city": "city1"})


def test_manifest_refuses_an_edited_block(toy_bundle):
    from edgebm.errors import BundleError
    from edgebm.runtime.manifest import BundleManifest

    d = toy_bundle.manifest.to_dict()
    assert BundleManifest.from_dict(d).functionality == d["functionality"]
    bad = {**d, "functionality": {**d["functionality"], "ue_array": [[8, 8]]}}  # claims another array, id not recomputed
    with pytest.raises(BundleError, match="manifest field 'functionality': id .* does not match its content"):
        BundleManifest.from_dict(bad)
    with pytest.raises(BundleError, match="functionality"):
        BundleManifest.from_dict({**d, "functionality": {"schema": "other/9"}})
    old = {k: v for k, v in d.items() if k != "functionality"}  # bundles from before the block still load
    assert BundleManifest.from_dict(old).functionality is None
