"""Domain-randomised scenario: every sample comes from one of K procedurally drawn cities.

A :class:`RandomScenario` with dataset seed ``s`` defines K cities ``k = 0 .. K-1``. City ``k`` is
``rand-<s>-<k>`` (its layout, host corner and panel boresight come from
:func:`edgebm.sim.geometry.make_city`) plus a placement drawn from the second child of
``SeedSequence([RANDOM_CITY_DOMAIN, s, k])``, always in this order: BS height (m), downtilt (deg),
diffuse scatterers per UE, UE array index, carrier index. :meth:`RandomScenario.city_config` turns
(s, k) into an ordinary :class:`~edgebm.sim.ScenarioConfig`, so one random city can be simulated on
its own (fresh drops for per-city evaluation) with :func:`~edgebm.sim.simulate`.

Fixed for the whole dataset (from ``base``): BS array, Set A / Set B codebooks (same beam index =
same panel-frame beam in every city), subcarriers, bandwidth, transmit power, sectors. Drawn per
city: everything of the layout and placement above; UE array (from :data:`TESTED_UE_ARRAYS`) and
carrier (from :data:`TESTED_CARRIERS_HZ`) when asked to. Drawn per sample: the city (uniform over
the cities of the stream) and the per-element SNR (uniform over ``snr_db``, dB).

The named test cities ``city0 .. city3`` are never produced (see :mod:`edgebm.sim.geometry`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .channel import serving_sector
from .codebooks import build_codebooks
from .config import TESTED_CARRIERS_HZ, TESTED_UE_ARRAYS, ScenarioConfig
from .geometry import RANDOM_CITY_DOMAIN, make_city, random_city_name, random_city_streams
from .paths import find_paths
from .scenario import SampleArrays, drop_ues, measure_paths

__all__ = ["RandomScenario", "RandomSimResult", "simulate_random", "RANDOM_SAMPLES_DOMAIN", "MAX_CITIES"]

RANDOM_SAMPLES_DOMAIN = 0x52534D50   # "RSMP": SeedSequence([RANDOM_SAMPLES_DOMAIN, seed, stream(, k)])
MAX_CITIES = 10_000_000
# base fields that each city replaces (so a base value there is not used)
_PER_CITY = ("city", "region", "snr_db", "bs_height_m", "downtilt_deg", "n_scatterers")


def _range(name: str, v: Any, lo: float, hi: float, unit: str, integer: bool = False) -> tuple[Any, Any]:
    ok = isinstance(v, (tuple, list)) and len(v) == 2 and all(
        isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in v)
    if ok:
        a, b = (int(x) for x in v) if integer else (float(x) for x in v)
        ok = (all(math.isfinite(float(x)) for x in v) and lo <= a <= b <= hi
              and (not integer or all(float(x) == int(x) for x in v)))
    if not ok:
        kind = "integers" if integer else "numbers"
        raise ConfigError(f"RandomScenario.{name}", f"{v!r} is invalid",
                          f"a (low, high) pair of {kind} with {lo:g} <= low <= high <= {hi:g} {unit}".rstrip())
    return a, b


@dataclass(frozen=True)
class RandomScenario:
    """K procedurally drawn cities with randomised BS placement, scatterers, SNR and optionally UE array
    and carrier (see the module doc). The dataset seed is passed separately (``generate_dataset(rs, n, seed)``).

    cities: K >= 1. snr_db: (low, high) per-sample per-element SNR range, dB. random_ue_array: draw the UE
    array per city from :data:`TESTED_UE_ARRAYS` (else ``base.ue_array``). random_carrier: draw the carrier per
    city from :data:`TESTED_CARRIERS_HZ` (else ``base.carrier_hz``). bs_height_m (m), downtilt_deg (deg),
    n_scatterers: per-city uniform ranges. base: the fixed radio settings (arrays, codebooks, subcarriers,
    bandwidth, tx power, sectors); its city, region, SNR, BS height, downtilt and scatterers are replaced
    per city and must stay at their defaults (``region="all"``).
    """

    cities: int = 100
    snr_db: tuple[float, float] = (0.0, 30.0)
    random_ue_array: bool = False
    random_carrier: bool = False
    bs_height_m: tuple[float, float] = (15.0, 25.0)
    downtilt_deg: tuple[float, float] = (4.0, 12.0)
    n_scatterers: tuple[int, int] = (0, 6)
    base: ScenarioConfig = field(default_factory=ScenarioConfig)

    def __post_init__(self) -> None:
        k = self.cities
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_CITIES:
            raise ConfigError("RandomScenario.cities", f"{k!r} is invalid", f"an integer in 1..{MAX_CITIES}")
        object.__setattr__(self, "cities", int(k))
        object.__setattr__(self, "snr_db", _range("snr_db", self.snr_db, -50.0, 80.0, "dB"))
        object.__setattr__(self, "bs_height_m", _range("bs_height_m", self.bs_height_m, 15.0, 25.0, "m"))
        object.__setattr__(self, "downtilt_deg", _range("downtilt_deg", self.downtilt_deg, 0.0, 30.0, "deg"))
        object.__setattr__(self, "n_scatterers", _range("n_scatterers", self.n_scatterers, 0, 20, "", integer=True))
        for name in ("random_ue_array", "random_carrier"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"RandomScenario.{name}", f"{getattr(self, name)!r} is invalid", "True or False")
        if not isinstance(self.base, ScenarioConfig):
            raise ConfigError("RandomScenario.base", f"expected a ScenarioConfig, got {type(self.base).__name__}")
        defaults = ScenarioConfig()
        for name in _PER_CITY:
            if name not in ("city", "snr_db") and getattr(self.base, name) != getattr(defaults, name):
                raise ConfigError(f"RandomScenario.base.{name}", f"{getattr(self.base, name)!r} is drawn per city",
                                  f"leave it at {getattr(defaults, name)!r} and set the RandomScenario range instead")

    # ---------------------------------------------------------------- cities
    def city_config(self, seed: int, k: int) -> ScenarioConfig:
        """The :class:`ScenarioConfig` of random city ``k`` (0 <= k < cities) of dataset seed ``seed``. Its
        ``snr_db`` is the middle of the SNR range (replace it for a fixed-SNR evaluation)."""
        seed, k = _nonneg("seed", seed), _nonneg("k", k)
        if k >= self.cities:
            raise ConfigError("k", f"{k} is out of range", f"0 <= k < cities ({self.cities})")
        _, rng = random_city_streams(seed, k)
        h = float(rng.uniform(*self.bs_height_m))
        tilt = float(rng.uniform(*self.downtilt_deg))
        n_sc = int(rng.integers(self.n_scatterers[0], self.n_scatterers[1] + 1))
        i_ue = int(rng.integers(0, len(TESTED_UE_ARRAYS)))
        i_fc = int(rng.integers(0, len(TESTED_CARRIERS_HZ)))
        return dataclasses.replace(
            self.base, city=random_city_name(seed, k), region="all", snr_db=float(sum(self.snr_db) / 2),
            bs_height_m=h, downtilt_deg=tilt, n_scatterers=n_sc,
            ue_array=TESTED_UE_ARRAYS[i_ue] if self.random_ue_array else self.base.ue_array,
            carrier_hz=TESTED_CARRIERS_HZ[i_fc] if self.random_carrier else self.base.carrier_hz)

    def codebooks(self) -> dict[str, Any]:
        """The dataset's codebooks (:func:`~edgebm.sim.build_codebooks` of the base radio settings). Precoders,
        ``psi`` and ``children`` are those of every city; use panel-frame pointing (every city's panel differs)."""
        return build_codebooks(dataclasses.replace(self.base, region="all"))

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for dataset metadata; inverse of :meth:`from_dict` (``seed`` is added by the dataset)."""
        b = self.base
        return {
            "kind": "random", "cities": self.cities, "snr_db": list(self.snr_db),
            "ue_array": "random" if self.random_ue_array else list(b.ue_array),
            "carrier_hz": "random" if self.random_carrier else float(b.carrier_hz),
            "bs_height_m": list(self.bs_height_m), "downtilt_deg": list(self.downtilt_deg),
            "n_scatterers": list(self.n_scatterers), "bs_array": list(b.bs_array), "sectors": b.sectors,
            "set_b": b.set_b, "set_a": b.set_a, "codebook_a": b.codebook_a, "codebook_seed": b.codebook_seed,
            "n_subcarriers": b.n_subcarriers, "bandwidth_hz": b.bandwidth_hz, "tx_power_dbm": b.tx_power_dbm,
            "vehicle_fraction": b.vehicle_fraction, "city_domain": RANDOM_CITY_DOMAIN,
            "samples_domain": RANDOM_SAMPLES_DOMAIN,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RandomScenario":
        """Build from :meth:`to_dict` output (a dataset's ``meta["scenario"]``; its ``seed`` and ``stream`` are
        ignored, the domain tags checked)."""
        if not isinstance(d, dict) or d.get("kind") != "random":
            raise ConfigError("scenario.kind", f"{d.get('kind') if isinstance(d, dict) else d!r} is not 'random'",
                              "pass the meta['scenario'] of a random-scenario dataset")
        d = dict(d)
        d.pop("kind")
        d.pop("seed", None)
        d.pop("stream", None)
        for key, tag in (("city_domain", RANDOM_CITY_DOMAIN), ("samples_domain", RANDOM_SAMPLES_DOMAIN)):
            if d.pop(key, tag) != tag:
                raise ConfigError(f"scenario.{key}", "was written by another version of the random scenario",
                                  f"this edgebm uses {tag}")
        own = {"cities", "snr_db", "bs_height_m", "downtilt_deg", "n_scatterers"}
        kw: dict[str, Any] = {k: tuple(d.pop(k)) if isinstance(d.get(k), list) else d.pop(k) for k in own if k in d}
        ue, fc = d.pop("ue_array", [1, 1]), d.pop("carrier_hz", 28e9)
        kw["random_ue_array"], kw["random_carrier"] = ue == "random", fc == "random"
        if ue != "random":
            d["ue_array"] = ue
        if fc != "random":
            d["carrier_hz"] = fc
        kw["base"] = ScenarioConfig.from_dict(d)
        return cls(**kw)


def _nonneg(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 0:
        raise ConfigError(name, f"{v!r} is invalid", "an integer >= 0")
    return int(v)


@dataclass(frozen=True, eq=False)
class RandomSimResult(SampleArrays):
    """Output of :func:`simulate_random`: :class:`~edgebm.sim.scenario.SampleArrays` (``pos`` in the frame of the
    sample's own city, ``snr_db`` drawn per sample) plus city_id (N,) int32 (k of ``rand-<seed>-<k>``), the
    scenario, the dataset seed and the sample stream."""

    city_id: np.ndarray
    scenario: RandomScenario
    seed: int
    stream: int


def simulate_random(rs: RandomScenario, n_samples: int, seed: int, stream: int = 0,
                    cities: Sequence[int] | np.ndarray | None = None) -> RandomSimResult:
    """``n_samples`` UE drops spread over the random cities of ``rs`` with dataset seed ``seed``.

    ``cities``: the city indices this call draws from (default all ``0 .. K-1``); ``stream``: an index that
    makes independent sample streams over the same cities (a shard index). Random streams:
    ``SeedSequence([RANDOM_SAMPLES_DOMAIN, seed, stream])`` draws each sample's city (uniform over ``cities``)
    then its SNR (uniform over ``rs.snr_db``); the drops of city k come from
    ``SeedSequence([RANDOM_SAMPLES_DOMAIN, seed, stream, k]).spawn(3)`` -> (positions, scatterer field,
    noise), as :func:`~edgebm.sim.simulate`. Cities are simulated one after another (each city's geometry
    tables are built once per call), vectorised over the city's samples. Same arguments, same bytes.
    """
    n = _nonneg("n_samples", n_samples)
    seed, stream = _nonneg("seed", seed), _nonneg("stream", stream)
    if n < 1:
        raise ConfigError("n_samples", "0 is invalid", "an integer >= 1")
    pool = np.arange(rs.cities, dtype=np.int64) if cities is None else np.asarray(cities, dtype=np.int64).ravel()
    if pool.size == 0 or pool.min() < 0 or pool.max() >= rs.cities:
        raise ConfigError("cities", "must be a non-empty list of city indices", f"each in 0..{rs.cities - 1}")
    rng = np.random.default_rng(np.random.SeedSequence([RANDOM_SAMPLES_DOMAIN, seed, stream]))
    city_id = pool[rng.integers(0, pool.size, n)]
    snr = rng.uniform(rs.snr_db[0], rs.snr_db[1], n).astype(np.float32)
    base = rs.base
    out = {"rsrp_b": np.empty((n, base.set_b), np.float32), "rsrp_a": np.empty((n, base.set_a), np.float32),
           "pos": np.empty((n, 3), np.float32), "los": np.empty(n, bool), "noise_dbm": np.empty(n, np.float32),
           "sector": np.empty(n, np.int8)}
    for k in np.unique(city_id):       # one iteration per city, vectorised over its samples
        idx = np.flatnonzero(city_id == k)
        cfg = rs.city_config(seed, int(k))
        r_pos, r_paths, r_noise = np.random.default_rng(
            np.random.SeedSequence([RANDOM_SAMPLES_DOMAIN, seed, stream, int(k)])).spawn(3)
        city = make_city(cfg.city)
        pos = drop_ues(city, cfg, idx.size, r_pos)
        paths, los = find_paths(city, cfg, pos, r_paths)
        sector = serving_sector(paths, cfg)
        rsrp_b, rsrp_a, noise = measure_paths(cfg, paths, sector, r_noise, snr_db=snr[idx])
        for name, v in (("rsrp_b", rsrp_b), ("rsrp_a", rsrp_a), ("pos", pos), ("los", los), ("noise_dbm", noise),
                        ("sector", sector)):
            out[name][idx] = v
    return RandomSimResult(best_a=np.argmax(out["rsrp_a"], 1).astype(np.int64), snr_db=snr,
                           city_id=city_id.astype(np.int32), scenario=rs, seed=seed, stream=stream, **out)
