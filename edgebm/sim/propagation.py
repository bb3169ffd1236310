"""Propagation formulas: free-space loss, Fresnel reflection off concrete, knife-edge diffraction
and bistatic diffuse scattering. All gains in dB (negative = loss), lengths in m, frequencies in Hz."""

from __future__ import annotations

import numpy as np

__all__ = ["C0", "wavelength", "fspl_gain_db", "concrete_permittivity", "fresnel_te", "fresnel_tm",
           "knife_edge_loss_db", "scatter_gain_db"]

C0 = 299_792_458.0  # m/s


def wavelength(carrier_hz: float) -> float:
    """Free-space wavelength, m."""
    return C0 / float(carrier_hz)


def fspl_gain_db(d_m: np.ndarray, carrier_hz: float) -> np.ndarray:
    """Friis free-space gain between isotropic antennas, ``-20 log10(4 pi d / lambda)`` dB (d >= 1 m)."""
    lam = wavelength(carrier_hz)
    return -20.0 * np.log10(4.0 * np.pi * np.maximum(d_m, 1.0) / lam)


def concrete_permittivity(carrier_hz: float) -> complex:
    """Complex relative permittivity of concrete, ITU-R P.2040-3 Table 3 (1-100 GHz):
    eps' = 5.24, sigma = 0.0462 f_GHz^0.7822 S/m, eps'' = 17.98 sigma / f_GHz."""
    f_ghz = float(carrier_hz) / 1e9
    sigma = 0.0462 * f_ghz ** 0.7822
    return complex(5.24, -17.98 * sigma / f_ghz)


def _root(cos_i: np.ndarray, eps: complex) -> np.ndarray:
    sin2 = 1.0 - np.clip(cos_i, 0.0, 1.0) ** 2
    return np.sqrt(eps - sin2 + 0j)


def fresnel_te(cos_i: np.ndarray, eps: complex) -> np.ndarray:
    """Fresnel reflection coefficient, E perpendicular to the plane of incidence (TE); cos_i is the
    cosine of the incidence angle from the surface normal. Used for vertical walls (V-pol BS)."""
    c = np.clip(cos_i, 0.0, 1.0)
    r = _root(c, eps)
    return (c - r) / (c + r)


def fresnel_tm(cos_i: np.ndarray, eps: complex) -> np.ndarray:
    """Fresnel reflection coefficient, E in the plane of incidence (TM). Used for the ground (V-pol)."""
    c = np.clip(cos_i, 0.0, 1.0)
    r = _root(c, eps)
    return (eps * c - r) / (eps * c + r)


def knife_edge_loss_db(nu: np.ndarray) -> np.ndarray:
    """ITU-R P.526 single knife-edge loss J(nu) (dB, >= 0): ``6.9 + 20 log10(sqrt((nu-0.1)^2+1)+nu-0.1)``
    for nu > -0.78, else 0."""
    nu = np.asarray(nu, dtype=np.float64)
    j = 6.9 + 20.0 * np.log10(np.sqrt((nu - 0.1) ** 2 + 1.0) + nu - 0.1)
    return np.where(nu > -0.78, np.maximum(j, 0.0), 0.0)


def scatter_gain_db(d1_m: np.ndarray, d2_m: np.ndarray, rcs_dbsm: np.ndarray, carrier_hz: float) -> np.ndarray:
    """Bistatic radar equation ``lambda^2 sigma / ((4 pi)^3 d1^2 d2^2)`` in dB (d clipped at 1 m)."""
    lam = wavelength(carrier_hz)
    d1 = np.maximum(d1_m, 1.0)
    d2 = np.maximum(d2_m, 1.0)
    return (20.0 * np.log10(lam) + rcs_dbsm - 30.0 * np.log10(4.0 * np.pi)
            - 20.0 * np.log10(d1) - 20.0 * np.log10(d2))
