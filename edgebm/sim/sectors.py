"""Sector panels and coverage regions of a scenario (see :class:`~edgebm.sim.ScenarioConfig`)."""

from __future__ import annotations

import numpy as np

from .config import ScenarioConfig
from .geometry import City, make_city

__all__ = ["sector_boresights", "coverage_az_ranges", "in_coverage", "MIN_UE_DISTANCE_M"]

MIN_UE_DISTANCE_M = 10.0


def sector_boresights(cfg: ScenarioConfig) -> np.ndarray:
    """Boresight azimuth (deg, global frame) of each sector panel, shape (sectors,)."""
    az0 = make_city(cfg.city).boresight_az_deg
    if cfg.sectors == 3:
        return np.array([az0, az0 + 120.0, az0 + 240.0], dtype=np.float64) % 360.0
    if cfg.region == "all":
        return np.array([az0 % 360.0])
    return np.array([45.0 + 90.0 * int(cfg.region[1])])


def coverage_az_ranges(cfg: ScenarioConfig) -> tuple[float, float]:
    """Azimuth interval ``[lo, lo + width)`` (deg) where UEs are dropped / allowed to drive."""
    if cfg.region != "all":
        q = int(cfg.region[1])
        return 90.0 * q, 90.0
    if cfg.sectors == 1:
        return float(sector_boresights(cfg)[0]) - 60.0, 120.0
    return 0.0, 360.0


def in_coverage(city: City, cfg: ScenarioConfig, xy: np.ndarray, slack_m: float = 0.0) -> np.ndarray:
    """True where points ``xy`` (..., 2) m lie in the scenario's coverage area: horizontal distance
    from the BS in ``[10 m, coverage radius + slack_m]`` and azimuth inside :func:`coverage_az_ranges`."""
    xy = np.asarray(xy, dtype=np.float64)
    r = np.hypot(xy[..., 0], xy[..., 1])
    lo, width = coverage_az_ranges(cfg)
    az = np.degrees(np.arctan2(xy[..., 1], xy[..., 0]))
    rel = (az - lo) % 360.0
    return (r >= MIN_UE_DISTANCE_M) & (r <= city.coverage_radius_m + slack_m) & (rel < width)
