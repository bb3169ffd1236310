"""Antenna arrays: direction <-> angle conversions, BS panel frames, half-wavelength UPA steering
vectors (seed 001 eq. 2-5, in the panel's own frame) and the 3GPP TR 38.901 element pattern.

Angles in degrees: azimuth counter-clockwise from +x, elevation measured from the zenith
(90 = horizon, > 90 = below the horizon), DeepMIMO convention.

BS panel: a vertical UPA, ``rows`` elements along the panel's vertical axis z' and ``cols`` along
its horizontal axis y'; boresight x' points at azimuth ``boresight_az_deg`` tilted down by
``downtilt_deg``. Element (r, c) sits at ``(0, c - (cols-1)/2, r - (rows-1)/2) * lambda/2`` in the
panel frame, vector index ``r * cols + c``. A direction u gives spatial frequencies
``psi_v = u . z'`` and ``psi_h = u . y'`` and the steering vector
``a[r*cols+c] = exp(j pi ((r - (rows-1)/2) psi_v + (c - (cols-1)/2) psi_h))``.

UE: a horizontal UPA facing up (vehicle roof), rows along global x, cols along global y,
``psi_v = u_x``, ``psi_h = u_y``, isotropic elements.
"""

from __future__ import annotations

import numpy as np

__all__ = ["direction", "angles", "panel_frame", "upa_steering", "bs_local", "element_gain_db",
           "ELEMENT_GAIN_DBI", "grid_shape", "dft_psi", "oversampled_grid", "n_visible_oversampled",
           "RANDOM_OVERSAMPLING"]

ELEMENT_GAIN_DBI = 8.0
RANDOM_OVERSAMPLING = 4     # oversampling of the DFT grid that random Set A codebooks are drawn from


def direction(az_deg: np.ndarray, el_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) for azimuth / zenith-elevation angles in deg."""
    az = np.radians(np.asarray(az_deg, dtype=np.float64))
    el = np.radians(np.asarray(el_deg, dtype=np.float64))
    s = np.sin(el)
    return np.stack([s * np.cos(az), s * np.sin(az), np.cos(el)], axis=-1)


def angles(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth deg in (-180, 180], zenith elevation deg in [0, 180]) of direction vectors (..., 3)."""
    u = np.asarray(u)
    n = np.sqrt((u * u).sum(-1))
    n = np.where(n > 0, n, 1.0)
    az = np.degrees(np.arctan2(u[..., 1], u[..., 0]))
    el = np.degrees(np.arccos(np.clip(u[..., 2] / n, -1.0, 1.0)))
    return az, el


def panel_frame(boresight_az_deg: float | np.ndarray, downtilt_deg: float) -> np.ndarray:
    """Panel axes as rows ``[x', y', z']`` ((..., 3, 3)): boresight, horizontal (left), panel-up."""
    a = np.radians(np.asarray(boresight_az_deg, dtype=np.float64))
    t = np.radians(float(downtilt_deg))
    ca, sa, ct, st = np.cos(a), np.sin(a), np.cos(t), np.sin(t)
    z = np.zeros_like(ca)
    xp = np.stack([ca * ct, sa * ct, -st + z], -1)
    yp = np.stack([-sa, ca, z], -1)
    zp = np.stack([ca * st, sa * st, ct + z], -1)
    return np.stack([xp, yp, zp], -2)


def bs_local(u: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Direction(s) u (..., 3) expressed in a panel frame (3, 3) or per-row frames (..., 3, 3)."""
    if frame.ndim == 2:
        return u @ frame.T
    return np.einsum("...j,...ij->...i", u, frame)


def upa_steering(psi_v: np.ndarray, psi_h: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Half-wavelength UPA steering vectors (..., rows*cols) complex64 for spatial frequencies
    ``psi_v`` (along rows) and ``psi_h`` (along cols) in [-1, 1] (unnormalised, |a_i| = 1)."""
    rows, cols = shape
    rv = (np.arange(rows, dtype=np.float32) - (rows - 1) / 2)
    cv = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2)
    pv = np.pi * np.asarray(psi_v, dtype=np.float32)[..., None] * rv
    ph = np.pi * np.asarray(psi_h, dtype=np.float32)[..., None] * cv
    ev = (np.cos(pv) + 1j * np.sin(pv)).astype(np.complex64)
    eh = (np.cos(ph) + 1j * np.sin(ph)).astype(np.complex64)
    out = ev[..., :, None] * eh[..., None, :]
    return out.reshape(out.shape[:-2] + (rows * cols,))


def element_gain_db(u_local: np.ndarray) -> np.ndarray:
    """3GPP TR 38.901 Table 7.3-1 element gain (dBi) for panel-frame directions (..., 3):
    65 deg half-power beamwidths, 30 dB front-to-back, 8 dBi maximum."""
    x, y, z = u_local[..., 0], u_local[..., 1], u_local[..., 2]
    theta = np.degrees(np.arccos(np.clip(z, -1.0, 1.0)))     # panel zenith angle
    phi = np.degrees(np.arctan2(y, x))                       # panel azimuth
    a_v = -np.minimum(12.0 * ((theta - 90.0) / 65.0) ** 2, 30.0)
    a_h = -np.minimum(12.0 * (phi / 65.0) ** 2, 30.0)
    return ELEMENT_GAIN_DBI - np.minimum(-(a_v + a_h), 30.0)


# ----------------------------------------------------------------------------- beam grids
def grid_shape(n: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) with rows * cols = n closest (in log ratio) to ``aspect``; ties -> more cols."""
    best = None
    for r in range(1, n + 1):
        if n % r:
            continue
        c = n // r
        key = (abs(np.log(r / c) - np.log(aspect[0] / aspect[1])), r)
        if best is None or key < best[0]:
            best = (key, (r, c))
    return best[1]


def dft_psi(g: int) -> np.ndarray:
    """Centred DFT spatial-frequency grid of size g over [-1, 1): ``-1 + (2k + 1) / g``."""
    return (-1.0 + (2.0 * np.arange(g) + 1.0) / g).astype(np.float64)


def oversampled_grid(bs_array: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(psi_v, psi_h) of every beam of the x``RANDOM_OVERSAMPLING`` DFT grid of ``bs_array`` (flat, row-major)
    and the grid shape."""
    g = (RANDOM_OVERSAMPLING * bs_array[0], RANDOM_OVERSAMPLING * bs_array[1])
    pv, ph = np.meshgrid(dft_psi(g[0]), dft_psi(g[1]), indexing="ij")
    return pv.ravel(), ph.ravel(), g


def n_visible_oversampled(bs_array: tuple[int, int]) -> int:
    """Number of visible beams (psi_v^2 + psi_h^2 <= 1) of the x4 oversampled DFT of ``bs_array``."""
    pv, ph, _ = oversampled_grid(bs_array)
    return int(((pv ** 2 + ph ** 2) <= 1.0).sum())
