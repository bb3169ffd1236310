"""`ScenarioConfig`: every knob of a simulated scenario, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError
from .arrays import n_visible_oversampled
from .geometry import CITY_NAMES, is_city_name

__all__ = ["ScenarioConfig", "CITY_NAMES", "REGIONS", "TESTED_CARRIERS_HZ", "TESTED_UE_ARRAYS", "RADIO_OPTIONS",
           "radio_default"]

REGIONS: tuple[str, ...] = ("all", "q0", "q1", "q2", "q3")
TESTED_CARRIERS_HZ: tuple[float, ...] = (3.5e9, 15e9, 28e9)
TESTED_UE_ARRAYS: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (4, 4), (8, 8))
_UE_DIM_MAX = 16
_BS_DIM_MAX = 64


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu")


def _is_real(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
        hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iuf")


@dataclass(frozen=True)
class ScenarioConfig:
    """One simulated scenario (city, carrier, arrays, codebooks, noise, mobility mix).

    Units: Hz, dB, dBm, m, deg. Geometry: BS at ``(0, 0, bs_height_m)`` of the city frame (x east,
    y north, z up); azimuths counter-clockwise from +x; elevations measured from the zenith.

    Sectors: ``sectors=3`` -> three panels with boresights ``az0 + 0/120/240`` deg (``az0`` fixed per
    city), every UE served by the panel that gives it the most power. ``sectors=1`` -> one panel;
    with ``region="all"`` it points at the city's ``az0`` and UEs are dropped in its 120 deg wedge;
    with ``region="qI"`` it points at the centre of quadrant I (``45 + 90 I`` deg) and UEs are
    dropped in that quadrant (quadrant ``qI`` = azimuths ``[90 I, 90 I + 90)`` around the BS).

    ``city`` is a named test city (``city0`` .. ``city3``) or one random city ``rand-<seed>-<k>`` of
    :class:`~edgebm.sim.randomize.RandomScenario` (normally built by its ``city_config``).

    Fields: carrier_hz (Hz; 3.5e9, 15e9 and 28e9 are the tested ones), bs_array / ue_array (UPA
    rows, cols; half-wavelength), set_b / set_a (wide / narrow beams), codebook_a ("dft" or
    "random" = set_a beams of the x4 oversampled DFT drawn with codebook_seed), snr_db
    (per-element SNR before beamforming, dB), n_subcarriers over bandwidth_hz (Hz), tx_power_dbm
    (dBm), bs_height_m (15-25 m), downtilt_deg (deg), n_scatterers (diffuse scatterers per UE),
    vehicle_fraction (share of vehicles, the rest pedestrians, in trajectories).
    """

    city: str = "city0"
    carrier_hz: float = 28e9
    bs_array: tuple[int, int] = (8, 8)
    ue_array: tuple[int, int] = (1, 1)
    sectors: int = 1
    set_b: int = 16
    set_a: int = 64
    codebook_a: str = "dft"
    codebook_seed: int = 0
    snr_db: float = 20.0
    n_subcarriers: int = 24
    bandwidth_hz: float = 100e6
    tx_power_dbm: float = 30.0
    bs_height_m: float = 20.0
    downtilt_deg: float = 8.0
    n_scatterers: int = 3
    region: str = "all"
    vehicle_fraction: float = 0.7   # share of vehicles (rest pedestrians) in trajectories

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ConfigError:
            return ConfigError(f"ScenarioConfig.{name}", f"{getattr(self, name)!r} is invalid", f"allowed: {allowed}")

        def set_(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not is_city_name(self.city):
            raise bad("city", ", ".join(CITY_NAMES) + " or a random city rand-<seed>-<k>")
        for name, lo, hi, unit in (("carrier_hz", 0.5e9, 100e9, "Hz"), ("bandwidth_hz", 1e3, 2e9, "Hz"),
                                   ("snr_db", -50.0, 80.0, "dB"), ("tx_power_dbm", -30.0, 80.0, "dBm"),
                                   ("bs_height_m", 15.0, 25.0, "m"), ("downtilt_deg", 0.0, 30.0, "deg"),
                                   ("vehicle_fraction", 0.0, 1.0, "")):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(float(v)) or not lo <= float(v) <= hi:
                raise bad(name, f"a real number in [{lo:g}, {hi:g}] {unit}".rstrip())
            set_(name, float(v))
        if float(self.bandwidth_hz) >= float(self.carrier_hz):
            raise bad("bandwidth_hz", "less than carrier_hz")
        for name, dmax in (("bs_array", _BS_DIM_MAX), ("ue_array", _UE_DIM_MAX)):
            v = getattr(self, name)
            if (not isinstance(v, (tuple, list)) or len(v) != 2 or not all(_is_int(x) for x in v)
                    or not all(1 <= int(x) <= dmax for x in v)):
                raise bad(name, f"(rows, cols) with integers in 1..{dmax}, e.g. (8, 8)"
                          + ("; tested: (1, 1), (2, 2), (4, 4), (8, 8)" if name == "ue_array" else ""))
            set_(name, (int(v[0]), int(v[1])))
        n_tx = self.bs_array[0] * self.bs_array[1]
        for name, lo, hi in (("sectors", 1, 3), ("n_subcarriers", 1, 4096), ("n_scatterers", 0, 20),
                             ("codebook_seed", 0, 2**63 - 1), ("set_b", 1, n_tx), ("set_a", 1, 16 * n_tx)):
            v = getattr(self, name)
            allowed = {"sectors": "1 or 3", "set_b": f"an integer in 1..{n_tx} (BS elements), e.g. 4, 8, 16",
                       "set_a": f"an integer in 1..{16 * n_tx}, e.g. 64, 256"}.get(name, f"an integer in {lo}..{hi}")
            if not _is_int(v) or not lo <= int(v) <= hi or (name == "sectors" and int(v) == 2):
                raise bad(name, allowed)
            set_(name, int(v))
        if self.codebook_a not in ("dft", "random"):
            raise bad("codebook_a", "'dft' or 'random'")
        if self.set_a < self.set_b:
            raise bad("set_a", f"an integer >= set_b ({self.set_b})")
        if self.codebook_a == "random":
            n_vis = n_visible_oversampled(self.bs_array)
            if self.set_a > n_vis:
                raise bad("set_a", f"at most {n_vis} (visible beams of the x4 oversampled DFT) when codebook_a='random'")
        if self.region not in REGIONS:
            raise bad("region", ", ".join(REGIONS))

    @property
    def n_tx(self) -> int:
        """BS antenna elements."""
        return self.bs_array[0] * self.bs_array[1]

    @property
    def n_rx(self) -> int:
        """UE antenna elements."""
        return self.ue_array[0] * self.ue_array[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples as lists); inverse of :meth:`from_dict`."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScenarioConfig":
        """Build from :meth:`to_dict` output (lists accepted for tuples); unknown keys are an error."""
        if not isinstance(d, dict):
            raise ConfigError("ScenarioConfig", f"from_dict expects a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"ScenarioConfig.{unknown[0]}", f"unknown field(s) {unknown}", f"allowed: {sorted(known)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)


# The radio options every command that builds a scenario exposes, declared once: ScenarioConfig field ->
# (command-line flag, help). Defaults come from the ScenarioConfig fields themselves (:func:`radio_default`);
# the CLI parsers (``data generate``, ``data from-paths``) and the path-table importer read both from here.
RADIO_OPTIONS: dict[str, tuple[str, str]] = {
    "set_b": ("--set-b", "wide beams measured"),
    "set_a": ("--set-a", "narrow beams to predict"),
    "snr_db": ("--snr-db", "per-element SNR before beamforming, dB"),
    "carrier_hz": ("--carrier", "carrier, Hz (tested: 3.5e9, 15e9, 28e9)"),
    "bs_array": ("--bs-array", "BS UPA ROWSxCOLS"),
    "ue_array": ("--ue-array", "UE UPA ROWSxCOLS (tested: 1x1, 2x2, 4x4, 8x8)"),
    "n_subcarriers": ("--subcarriers", "OFDM subcarriers"),
    "bandwidth_hz": ("--bandwidth", "bandwidth, Hz"),
    "codebook_a": ("--codebook", "Set A codebook: dft or random"),
    "codebook_seed": ("--codebook-seed", "seed of the random Set A codebook"),
    "sectors": ("--sectors", "BS sectors: 1 or 3"),
    "region": ("--region", "all or a quadrant q0..q3"),
}


def radio_default(name: str) -> Any:
    """Default of ScenarioConfig field ``name`` (the one place radio defaults are declared)."""
    return {f.name: f.default for f in fields(ScenarioConfig)}[name]
