"""Where a bundle applies: the manifest's ``functionality`` block, its stable id, and the check of a
runtime configuration against it (numpy + stdlib only).

3GPP Rel-19 identifies a UE-sided beam-prediction model with the conditions it serves (Set A /
Set B configuration, the network-side beams behind an "associated ID", the UE's own antenna
configuration). A bundle records the same facts here, taken from the data it was trained and
validated on:

- ``set_a`` / ``set_b``: beam counts; ``codebook_a`` / ``codebook_b``: identity of each codebook as
  the sha256 of its weights (rounded to 1e-6 so that the same beams computed on another machine hash
  the same; see :func:`codebook_sha256`);
- ``bs_array`` and ``ue_array`` (UPA rows x cols; ``"random"`` when the data drew the UE array per
  city), ``carrier_hz`` (or ``"random"``);
- ``snr_db``: the per-element SNR range (dB) of the data; ``scenario``: what the data came from
  (``{"kind": "named", "city": ...}``, ``{"kind": "random", "cities": K, "seed": s}``, or the importer);
  ``codebook_frame``: frame of the codebook pointing angles (``global`` or ``panel``);
- ``codebook_agnostic``: the model scores Set A beams through their directions and serves a codebook
  it never saw (then a different Set A codebook or size is accepted and recorded, not refused).

``id`` = ``"fn-"`` + the first 16 hex digits of the sha256 of the canonical JSON of the block
without ``id`` (sorted keys, no whitespace): two bundles with the same conditions share an id,
whatever the model inside.

Checking: the UE knows its configuration (beam counts, the codebooks the network configured, its
own array, the carrier); :func:`check_configuration` compares those *hard* fields and refuses a
mismatch. SNR and scenario are conditions the model was validated under that the UE cannot assert
from its configuration: a value outside them is a note, not a refusal.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where arrays are hashed, so the manifest reader can import this module stdlib-only
    import numpy as np

__all__ = [
    "FUNCTIONALITY_SCHEMA", "Applicability", "build_functionality", "check_configuration", "codebook_sha256",
    "configuration_from", "functionality_id", "validate_block",
]

#: layout version of the block
FUNCTIONALITY_SCHEMA = "edgebm.functionality/1"
#: fields a UE knows from its configuration; a mismatch makes the bundle inapplicable
HARD_FIELDS = ("set_b", "set_a", "codebook_b", "codebook_a", "bs_array", "ue_array", "carrier_hz")
#: fields a codebook-agnostic model serves whatever their value (its input stays Set B of the same size)
AGNOSTIC_FIELDS = ("set_a", "codebook_a")


def codebook_sha256(weights: np.ndarray) -> str:
    """sha256 of a codebook's beam weights (beams x antennas, complex): shape, then real and imaginary
    parts rounded to 1e-6 as little-endian float64 (``-0.0`` folded to ``0.0``). Rounding makes the hash
    a property of the beams, not of the last bit of the arithmetic that produced them."""
    import numpy as np

    w = np.asarray(weights)
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"codebook weights must be a non-empty (beams, antennas) array, got shape {w.shape}")
    parts = np.stack([np.real(w), np.imag(w)], -1).astype(np.float64)
    q = np.round(parts, 6) + 0.0
    h = hashlib.sha256()
    h.update(json.dumps(list(w.shape)).encode())
    h.update(q.astype("<f8").tobytes())
    return h.hexdigest()


def _array(v: Any) -> list[int] | str:
    if isinstance(v, str):
        return v
    r, c = (int(x) for x in v)
    return [r, c]


def configuration_from(meta: dict[str, Any], codebooks: dict[str, np.ndarray]) -> dict[str, Any]:
    """The hard configuration fields of a dataset / scenario: ``meta`` holds ``set_a``, ``set_b``,
    ``bs_array``, ``ue_array``, ``carrier_hz`` (and optionally ``snr_db``), ``codebooks`` the
    ``cb_a_weights`` / ``cb_b_weights`` arrays of the dataset schema."""
    missing = [k for k in ("set_a", "set_b", "bs_array", "ue_array", "carrier_hz") if k not in meta]
    if missing:
        raise ValueError(f"configuration needs {', '.join(missing)} in the metadata")
    for k in ("cb_a_weights", "cb_b_weights"):
        if k not in codebooks:
            raise ValueError(f"configuration needs the codebook array '{k}'")
    fc = meta["carrier_hz"]
    out: dict[str, Any] = {
        "set_b": int(meta["set_b"]),
        "set_a": int(meta["set_a"]),
        "codebook_b": codebook_sha256(codebooks["cb_b_weights"]),
        "codebook_a": codebook_sha256(codebooks["cb_a_weights"]),
        "bs_array": _array(meta["bs_array"]),
        "ue_array": _array(meta["ue_array"]),
        "carrier_hz": fc if isinstance(fc, str) else float(fc),
    }
    if "snr_db" in meta and not isinstance(meta["snr_db"], (list, tuple)):
        out["snr_db"] = float(meta["snr_db"])
    return out


def _scenario(meta: dict[str, Any]) -> dict[str, Any]:
    sc = meta.get("scenario")
    if isinstance(sc, dict) and sc.get("kind") == "random":
        return {"kind": "random", "cities": sc.get("cities"), "seed": sc.get("seed", meta.get("seed"))}
    if isinstance(sc, dict) and "city" in sc:
        return {"kind": "named", "city": sc["city"], "region": sc.get("region", "all")}
    return {"kind": str(meta.get("source") or meta.get("generator") or "unknown")}


def _canonical(block: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in block.items() if k != "id"}, sort_keys=True, separators=(",", ":"), allow_nan=False)


def functionality_id(block: dict[str, Any]) -> str:
    """Stable id of a functionality block: ``fn-`` + 16 hex digits of the sha256 of its canonical JSON."""
    return "fn-" + hashlib.sha256(_canonical(block).encode()).hexdigest()[:16]


def build_functionality(
    meta: dict[str, Any],
    codebooks: dict[str, np.ndarray],
    snr_db: np.ndarray | None = None,
    codebook_agnostic: bool = False,
) -> dict[str, Any]:
    """The ``functionality`` block for a bundle trained on a dataset with metadata ``meta`` and codebook
    arrays ``codebooks``; ``snr_db`` (per-sample, dB) gives the SNR range when present, else ``meta``'s."""
    import numpy as np

    cfg = configuration_from(meta, codebooks)
    if snr_db is not None and np.size(snr_db):
        lo, hi = float(np.min(snr_db)), float(np.max(snr_db))
    else:
        v = meta.get("snr_db")
        lo, hi = (float(v[0]), float(v[1])) if isinstance(v, (list, tuple)) else ((float(v),) * 2 if v is not None else (-math.inf, math.inf))
    block: dict[str, Any] = {
        "schema": FUNCTIONALITY_SCHEMA,
        **{k: cfg[k] for k in HARD_FIELDS},
        "ue_array": cfg["ue_array"] if isinstance(cfg["ue_array"], str) else [cfg["ue_array"]],
        "carrier_hz": cfg["carrier_hz"] if isinstance(cfg["carrier_hz"], str) else [cfg["carrier_hz"]],
        "snr_db": [round(lo, 3), round(hi, 3)] if math.isfinite(lo) else None,
        "scenario": _scenario(meta),
        "codebook_frame": str(meta.get("codebook_frame", "global")),
        "codebook_agnostic": bool(codebook_agnostic),
    }
    block["id"] = functionality_id(block)
    return block


@dataclass(frozen=True)
class Applicability:
    """Outcome of :func:`check_configuration`.

    ``applicable``: the bundle may serve this configuration. ``mismatches``: hard fields that differ
    (each ``"field: bundle X, current Y"``). ``accepted``: mismatches a codebook-agnostic bundle serves
    anyway (recorded). ``notes``: soft conditions outside what the bundle was validated on.
    """

    applicable: bool
    mismatches: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def message(self) -> str:
        """One line for a user."""
        if not self.applicable:
            return "configuration outside the bundle's functionality: " + "; ".join(self.mismatches)
        parts = []
        if self.accepted:
            parts.append("accepted by a codebook-agnostic model: " + "; ".join(self.accepted))
        if self.notes:
            parts.append("outside validated conditions: " + "; ".join(self.notes))
        return "; ".join(parts) or "configuration within the bundle's functionality"


def _short(v: Any) -> str:
    return v[:12] if isinstance(v, str) and len(v) == 64 else json.dumps(v)


def validate_block(block: Any) -> None:
    """Raise ValueError unless ``block`` is a functionality block of this schema whose ``id`` matches its content."""
    if not isinstance(block, dict):
        raise ValueError(f"must be a JSON object, got {type(block).__name__}")
    if block.get("schema") != FUNCTIONALITY_SCHEMA:
        raise ValueError(f"schema {block.get('schema')!r}, this runtime reads {FUNCTIONALITY_SCHEMA!r}")
    missing = [k for k in (*HARD_FIELDS, "codebook_agnostic", "id") if k not in block]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    try:
        want = functionality_id(block)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not canonical JSON ({e})") from None
    if block["id"] != want:
        raise ValueError(f"id {block['id']!r} does not match its content ({want}); the block was edited")


def check_configuration(block: dict[str, Any] | None, current: dict[str, Any]) -> Applicability:
    """Compare a runtime configuration (keys of :func:`configuration_from`; any subset) with a
    bundle's ``functionality`` block. A bundle without a block (older exports) is applicable with a note."""
    if block is None:
        return Applicability(True, notes=("bundle declares no functionality block",))
    if not isinstance(block, dict) or block.get("schema") != FUNCTIONALITY_SCHEMA:
        raise ValueError(f"functionality block of schema {block.get('schema') if isinstance(block, dict) else block!r}; "
                         f"this runtime reads {FUNCTIONALITY_SCHEMA!r}")
    unknown = sorted(set(current) - set(HARD_FIELDS) - {"snr_db", "scenario"})
    if unknown:
        raise ValueError(f"unknown configuration field(s) {', '.join(unknown)}; known: {', '.join(HARD_FIELDS)}, snr_db, scenario")
    agnostic = bool(block.get("codebook_agnostic"))
    mism, acc, notes = [], [], []
    for key in HARD_FIELDS:
        if key not in current:
            continue
        have, cur = block.get(key), current[key]
        if key in ("ue_array", "carrier_hz"):
            if have == "random":
                notes.append(f"{key} {_short(cur)}: bundle trained on randomly drawn values")
                continue
            ok = cur in have if isinstance(have, list) else cur == have
        else:
            ok = cur == have
        if ok:
            continue
        line = f"{key}: bundle {_short(have)}, current {_short(cur)}"
        if agnostic and key in AGNOSTIC_FIELDS:
            acc.append(line)
        elif agnostic and key == "codebook_b" and current.get("set_b", block.get("set_b")) == block.get("set_b"):
            acc.append(line)
        else:
            mism.append(line)
    snr = block.get("snr_db")
    if "snr_db" in current and snr is not None and not snr[0] - 1e-9 <= float(current["snr_db"]) <= snr[1] + 1e-9:
        notes.append(f"snr_db {float(current['snr_db']):g} outside [{snr[0]:g}, {snr[1]:g}]")
    if "scenario" in current and current["scenario"] != block.get("scenario"):
        notes.append(f"scenario {json.dumps(current['scenario'], sort_keys=True)} differs from {json.dumps(block.get('scenario'), sort_keys=True)}")
    return Applicability(not mism, tuple(mism), tuple(acc), tuple(notes))
