"""Path tables: the interchange format for ray-traced (or simulated) multipath, and the builder that
turns one into a :class:`~edgebm.data.BeamDataset` with the simulator's own channel, codebook and
RSRP code.

A path table is a ``.npz`` (or a dict of arrays) holding, for N receivers (UEs) and up to P paths
per UE (padded with NaN), the DeepMIMO v4 matrices under their DeepMIMO names, angles and units
(degrees, elevation measured from the zenith, power in dBW, delay in s), so a dict of DeepMIMO
arrays plus ``carrier_hz`` can be saved unchanged. See ``docs/path_table.md`` and
:data:`PATH_FIELDS`.

:func:`dataset_from_path_table` converts the table into the simulator's
:class:`~edgebm.sim.PathSet` (dBW -> dBm: +30 dB) and measures it with
:func:`edgebm.sim.measure_paths` (which calls :func:`~edgebm.sim.channel_from_paths`,
:func:`~edgebm.sim.ue_combiner`, :func:`~edgebm.sim.noise_dbm_for_snr` and
:func:`~edgebm.sim.measure_rsrp`) and :func:`~edgebm.sim.build_codebooks`: one implementation for
simulated and imported data. The Set B noise is drawn from the same random stream
:func:`~edgebm.sim.simulate` uses for the same ``seed`` (third child of
``np.random.default_rng(seed).spawn(3)``), in the same order, so a simulator run written as a path
table and re-imported with the simulator's seed gives the simulator's RSRP bit for bit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError
from ..sim.config import radio_default
from .dataset import BeamDataset, DatasetError, atomic_write
from .npz import read_npz, write_npz

__all__ = ["PATH_FIELDS", "PATH_MATRICES", "INTERACTION_CODES", "MAX_POWER_DBW", "MAX_DELAY_S", "GENERATOR",
           "WRITER", "save_path_table", "load_path_table", "validate_path_table", "pathset_from_table",
           "dataset_from_path_table", "is_path_table_file"]

log = logging.getLogger(__name__)

GENERATOR = "edgebm.data.paths/1"
#: the ``writer`` mark :func:`save_path_table` puts in every table it writes: commands replace an existing
#: path table only when it carries it (a table converted by the user's own tools is never overwritten)
WRITER = "edgebm"

# name -> (shape, dtype kinds, unit, required, meaning). Shape letters: N users, P path slots,
# I interactions per path; "scalar" = 0-d (or one-element) array; "3|1x3" = (3,) or (1, 3).
PATH_FIELDS: dict[str, tuple[str, str, str, bool, str]] = {
    "rx_pos": ("N,3", "fiu", "m", True, "receiver (UE) positions x, y, z"),
    "tx_pos": ("3|1x3", "fiu", "m", True, "transmitter (BS array centre) position x, y, z"),
    "power": ("N,P", "f", "dBW", True, "received power of each path with isotropic antennas"),
    "phase": ("N,P", "f", "deg", True, "phase of each path at the carrier"),
    "delay": ("N,P", "f", "s", True, "propagation delay of each path"),
    "aoa_az": ("N,P", "f", "deg", True, "azimuth of arrival, counter-clockwise from +x"),
    "aoa_el": ("N,P", "f", "deg", True, "elevation of arrival measured from the zenith (90 = horizon)"),
    "aod_az": ("N,P", "f", "deg", True, "azimuth of departure, counter-clockwise from +x"),
    "aod_el": ("N,P", "f", "deg", True, "elevation of departure measured from the zenith (90 = horizon)"),
    "inter": ("N,P", "fiu", "code", True, "interaction codes: 0 LoS, 1 reflection, 2 diffraction, 3 scattering, "
              "4 transmission; one digit per interaction, tx side first (11 = two reflections); NaN or -1 padding"),
    "carrier_hz": ("scalar", "fiu", "Hz", True, "carrier frequency"),
    "num_paths": ("N", "iu", "", False, "number of valid paths of each user (the first num_paths slots); "
                  "default: number of non-NaN power values"),
    "power_unit": ("scalar", "U", "", False, "unit of `power`; only 'dBW' is accepted"),
    "bs_boresight_az": ("scalar", "fiu", "deg", False, "BS panel boresight azimuth (default for the importer)"),
    "bs_downtilt": ("scalar", "fiu", "deg", False, "BS panel downtilt (default for the importer)"),
    "inter_pos": ("N,P,I,3", "f", "m", False, "DeepMIMO interaction positions (carried, not used)"),
    "los": ("N", "fiub", "", False, "DeepMIMO LoS status -1/0/1 or a boolean (carried; the importer derives LoS "
            "from `inter`)"),
    "writer": ("scalar", "U", "", False, "program that wrote the file; save_path_table writes 'edgebm' (edgebm "
               "commands replace only tables marked so)"),
}
PATH_MATRICES = ("power", "phase", "delay", "aoa_az", "aoa_el", "aod_az", "aod_el", "inter")
INTERACTION_CODES = {0: "line of sight", 1: "reflection", 2: "diffraction", 3: "scattering", 4: "transmission"}
MAX_POWER_DBW = 0.0       # a received path power of 1 W or more means the unit is wrong (W or dBm)
MAX_DELAY_S = 1e-3        # 300 km of propagation; larger values are ns / us
CARRIER_RANGE_HZ = (1e8, 1e12)
_ANGLE_LIMITS = {"aoa_az": (-360.0, 360.0), "aod_az": (-360.0, 360.0), "aoa_el": (0.0, 180.0),
                 "aod_el": (0.0, 180.0), "phase": (-360.0, 360.0)}
_ANGLE_TOL = 1e-3
_MIN_PHASE_FOR_RADIAN_CHECK = 16


def _err(source: str, name: str, msg: str) -> DatasetError:
    return DatasetError(f"{source}: field '{name}': {msg}")


def _first_bad(mask: np.ndarray) -> str:
    idx = tuple(int(v) for v in np.argwhere(mask)[0])
    return f"user {idx[0]}, path {idx[1]}" if len(idx) == 2 else f"index {idx}"


def _scalar(arrays: Mapping[str, Any], name: str, source: str) -> Any:
    a = np.asarray(arrays[name])
    if a.size != 1 or a.ndim > 1:
        raise _err(source, name, f"expected a scalar, got shape {a.shape}")
    return a.reshape(()).item()


def _num(arrays: Mapping[str, Any], name: str, source: str) -> np.ndarray:
    a = np.asarray(arrays[name])
    kinds = PATH_FIELDS[name][1]
    if a.dtype.kind not in kinds:
        want = "float" if kinds == "f" else "numeric"
        raise _err(source, name, f"expected a {want} array, got dtype {a.dtype}")
    return a


def validate_path_table(arrays: Mapping[str, Any], source: str = "<path table>") -> dict[str, np.ndarray]:
    """Check a path table; raise :class:`DatasetError` naming the first bad field.

    Returns a new dict with the same arrays (as numpy arrays, not copied) plus ``num_paths`` (N,)
    int32 when it was absent (derived from the non-NaN ``power`` values, as DeepMIMO does).
    Rules (see ``docs/path_table.md``): known field names only; required fields present; shapes
    (N, 3) / (3,) or (1, 3) / (N, P) / (N,); no NaN or inf in the first ``num_paths`` slots of
    any path matrix and no path power after them; ``power_unit`` (optional) must be ``"dBW"``;
    counted powers must be below 0 dBW (a received path power of 1 W or more means W or dBm);
    elevations in [0, 180] deg and not all within [0, pi] (radians); azimuths and phases in
    [-360, 360] deg (phases not all within [-pi, pi] when there are 16 or more); delays in
    [0, 1 ms]; interaction codes are digits 1-4 (or 0 alone for LoS); ``carrier_hz`` in
    [1e8, 1e12] Hz. Users with ``num_paths == 0`` are valid (dropped by the importer).
    """
    if not isinstance(arrays, Mapping):
        raise DatasetError(f"{source}: expected a dict of arrays, got {type(arrays).__name__}")
    for name in arrays:
        if name not in PATH_FIELDS:
            raise _err(source, name, f"unknown field (known: {', '.join(PATH_FIELDS)})")
    for name, spec in PATH_FIELDS.items():
        if spec[3] and name not in arrays:
            raise _err(source, name, f"missing ({spec[4]}, {spec[2] or 'unitless'})")
    out: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in arrays.items()}

    if "power_unit" in out:
        unit = str(_scalar(out, "power_unit", source))
        if unit != "dBW":
            raise _err(source, "power_unit", f"unknown unit {unit!r}; the path table stores power in 'dBW' "
                       "(dBW = dBm - 30 = 10 log10(W))")

    if "writer" in out and (out["writer"].dtype.kind != "U" or out["writer"].size != 1):
        raise _err(source, "writer", f"expected a string, got a {out['writer'].dtype} array of shape {out['writer'].shape}")

    rx = _num(out, "rx_pos", source)
    if rx.ndim != 2 or rx.shape[1] != 3:
        raise _err(source, "rx_pos", f"expected shape (N, 3), got {rx.shape}")
    if not np.isfinite(rx).all():
        raise _err(source, "rx_pos", f"NaN/inf at row {int(np.argwhere(~np.isfinite(rx))[0, 0])}")
    n = rx.shape[0]
    tx = _num(out, "tx_pos", source)
    if tx.shape not in ((3,), (1, 3)):
        raise _err(source, "tx_pos", f"expected shape (3,) or (1, 3) (one transmitter), got {tx.shape}")
    if not np.isfinite(tx).all():
        raise _err(source, "tx_pos", "NaN/inf")

    power = _num(out, "power", source)
    if power.ndim != 2 or power.shape[0] != n:
        raise _err(source, "power", f"expected shape (N, P) with N = {n} (rows of rx_pos), got {power.shape}")
    p_slots = power.shape[1]
    for name in PATH_MATRICES[1:]:
        a = _num(out, name, source)
        if a.shape != power.shape:
            raise _err(source, name, f"expected shape {power.shape} (like power), got {a.shape}")

    if "num_paths" in out:
        num = _num(out, "num_paths", source)
        if num.shape != (n,):
            raise _err(source, "num_paths", f"expected shape ({n},), got {num.shape}")
        if n and (num.min() < 0 or num.max() > p_slots):
            raise _err(source, "num_paths", f"values must be in [0, {p_slots}] (path slots), got "
                       f"[{int(num.min())}, {int(num.max())}]")
    else:
        num = np.isfinite(power).sum(1).astype(np.int32)
        out["num_paths"] = num
    counted = np.arange(p_slots)[None, :] < np.asarray(num)[:, None]

    beyond = ~counted & np.isfinite(power)
    if beyond.any():
        raise _err(source, "num_paths", f"{_first_bad(beyond)} has a finite power beyond num_paths "
                   "(padding must be NaN, or num_paths is too small)")
    for name in PATH_MATRICES:
        a = out[name]
        bad = counted & ~np.isfinite(a)
        if bad.any():
            raise _err(source, name, f"{int(bad.sum())} NaN/inf value(s) inside num_paths (first at "
                       f"{_first_bad(bad)}); missing paths must come after the valid ones")

    if counted.any():
        pw = power[counted]
        if pw.max() > MAX_POWER_DBW:
            raise _err(source, "power", f"{int((pw > MAX_POWER_DBW).sum())} value(s) above {MAX_POWER_DBW:g} dBW "
                       f"(max {float(pw.max()):.3g}); a received path power of 1 W or more means the unit is "
                       "wrong: linear W or dBm? The path table stores 10 log10(P / 1 W) (dBW)")
        for name, (lo, hi) in _ANGLE_LIMITS.items():
            v = out[name][counted].astype(np.float64)
            if v.min() < lo - _ANGLE_TOL or v.max() > hi + _ANGLE_TOL:
                raise _err(source, name, f"values must be in [{lo:g}, {hi:g}] deg, got [{v.min():.4g}, {v.max():.4g}]"
                           + (" (elevation is measured from the zenith, 90 = horizon)" if name.endswith("_el") else ""))
            if name.endswith("_el") and v.max() <= np.pi + 1e-6:
                raise _err(source, name, f"all values are within [0, pi] (max {v.max():.4g}): looks like radians; "
                           "the path table wants degrees from the zenith")
            if name == "phase" and v.size >= _MIN_PHASE_FOR_RADIAN_CHECK and np.abs(v).max() <= np.pi + 1e-6:
                raise _err(source, name, f"all {v.size} values are within [-pi, pi]: looks like radians; "
                           "the path table wants degrees")
        d = out["delay"][counted].astype(np.float64)
        if d.min() < 0 or d.max() > MAX_DELAY_S:
            raise _err(source, "delay", f"values must be in [0, {MAX_DELAY_S:g}] s, got [{d.min():.4g}, {d.max():.4g}]"
                       " (ns or us instead of s?)")
        code = out["inter"][counted].astype(np.float64)
        if (code != np.round(code)).any() or code.min() < 0:
            raise _err(source, "inter", "interaction codes must be non-negative integers inside num_paths")
        c = code.astype(np.int64)
        ok = np.ones(c.shape, bool)
        rest = c.copy()
        while (rest > 0).any():
            digit = rest % 10
            ok &= (rest == 0) | ((digit >= 1) & (digit <= 4))
            rest //= 10
        if not ok.all():
            raise _err(source, "inter", f"invalid code {int(c[~ok][0])}: one digit per interaction, each 1 "
                       "(reflection), 2 (diffraction), 3 (scattering) or 4 (transmission); 0 alone = LoS")

    f = float(_scalar(out, "carrier_hz", source)) if out["carrier_hz"].dtype.kind in "fiu" else None
    if out["carrier_hz"].dtype.kind not in "fiu" or not np.isfinite(f) or not CARRIER_RANGE_HZ[0] <= f <= CARRIER_RANGE_HZ[1]:
        raise _err(source, "carrier_hz", f"expected a frequency in Hz in [{CARRIER_RANGE_HZ[0]:g}, "
                   f"{CARRIER_RANGE_HZ[1]:g}], got {out['carrier_hz']!r} (GHz instead of Hz?)")
    for name in ("bs_boresight_az", "bs_downtilt"):
        if name in out:
            v = _scalar(out, name, source)
            if out[name].dtype.kind not in "fiu" or not np.isfinite(v) or abs(float(v)) > 360:
                raise _err(source, name, f"expected an angle in deg, got {v!r}")
    if "inter_pos" in out:
        ip = _num(out, "inter_pos", source)
        if ip.ndim != 4 or ip.shape[:2] != power.shape or ip.shape[3] != 3:
            raise _err(source, "inter_pos", f"expected shape (N, P, I, 3) = {power.shape + ('I', 3)}, got {ip.shape}")
    if "los" in out:
        lo_ = _num(out, "los", source)
        if lo_.shape != (n,):
            raise _err(source, "los", f"expected shape ({n},), got {lo_.shape}")
    return out


def save_path_table(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """Validate ``arrays`` (see :func:`validate_path_table`) and write them to ``path`` (.npz,
    compressed) atomically, under the same names and dtypes (plus ``num_paths`` when absent and the
    ``writer`` mark :data:`WRITER`)."""
    table = validate_path_table(arrays, source=str(path))
    table["writer"] = np.array(WRITER)
    return atomic_write(path, lambda f: write_npz(f, table))


def is_path_table_file(path: str | Path) -> bool:
    """Whether ``path`` is a path table written by :func:`save_path_table` (its ``writer`` mark is
    :data:`WRITER` and the required fields are there), judged from the npy headers and the one-string
    ``writer`` member without inflating any array: the test commands use before replacing an output file."""
    import zipfile
    import zlib

    from .npz import npz_headers

    try:
        with zipfile.ZipFile(path) as zf:
            headers = npz_headers(zf, str(path), "path table")
            if "writer" not in headers or any(spec[3] and name not in headers for name, spec in PATH_FIELDS.items()):
                return False
            h = headers["writer"]
            if h.dtype.kind != "U" or h.shape != ():
                return False
            with zf.open(h.info) as f:
                return str(np.lib.format.read_array(f, allow_pickle=False)) == WRITER
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError):
        return False


def load_path_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a path table ``.npz``; :class:`DatasetError` names the bad field."""
    return validate_path_table(read_npz(path, "path table"), source=str(path))


def _as_table(table: Mapping[str, Any] | str | Path, source: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(table, (str, Path)):
        return load_path_table(table), str(table)
    src = source or "<path table>"
    return validate_path_table(table, source=src), src


def pathset_from_table(table: Mapping[str, Any] | str | Path):
    """Convert a path table (dict or ``.npz`` path) to the simulator's path set.

    Returns ``(PathSet, ue_pos (M, 3) float32, info)`` for the M users that have at least one path;
    users with ``num_paths == 0`` are dropped (count logged and in ``info``). Power dBW -> dBm
    (+30 dB, computed in float64, so a table written by :func:`edgebm.sim.pathtable.sim_to_path_table`
    round-trips exactly), slots after ``num_paths`` set to NaN, interaction codes to int16 with -1
    padding (codes of 5 or more digits, beyond int16, are stored as 32767; only code 0 matters
    downstream). ``info``: ``n_users``, ``n_kept``, ``n_dropped``, ``kept`` (indices into the
    table), ``los`` (M,) bool (any path with code 0), ``max_paths``, ``tx_pos`` (3,) float64,
    ``carrier_hz``, ``source``.
    """
    t, src = _as_table(table)
    return _pathset(t, src)


def _pathset(t: dict[str, np.ndarray], src: str):
    from ..sim import PathSet

    num = np.asarray(t["num_paths"]).astype(np.int64)
    n, p_slots = t["power"].shape
    kept = np.flatnonzero(num > 0)
    n_drop = int(n - kept.size)
    if n_drop:
        log.info("%s: dropped %d of %d user(s) with no path", src, n_drop, n)
    num_k = num[kept]
    p_max = int(num_k.max()) if kept.size else 0
    counted = np.arange(p_max)[None, :] < num_k[:, None]

    def col(name: str, offset: float = 0.0) -> np.ndarray:
        a = np.asarray(t[name])[kept, :p_max].astype(np.float64)
        return np.where(counted, a + offset, np.nan).astype(np.float32)

    inter_f = np.where(counted, np.asarray(t["inter"])[kept, :p_max].astype(np.float64), -1.0)
    inter = np.minimum(inter_f, np.iinfo(np.int16).max).astype(np.int16)
    ps = PathSet(power_dbm=col("power", 30.0), phase_deg=col("phase"), delay_s=col("delay"), aod_az=col("aod_az"),
                 aod_el=col("aod_el"), aoa_az=col("aoa_az"), aoa_el=col("aoa_el"), inter=inter,
                 num_paths=num_k.astype(np.int32))
    info = {"n_users": int(n), "n_kept": int(kept.size), "n_dropped": n_drop, "kept": kept,
            "los": (counted & (inter_f == 0)).any(1), "max_paths": int(p_slots),
            "tx_pos": np.asarray(t["tx_pos"], np.float64).reshape(3), "carrier_hz": float(_scalar(t, "carrier_hz", src)),
            "source": src}
    return ps, np.asarray(t["rx_pos"])[kept].astype(np.float32), info


def _wrap180(a: np.ndarray | float) -> np.ndarray:
    """Angles (deg) wrapped into (-180, 180]."""
    return 180.0 - np.mod(180.0 - np.asarray(a, dtype=np.float64), 360.0)


def _panel_config(boresight: float) -> tuple[str, str, float]:
    """(city, region, rotation deg) of a single-sector ScenarioConfig whose panel points at
    ``boresight``. The simulator's panel azimuth is fixed by (city, region); when none matches,
    city0 / "all" is used and every AoD azimuth is rotated by ``rotation`` (= that panel's
    azimuth - boresight) before measuring: rotating the panel and all departure directions about
    the vertical axis by the same angle leaves every panel-frame direction, element gain and
    steering vector unchanged (UE-side angles stay in the global frame)."""
    from ..sim import CITY_NAMES, make_city

    cands = [(c, "all", float(make_city(c).boresight_az_deg)) for c in CITY_NAMES]
    cands += [(CITY_NAMES[0], f"q{q}", 45.0 + 90.0 * q) for q in range(4)]
    for city, region, az in cands:
        if abs(float(_wrap180(az - boresight))) < 1e-9:
            return city, region, 0.0
    city, region, az = cands[0]
    return city, region, float(_wrap180(az - boresight))


def _default_boresight(ue_pos: np.ndarray, tx_pos: np.ndarray) -> float:
    """Circular mean azimuth (deg) of the users seen from the transmitter: the simulator drops UEs
    in a wedge centred on its panel's boresight, so an imported panel points at the users' centre."""
    v = np.asarray(ue_pos, np.float64)[:, :2] - tx_pos[:2]
    az = np.arctan2(v[:, 1], v[:, 0])
    return float(np.degrees(np.arctan2(np.sin(az).mean(), np.cos(az).mean())))


def dataset_from_path_table(
    table: Mapping[str, Any] | str | Path,
    bs_array: tuple[int, int] = radio_default("bs_array"),
    ue_array: tuple[int, int] = radio_default("ue_array"),
    set_b: int = radio_default("set_b"),
    set_a: int = radio_default("set_a"),
    snr_db: float = radio_default("snr_db"),
    n_subcarriers: int = radio_default("n_subcarriers"),
    bandwidth_hz: float = radio_default("bandwidth_hz"),
    seed: int = 0,
    boresight_az_deg: float | None = None,
    downtilt_deg: float | None = None,
    codebook_a: str = radio_default("codebook_a"),
    codebook_seed: int = radio_default("codebook_seed"),
) -> tuple[BeamDataset, dict[str, Any]]:
    """Measure a path table into a :class:`BeamDataset` with the simulator's codebooks and RSRP.

    ``table``: dict of arrays or ``.npz`` path (validated). One BS panel (single sector) at
    ``tx_pos``: boresight ``boresight_az_deg`` (default: the table's ``bs_boresight_az``, else the
    circular mean azimuth of the users seen from ``tx_pos``), downtilt ``downtilt_deg`` (default:
    the table's ``bs_downtilt``, else the simulator's 8 deg). Noise: the Set B noise stream is
    ``np.random.default_rng(seed).spawn(3)[2]``, the one :func:`edgebm.sim.simulate` uses for the
    same seed, consumed in the same chunked order. Users without paths are dropped.

    Returns ``(dataset, info)``; ``info`` has ``n_users``, ``n_kept``, ``n_dropped``, ``kept``
    (table row of each dataset row), ``boresight_az_deg``, ``downtilt_deg``, ``aod_rotation_deg``
    (see :func:`_panel_config`), ``carrier_hz``. ``pos`` is ``rx_pos`` unchanged (the table's frame);
    ``los`` = any path with interaction code 0. Raises :class:`DatasetError` for a bad table, no
    user with a path, or a parameter the scenario config rejects.
    """
    from ..sim import ScenarioConfig, build_codebooks, measure_paths, serving_sector
    from .simulated import NOISE_NOTE, codebook_arrays, radio_meta

    t, src = _as_table(table)
    ps, pos, info = _pathset(t, src)
    info.pop("source")
    if info["n_kept"] == 0:
        raise DatasetError(f"{src}: field 'num_paths': no user has any path ({info['n_users']} user(s), all dropped)")
    extra = {k: t[k] for k in ("bs_boresight_az", "bs_downtilt") if k in t}
    if boresight_az_deg is None:
        boresight_az_deg = (float(np.asarray(extra["bs_boresight_az"]).reshape(())) if "bs_boresight_az" in extra
                            else _default_boresight(pos, info["tx_pos"]))
    if downtilt_deg is None:
        downtilt_deg = (float(np.asarray(extra["bs_downtilt"]).reshape(())) if "bs_downtilt" in extra
                        else float(radio_default("downtilt_deg")))
    if not np.isfinite(boresight_az_deg):
        raise DatasetError(f"{src}: boresight_az_deg must be finite, got {boresight_az_deg!r}")
    city, region, rot = _panel_config(float(boresight_az_deg))
    try:
        cfg = ScenarioConfig(city=city, region=region, sectors=1, carrier_hz=info["carrier_hz"], bs_array=tuple(bs_array),
                             ue_array=tuple(ue_array), set_b=set_b, set_a=set_a, snr_db=snr_db,
                             n_subcarriers=n_subcarriers, bandwidth_hz=bandwidth_hz, downtilt_deg=downtilt_deg,
                             codebook_a=codebook_a, codebook_seed=codebook_seed)
    except ConfigError as e:
        raise DatasetError(f"{src}: field '{e.field.replace('ScenarioConfig.', '')}': {e}") from None
    except TypeError as e:
        raise DatasetError(f"{src}: {e}") from None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise DatasetError(f"{src}: seed must be an integer >= 0, got {seed!r}")
    if rot != 0.0:
        ps = type(ps)(**{**{f: getattr(ps, f) for f in ("power_dbm", "phase_deg", "delay_s", "aod_el", "aoa_az",
                                                          "aoa_el", "inter", "num_paths")},
                         "aod_az": _wrap180(ps.aod_az.astype(np.float64) + rot).astype(np.float32)})
    r_noise = np.random.default_rng(int(seed)).spawn(3)[2]
    sector = serving_sector(ps, cfg)
    rsrp_b, rsrp_a, noise = measure_paths(cfg, ps, sector, r_noise)
    cbs = codebook_arrays(build_codebooks(cfg))
    if rot != 0.0:
        for k in ("cb_a_az", "cb_b_az"):
            cbs[k] = _wrap180(cbs[k].astype(np.float64) - rot).astype(np.float32)
    n = len(ps)
    arrays = {
        "rsrp_b": rsrp_b, "rsrp_a": rsrp_a, "best_a": np.argmax(rsrp_a, 1).astype(np.int64), "pos": pos,
        "los": np.asarray(info["los"], bool), "snr_db": np.full(n, cfg.snr_db, np.float32), "noise_dbm": noise,
        "sector": np.asarray(sector, np.int8),
    }
    scenario = {k: v for k, v in cfg.to_dict().items() if k not in ("city", "region", "tx_power_dbm", "bs_height_m",
                                                                     "n_scatterers", "vehicle_fraction")}
    scenario.update({"source": "path_table", "boresight_az_deg": float(boresight_az_deg),
                     "tx_pos": [float(v) for v in info["tx_pos"]]})
    meta = radio_meta(cfg, scenario, seed, "path_table", generator=GENERATOR,
                      noise=NOISE_NOTE + "; noise stream = numpy default_rng(seed).spawn(3)[2], as edgebm.sim.simulate")
    meta["codebook"] = {"set_a": codebook_a, "codebook_seed": int(codebook_seed), "set_b": "dft",
                        "boresight_az_deg": float(boresight_az_deg), "downtilt_deg": float(downtilt_deg), "sectors": 1}
    meta["path_table"] = {"file": src if isinstance(table, (str, Path)) else None, "n_users": info["n_users"],
                          "n_dropped": info["n_dropped"], "max_paths": info["max_paths"]}
    ds = BeamDataset(arrays=arrays, codebooks=cbs, meta=meta)
    info.update({"boresight_az_deg": float(boresight_az_deg), "downtilt_deg": float(downtilt_deg),
                 "aod_rotation_deg": rot})
    return ds, info
