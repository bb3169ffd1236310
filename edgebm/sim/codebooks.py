"""BS codebooks: Set A (narrow 2-D DFT beams of the full UPA, or ``codebook_a="random"``: set_a
beams drawn without replacement, with ``codebook_seed``, from the visible beams of the x4
oversampled DFT, kept in grid order), Set B (wide DFT beams of a centred sub-array) and the Set B -> Set A children map.

Beam grids are uniform in the panel's spatial frequencies ``psi = -1 + (2k + 1) / g`` (k = 0..g-1)
per axis, i.e. a centred DFT grid over the whole visible range: ``g = n`` per axis is the
orthogonal DFT, ``g = 2n`` is oversampled x2. Beam index ``i = row * grid_cols + col`` with row
<-> psi_v ascending (row 0 points furthest down, panel frame) and col <-> psi_h ascending (col 0
points furthest to the panel's right). Beams whose (psi_v, psi_h) fall outside the unit circle
are invisible (their pointing is clipped to the edge of the visible region).

Grids (8x8 panel): Set A 64 = 8x8 (orthogonal DFT), 256 = 16x16 (x2); Set B 16 = 4x4 DFT of the
centre 4x4 sub-array, 8 = 2x4 of a 2x4 sub-array, 4 = 2x2 of a 2x2 sub-array. A grid for another
size is the factorisation ``rows x cols`` closest to the array's aspect ratio (ties: more cols).

The precoders are the same for every sector (they live in the panel frame); only the global
pointing angles differ. ``build_codebooks`` returns sector 0 as ``set_a`` / ``set_b`` and all
sectors as ``set_a_sectors`` / ``set_b_sectors`` (tuples, length ``cfg.sectors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .arrays import (RANDOM_OVERSAMPLING, angles, dft_psi, grid_shape, n_visible_oversampled, oversampled_grid,
                     panel_frame, upa_steering)
from .sectors import sector_boresights

__all__ = ["Codebook", "build_codebooks", "grid_shape", "dft_psi", "n_visible_oversampled", "ue_codebook",
           "RANDOM_OVERSAMPLING", "panel_pointing"]


@dataclass(frozen=True, eq=False)
class Codebook:
    """A BS beam codebook.

    weights: (n_beams, n_tx) complex64, row i = unit-norm precoder f_i (panel element order
    ``r * cols + c``). az_deg / el_deg: (n_beams,) float32 global pointing, deg (el from zenith).
    grid: (rows, cols) beam layout; ``(1, n_beams)`` when the beams are not a full grid (random).
    psi: (n_beams, 2) float32 panel-frame spatial frequencies (psi_v, psi_h) of each beam.
    subarray: active (rows, cols) of the panel. boresight_az_deg / downtilt_deg: panel orientation.
    """

    name: str
    weights: np.ndarray
    az_deg: np.ndarray
    el_deg: np.ndarray
    grid: tuple[int, int]
    psi: np.ndarray | None = None
    subarray: tuple[int, int] | None = None
    boresight_az_deg: float = 0.0
    downtilt_deg: float = 0.0
    sector: int = 0

    @property
    def n_beams(self) -> int:
        return int(self.weights.shape[0])

    def to_npz_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Arrays for ``codebook.npz``: keys ``prefix + {name, weights, az_deg, el_deg, grid, psi,
        subarray, orientation}`` (orientation = [boresight_az_deg, downtilt_deg, sector])."""
        d = {
            f"{prefix}name": np.array(self.name),
            f"{prefix}weights": np.asarray(self.weights, dtype=np.complex64),
            f"{prefix}az_deg": np.asarray(self.az_deg, dtype=np.float32),
            f"{prefix}el_deg": np.asarray(self.el_deg, dtype=np.float32),
            f"{prefix}grid": np.asarray(self.grid, dtype=np.int64),
            f"{prefix}orientation": np.array([self.boresight_az_deg, self.downtilt_deg, self.sector], np.float64),
        }
        if self.psi is not None:
            d[f"{prefix}psi"] = np.asarray(self.psi, dtype=np.float32)
        if self.subarray is not None:
            d[f"{prefix}subarray"] = np.asarray(self.subarray, dtype=np.int64)
        return d

    @classmethod
    def from_npz_dict(cls, d: dict[str, Any], prefix: str = "") -> "Codebook":
        """Inverse of :meth:`to_npz_dict`."""
        o = np.asarray(d.get(f"{prefix}orientation", [0.0, 0.0, 0.0]), dtype=np.float64)
        psi = d.get(f"{prefix}psi")
        sub = d.get(f"{prefix}subarray")
        return cls(name=str(np.asarray(d[f"{prefix}name"])), weights=np.asarray(d[f"{prefix}weights"], np.complex64),
                   az_deg=np.asarray(d[f"{prefix}az_deg"], np.float32), el_deg=np.asarray(d[f"{prefix}el_deg"], np.float32),
                   grid=tuple(int(v) for v in np.asarray(d[f"{prefix}grid"])),
                   psi=None if psi is None else np.asarray(psi, np.float32),
                   subarray=None if sub is None else tuple(int(v) for v in np.asarray(sub)),
                   boresight_az_deg=float(o[0]), downtilt_deg=float(o[1]), sector=int(o[2]))


def _pointing(psi_v: np.ndarray, psi_h: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r2 = psi_v ** 2 + psi_h ** 2
    scale = np.where(r2 > 1.0, 1.0 / np.sqrt(np.maximum(r2, 1e-12)), 1.0)
    pv, ph = psi_v * scale, psi_h * scale
    ux = np.sqrt(np.maximum(0.0, 1.0 - pv ** 2 - ph ** 2))
    u = np.stack([ux, ph, pv], -1) @ frame      # panel -> global
    az, el = angles(u)
    return az.astype(np.float32), el.astype(np.float32)


def panel_pointing(psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Panel-frame pointing (azimuth from boresight, deg, counter-clockwise seen from above; elevation from the
    panel's up axis, deg, 90 = boresight) of beams with spatial frequencies ``psi`` (n, 2) = (psi_v, psi_h).
    Independent of where the panel points (boresight azimuth, downtilt); invisible beams clip to the edge."""
    psi = np.asarray(psi, dtype=np.float64)
    return _pointing(psi[:, 0], psi[:, 1], np.eye(3))


def _make(name: str, psi_v: np.ndarray, psi_h: np.ndarray, shape: tuple[int, int], sub: tuple[int, int],
          grid: tuple[int, int], boresight: float, downtilt: float, sector: int) -> Codebook:
    w = upa_steering(psi_v, psi_h, shape)
    mask = np.zeros(shape, dtype=bool)
    r0, c0 = (shape[0] - sub[0]) // 2, (shape[1] - sub[1]) // 2
    mask[r0:r0 + sub[0], c0:c0 + sub[1]] = True
    w = (w * mask.ravel()[None, :] / np.sqrt(sub[0] * sub[1])).astype(np.complex64)
    az, el = _pointing(psi_v, psi_h, panel_frame(boresight, downtilt))
    psi = np.stack([psi_v, psi_h], 1).astype(np.float32)
    for a in (w, az, el, psi):
        a.setflags(write=False)
    return Codebook(name=name, weights=w, az_deg=az, el_deg=el, grid=grid, psi=psi, subarray=sub,
                    boresight_az_deg=float(boresight), downtilt_deg=float(downtilt), sector=sector)


def _children(psi_a: np.ndarray, grid_b: tuple[int, int]) -> np.ndarray:
    """Set A beams whose psi lies in each Set B beam's psi cell; rows padded (no -1) with the nearest
    other Set A beams so every row has the same length (equal rows for nested DFT grids)."""
    gv, gh = grid_b
    iv = np.clip(np.floor((psi_a[:, 0] + 1.0) * gv / 2.0), 0, gv - 1).astype(np.int64)
    ih = np.clip(np.floor((psi_a[:, 1] + 1.0) * gh / 2.0), 0, gh - 1).astype(np.int64)
    owner = iv * gh + ih
    nb = gv * gh
    counts = np.bincount(owner, minlength=nb)
    c = max(1, int(counts.max()))
    cb = np.stack(np.meshgrid(dft_psi(gv), dft_psi(gh), indexing="ij"), -1).reshape(-1, 2)
    out = np.empty((nb, c), dtype=np.int64)
    for b in range(nb):   # set_b rows, not UEs
        mine = np.flatnonzero(owner == b)
        if mine.size < c:
            d = ((psi_a - cb[b]) ** 2).sum(1)
            d[mine] = np.inf
            extra = np.argsort(d, kind="stable")[: c - mine.size]
            mine = np.concatenate([mine, np.sort(extra)])
        out[b] = mine
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def _build(bs_array: tuple[int, int], set_a: int, set_b: int, codebook_a: str, codebook_seed: int,
           boresights: tuple[float, ...], downtilt: float) -> dict[str, Any]:
    ga = grid_shape(set_a, bs_array)
    if codebook_a == "dft":
        pv, ph = np.meshgrid(dft_psi(ga[0]), dft_psi(ga[1]), indexing="ij")
        pv, ph = pv.ravel(), ph.ravel()
    else:
        opv, oph, _ = oversampled_grid(bs_array)
        visible = np.flatnonzero(opv ** 2 + oph ** 2 <= 1.0)
        pick = np.sort(np.random.default_rng(codebook_seed).choice(visible, size=set_a, replace=False))
        pv, ph = opv[pick], oph[pick]
        ga = (1, set_a)
    gb = grid_shape(set_b, bs_array)
    sub = (min(gb[0], bs_array[0]), min(gb[1], bs_array[1]))
    pbv, pbh = np.meshgrid(dft_psi(gb[0]), dft_psi(gb[1]), indexing="ij")
    cbs_a = tuple(_make("set_a", pv, ph, bs_array, bs_array, ga, az, downtilt, s) for s, az in enumerate(boresights))
    cbs_b = tuple(_make("set_b", pbv.ravel(), pbh.ravel(), bs_array, sub, gb, az, downtilt, s)
                  for s, az in enumerate(boresights))
    sb = np.asarray(boresights, dtype=np.float64)
    sb.setflags(write=False)
    return {"set_a": cbs_a[0], "set_b": cbs_b[0], "children": _children(cbs_a[0].psi.astype(np.float64), gb),
            "set_a_sectors": cbs_a, "set_b_sectors": cbs_b, "sector_boresight_az_deg": sb}


def build_codebooks(cfg) -> dict[str, Any]:
    """Codebooks of a scenario.

    Returns ``{"set_a": Codebook, "set_b": Codebook, "children": (set_b, c) int64,
    "set_a_sectors": tuple[Codebook], "set_b_sectors": tuple[Codebook],
    "sector_boresight_az_deg": (sectors,)}``; ``set_a`` / ``set_b`` are sector 0 (identical
    precoders for every sector). ``children[i]`` = Set A beams under wide beam i (for the two-level
    hierarchical search). Cached: the arrays are read-only.
    """
    return dict(_build(cfg.bs_array, cfg.set_a, cfg.set_b, cfg.codebook_a, cfg.codebook_seed,
                       tuple(float(v) for v in sector_boresights(cfg)), float(cfg.downtilt_deg)))


def ue_codebook(ue_array: tuple[int, int]) -> np.ndarray:
    """UE receive codebook: (n_rx, n_beams) complex64 unit-norm columns, orthogonal DFT of the UE UPA."""
    pv, ph = np.meshgrid(dft_psi(ue_array[0]), dft_psi(ue_array[1]), indexing="ij")
    w = upa_steering(pv.ravel(), ph.ravel(), ue_array) / np.sqrt(ue_array[0] * ue_array[1])
    return np.ascontiguousarray(w.T.astype(np.complex64))
