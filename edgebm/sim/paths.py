"""Geometric multipath between the BS and each UE, vectorised over UEs.

Per UE (slots, at most ``10 + n_scatterers`` paths; one function per mechanism, run in the order of
:data:`MECHANISMS`, each appending its slots to an accumulator; codes are :class:`Interaction` values):

* LOS (code 0): the BS -> UE segment clears every building (exact 3-D slab test).
* ground reflection (1): image of the BS in z = 0, LOS UEs only (a blocked LOS also blocks it),
  both legs tested, Fresnel TM coefficient of concrete.
* single wall reflections (1, up to 4): image of the BS in each BS-visible facade plane; valid if the
  reflection point lies on the facade and below the roof and both legs are clear; the 8 shortest
  geometric candidates are blockage-tested and the 4 shortest valid kept. Fresnel TE of concrete.
* double reflections (11, up to 2): between the two facades of the street canyon the UE stands in
  (both orders, both canyon axes at an intersection), three legs tested.
* corner diffraction (2, NLOS only): BS -> vertical building edge -> UE over BS-visible convex
  corners (equal-angle point on the edge), knife-edge loss J(nu) with nu from the bending angle.
* over-roof diffraction (2, NLOS only): over the dominant roof edge of the obstructing buildings
  (largest Fresnel-Kirchhoff nu), knife-edge loss. Every NLOS UE has this path, so every UE has at
  least one path.
* diffuse scatterers (3, ``n_scatterers``): a fixed random field of point scatterers on the outdoor
  area (cars, poles, signs; 0.5-4 m high, RCS -5..10 dBsm, random phase), hashed per 12 m cell from
  a key drawn from ``rng``. Each UE uses its ``n_scatterers`` nearest ones, weighted by the
  visibility taper ``(1 - d / d_ref)^2`` with ``d_ref = min(distance of the next-nearest, 12 m)``,
  which makes the scatterer powers continuous along a trajectory (spatially consistent). Bistatic
  radar equation (UE distance floored at 2 m); both legs tested.

Every path: power = tx power + path gain (isotropic antennas), free-space loss at the carrier over
the unfolded length, phase ``-2 pi L / lambda`` + interaction phases, delay ``L / c``, AoD / AoA from
the geometry. Paths are sorted by power (strongest first) and padded with NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np

from .arrays import angles
from .config import ScenarioConfig
from .geometry import City, segments_blocked
from .propagation import (C0, concrete_permittivity, fresnel_te, fresnel_tm, fspl_gain_db, knife_edge_loss_db,
                          scatter_gain_db, wavelength)
from .visibility import CELL_MARGIN_M, SceneContext, scene_context

__all__ = ["PathSet", "find_paths", "n_path_slots", "Interaction", "INTER_LOS", "INTER_REFLECTION",
           "INTER_DIFFRACTION", "INTER_SCATTERING", "INTER_DOUBLE_REFLECTION"]


class Interaction(IntEnum):
    """Interaction code of a path (``PathSet.inter``; DeepMIMO digits, one per interaction, tx side first)."""

    NONE = -1                # padding slot
    LOS = 0
    REFLECTION = 1
    DIFFRACTION = 2
    SCATTERING = 3
    DOUBLE_REFLECTION = 11


INTER_LOS, INTER_REFLECTION, INTER_DIFFRACTION, INTER_SCATTERING = (Interaction.LOS, Interaction.REFLECTION,
                                                                    Interaction.DIFFRACTION, Interaction.SCATTERING)
INTER_DOUBLE_REFLECTION = Interaction.DOUBLE_REFLECTION
N_SINGLE, N_SINGLE_CAND, N_DOUBLE, N_CORNER_CAND = 4, 8, 2, 4
SCATTER_CELL_M = 12.0
RCS_DBSM = (-5.0, 10.0)     # scatterer radar cross-section range, dBsm
SCATTER_MIN_D_M = 2.0      # the bistatic far-field formula is capped below this UE distance
_CHUNK = 4096


@dataclass(frozen=True, eq=False)
class PathSet:
    """Up to P paths per UE, strongest first, padded with NaN (``power_dbm`` NaN = no path).

    power_dbm (N, P): received power with isotropic antennas, dBm. phase_deg (N, P): path phase at
    the carrier, deg. delay_s (N, P): s. aod_az / aod_el / aoa_az / aoa_el (N, P): deg, elevation
    from the zenith. inter (N, P) int16: 0 LoS, 1 reflection, 11 double reflection, 2 diffraction,
    3 scattering, -1 padding. num_paths (N,) int32.
    """

    power_dbm: np.ndarray
    phase_deg: np.ndarray
    delay_s: np.ndarray
    aod_az: np.ndarray
    aod_el: np.ndarray
    aoa_az: np.ndarray
    aoa_el: np.ndarray
    inter: np.ndarray
    num_paths: np.ndarray

    def __len__(self) -> int:
        return int(self.power_dbm.shape[0])

    @property
    def max_paths(self) -> int:
        return int(self.power_dbm.shape[1])

    def take(self, idx) -> "PathSet":
        """Rows ``idx`` (slice, index array or bool mask)."""
        return PathSet(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @classmethod
    def from_arrays(cls, power_dbm, phase_deg, delay_s, aod_az, aod_el, aoa_az, aoa_el, inter=None) -> "PathSet":
        """Build from (N, P) array-likes (NaN power = no path); fills ``num_paths`` and dtypes."""
        p = np.atleast_2d(np.asarray(power_dbm, dtype=np.float32))
        f = lambda a: np.broadcast_to(np.atleast_2d(np.asarray(a, dtype=np.float32)), p.shape).copy()  # noqa: E731
        if inter is None:
            it = np.where(np.isfinite(p), INTER_LOS, -1).astype(np.int16)
        else:
            it = np.broadcast_to(np.atleast_2d(np.asarray(inter, np.int16)), p.shape).copy()
        return cls(power_dbm=p, phase_deg=f(phase_deg), delay_s=f(delay_s), aod_az=f(aod_az), aod_el=f(aod_el),
                   aoa_az=f(aoa_az), aoa_el=f(aoa_el), inter=it, num_paths=np.isfinite(p).sum(1).astype(np.int32))


def n_path_slots(cfg: ScenarioConfig) -> int:
    """P, the padded number of paths per UE for ``cfg``."""
    return 1 + 1 + N_SINGLE + N_DOUBLE + 1 + 1 + cfg.n_scatterers


# ----------------------------------------------------------------------------- helpers
def _norm(v: np.ndarray) -> np.ndarray:
    return np.sqrt((v * v).sum(-1))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(_norm(v), 1e-9)[..., None]


def _test(ctx: SceneContext, mask: np.ndarray, apex, p0: np.ndarray, p1: np.ndarray, far_xy: np.ndarray,
          local: bool = False) -> np.ndarray:
    """Clear (not blocked) flags for legs p0 -> p1 where ``mask``; False elsewhere. Arrays share a
    leading shape S (..., 3); ``apex`` is an int or an int array of shape S."""
    shape = mask.shape
    m = mask.ravel()
    out = np.zeros(m.shape, dtype=bool)
    idx = np.flatnonzero(m)
    if idx.size == 0:
        return out.reshape(shape)
    q0 = np.broadcast_to(p0, shape + (3,)).reshape(-1, 3)[idx]
    q1 = np.broadcast_to(p1, shape + (3,)).reshape(-1, 3)[idx]
    if local:
        cand = ctx.cells.candidates(q1[:, :2])
    else:
        a = np.broadcast_to(np.asarray(apex), shape).ravel()[idx]
        far = np.broadcast_to(far_xy, shape + (2,)).reshape(-1, 2)[idx]
        cand = ctx.apex.candidates(a, far)
    out[idx] = ~segments_blocked(q0, q1, cand, ctx.boxes)
    return out.reshape(shape)


def _topk(key: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest keys per row (sorted ascending, deterministic)."""
    k = min(k, key.shape[1])
    if key.shape[1] > k:
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(key.shape[1]), key.shape).copy()
    o = np.argsort(np.take_along_axis(key, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, o, 1)


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash64(key: int, ix: np.ndarray, iy: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Deterministic 64-bit hashes of (key, cell x, cell y, index)."""
    u = lambda a: np.asarray(a, dtype=np.int64).view(np.uint64)  # noqa: E731
    x = (u(ix) * np.uint64(0x9E3779B97F4A7C15)) ^ (u(iy) * np.uint64(0xC2B2AE3D27D4EB4F)) ^ (u(k) * np.uint64(0x165667B19E3779F9))
    return _mix(x ^ np.uint64(key & 0xFFFFFFFFFFFFFFFF))


def _field(h: np.ndarray, i: int) -> np.ndarray:
    """Uniform in [0, 1) from bits ``12 i .. 12 i + 11`` of a 64-bit hash (5 fields per hash)."""
    return ((h >> np.uint64(12 * i)) & np.uint64(0xFFF)).astype(np.float64) * (1.0 / 4096.0) + (0.5 / 4096.0)


class _Acc:
    """Collects path slots: each ``add`` appends (n, k) columns."""

    def __init__(self, n: int):
        self.n = n
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k in ("valid", "gain", "phase", "length", "aod", "aoa", "inter")}

    def add(self, valid, gain, phase, length, aod, aoa, code) -> None:
        valid = np.asarray(valid, dtype=bool)
        if valid.ndim == 1:
            valid, gain, phase, length = valid[:, None], gain[:, None], phase[:, None], length[:, None]
            aod, aoa = aod[:, None], aoa[:, None]
        shp = valid.shape
        for k, v in (("valid", valid), ("gain", gain), ("phase", phase), ("length", length)):
            self.cols[k].append(np.broadcast_to(v, shp).astype(np.float64 if k != "valid" else bool))
        self.cols["aod"].append(np.broadcast_to(aod, shp + (3,)).astype(np.float64))
        self.cols["aoa"].append(np.broadcast_to(aoa, shp + (3,)).astype(np.float64))
        self.cols["inter"].append(np.broadcast_to(np.asarray(code), shp).astype(np.int16))

    def stack(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v, axis=1) for k, v in self.cols.items()}


# ----------------------------------------------------------------------------- path finding
@dataclass(eq=False)
class _Chunk:
    """What every propagation mechanism needs about one chunk of UEs (n of them)."""

    ctx: SceneContext
    cfg: ScenarioConfig
    ue: np.ndarray                  # (n, 3) m
    lam: float                      # wavelength, m
    k0: float                       # wavenumber, rad/m
    eps: complex                    # concrete permittivity at the carrier
    B: np.ndarray                   # (n, 3) BS position per UE
    key: int                        # key of the scatterer field
    streets: list[tuple[np.ndarray, np.ndarray]]   # per axis (inside a street (n,), street index (n,))
    cand: np.ndarray | None = None  # (n, K) candidate buildings of the BS -> UE leg, set by _los
    los: np.ndarray | None = None   # (n,) bool, set by _los
    roof: tuple | None = None       # dominant roof edge of the BS -> UE leg (score, t, height), set by _los
    d_los: np.ndarray | None = None  # (n,) BS -> UE distance, m, set by _los

    @property
    def n(self) -> int:
        return len(self.ue)


def _street_membership(ctx: SceneContext, ue: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per street axis (x, then y): whether each UE stands inside a street canyon of that axis and the index of
    the nearest street centre line."""
    city = ctx.city
    w2 = city.street_width_m / 2
    out = []
    for a, streets in ((0, city.streets_x), (1, city.streets_y)):
        uaa = ue[:, a]
        j = np.clip(np.searchsorted(streets, uaa), 1, len(streets) - 1)
        si = np.where(np.abs(uaa - streets[j - 1]) < np.abs(uaa - streets[j]), j - 1, j)
        out.append((np.abs(uaa - streets[si]) < w2 - 0.2, si))
    return out


def _los(c: _Chunk, acc: _Acc) -> None:
    """Line of sight (+ the dominant roof edge of the blocked segment, for the over-roof diffraction)."""
    ctx, ue, bs = c.ctx, c.ue, c.ctx.bs
    c.cand = ctx.apex.candidates(np.zeros(c.n, dtype=np.int64), ue[:, :2])
    blocked, c.roof = segments_blocked(c.B, ue, c.cand, ctx.boxes, roof=True)
    c.los = ~blocked
    v = ue - bs
    c.d_los = _norm(v)
    acc.add(c.los, fspl_gain_db(c.d_los, c.cfg.carrier_hz), -c.k0 * c.d_los, c.d_los, _unit(v), -_unit(v),
            Interaction.LOS)


def _ground(c: _Chunk, acc: _Acc) -> None:
    """Ground reflection (LOS UEs): image of the BS in z = 0, both legs tested, Fresnel TM."""
    ctx, ue, bs, B = c.ctx, c.ue, c.ctx.bs, c.B
    zb, uz = bs[2], ue[:, 2]
    tg = zb / (zb + uz)
    G = B + tg[:, None] * (ue - B)
    G[:, 2] = 0.0
    lg = np.sqrt(((ue[:, :2] - bs[:2]) ** 2).sum(1) + (zb + uz) ** 2)
    ok = c.los.copy()
    if ok.any():
        idx = np.flatnonzero(ok)
        c_sub = c.cand[idx]
        ok[idx] = (~segments_blocked(B[idx], G[idx], c_sub, ctx.boxes)) & (~segments_blocked(G[idx], ue[idx], c_sub, ctx.boxes))
    gam = fresnel_tm((zb + uz) / lg, c.eps)
    acc.add(ok, fspl_gain_db(lg, c.cfg.carrier_hz) + 20 * np.log10(np.maximum(np.abs(gam), 1e-6)),
            -c.k0 * lg + np.angle(gam), lg, _unit(G - B), _unit(G - ue), Interaction.REFLECTION)


def _single_walls(c: _Chunk, acc: _Acc) -> None:
    """Single specular wall reflections (image method), the N_SINGLE shortest valid of N_SINGLE_CAND tested."""
    ctx, ue, bs, n = c.ctx, c.ue, c.ctx.bs, c.n
    if not len(ctx.w_c):
        nan3 = np.full((n, N_SINGLE, 3), np.nan)
        acc.add(np.zeros((n, N_SINGLE), bool), np.nan, np.nan, np.nan, nan3, nan3, Interaction.REFLECTION)
        return
    ux, uy, uz, zb = ue[:, 0], ue[:, 1], ue[:, 2], bs[2]
    ax0 = ctx.w_axis == 0
    ua = np.where(ax0, ux[:, None], uy[:, None])
    uo = np.where(ax0, uy[:, None], ux[:, None])
    ba = np.where(ax0, bs[0], bs[1])
    bo = np.where(ax0, bs[1], bs[0])
    ima = 2 * ctx.w_c - ba
    den = ua - ima
    side = (ua - ctx.w_c) * ctx.w_n > 0.3
    t = (ctx.w_c - ima) / np.where(side, den, 1.0)
    ro = bo + t * (uo - bo)
    rz = zb + t * (uz[:, None] - zb)
    ok = side & (ro > ctx.w_s0) & (ro < ctx.w_s1) & (rz < ctx.w_h - 0.05) & (rz > 0.05)
    l2 = den ** 2 + (uo - bo) ** 2 + (uz[:, None] - zb) ** 2
    sel = _topk(np.where(ok, l2, np.inf), N_SINGLE_CAND)
    tk = lambda a: np.take_along_axis(a, sel, 1)  # noqa: E731
    okc = tk(ok)
    wa = ctx.w_axis[sel]
    cw = ctx.w_c[sel]
    R = np.stack([np.where(wa == 0, cw, tk(ro)), np.where(wa == 0, tk(ro), cw), tk(rz)], -1)
    U = ue[:, None, :]
    okc &= _test(ctx, okc, 0, bs, R, R[..., :2])
    okc &= _test(ctx, okc, ctx.w_apex[sel], R, U, np.broadcast_to(U[..., :2], R[..., :2].shape))
    l2c = tk(l2)
    pick = _topk(np.where(okc, l2c, np.inf), N_SINGLE)
    tp = lambda a: np.take_along_axis(a, pick, 1)  # noqa: E731
    okp = tp(okc)
    L = np.sqrt(tp(l2c))
    cos_i = np.abs(tp(tk(den))) / L
    gam = fresnel_te(cos_i, c.eps)
    Rp = np.take_along_axis(R, pick[..., None], 1)
    acc.add(okp, fspl_gain_db(L, c.cfg.carrier_hz) + 20 * np.log10(np.maximum(np.abs(gam), 1e-6)),
            -c.k0 * L + np.angle(gam), L, _unit(Rp - bs), _unit(Rp - U), Interaction.REFLECTION)


def _double_walls(c: _Chunk, acc: _Acc) -> None:
    """Double reflections between the two facades of the UE's street canyon (both orders, both axes)."""
    ctx, ue, bs, n = c.ctx, c.ue, c.ctx.bs, c.n
    city = ctx.city
    w2 = city.street_width_m / 2
    uz, zb = ue[:, 2], bs[2]
    cands = []
    for a, streets, capex, dapex in ((0, city.streets_x, ctx.canyon_apex_x, ctx.dbl_apex_x),
                                     (1, city.streets_y, ctx.canyon_apex_y, ctx.dbl_apex_y)):
        inside, si = c.streets[a]
        uaa = ue[:, a]
        uoo = ue[:, 1 - a]
        ba, bo = bs[a], bs[1 - a]
        for order in (0, 1):
            c1 = streets[si] + (-w2 if order == 0 else w2)
            c2 = streets[si] + (w2 if order == 0 else -w2)
            n1 = 1.0 if order == 0 else -1.0
            side = inside & ((ba - c1) * n1 > 0.3)
            b1 = 2 * c1 - ba
            b2 = 2 * c2 - b1
            t2 = (c2 - b2) / np.where(side, uaa - b2, 1.0)
            r2o = bo + t2 * (uoo - bo)
            r2z = zb + t2 * (uz - zb)
            t1 = (c1 - b1) / np.where(side, c2 - b1, 1.0)
            r1o = bo + t1 * (r2o - bo)
            r1z = zb + t1 * (r2z - zb)
            ok = side & (t2 > 0) & (t2 < 1) & (t1 > 0) & (t1 < 1) & (r1z > 0.05) & (r2z > 0.05)
            for cc, ro_, rz_, nn in ((c1, r1o, r1z, n1), (c2, r2o, r2z, -n1)):
                behind = cc - 0.5 * nn
                bid = city.building_at(np.where(a == 0, behind, ro_), np.where(a == 0, ro_, behind))
                ok &= (bid >= 0) & (rz_ < ctx.heights[bid] - 0.05)
            L = np.sqrt((uaa - b2) ** 2 + (uoo - bo) ** 2 + (uz - zb) ** 2)
            R1 = np.zeros((n, 3))
            R2 = np.zeros((n, 3))
            R1[:, a], R1[:, 1 - a], R1[:, 2] = c1, r1o, r1z
            R2[:, a], R2[:, 1 - a], R2[:, 2] = c2, r2o, r2z
            cands.append((ok, L, R1, R2, capex[si, order], dapex[si, order], np.abs(uaa - b2) / L))
    ok = np.stack([x[0] for x in cands], 1)
    L = np.stack([x[1] for x in cands], 1)
    sel = _topk(np.where(ok, L, np.inf), N_DOUBLE)
    tk = lambda a: np.take_along_axis(a, sel, 1)  # noqa: E731
    okc, Lc = tk(ok), tk(L)
    R1 = np.take_along_axis(np.stack([x[2] for x in cands], 1), sel[..., None], 1)
    R2 = np.take_along_axis(np.stack([x[3] for x in cands], 1), sel[..., None], 1)
    ap1 = tk(np.stack([x[4] for x in cands], 1))
    ap2 = tk(np.stack([x[5] for x in cands], 1))
    cos_i = tk(np.stack([x[6] for x in cands], 1))
    U = ue[:, None, :]
    okc &= _test(ctx, okc, 0, bs, R1, R1[..., :2])
    okc &= _test(ctx, okc, ap1, R1, R2, R2[..., :2])
    okc &= _test(ctx, okc, ap2, R2, U, np.broadcast_to(U[..., :2], R2[..., :2].shape))
    gam = fresnel_te(cos_i, c.eps)
    acc.add(okc, fspl_gain_db(Lc, c.cfg.carrier_hz) + 40 * np.log10(np.maximum(np.abs(gam), 1e-6)),
            -c.k0 * Lc + 2 * np.angle(gam), Lc, _unit(R1 - bs), _unit(R2 - U), Interaction.DOUBLE_REFLECTION)


def _corner_diffraction(c: _Chunk, acc: _Acc) -> None:
    """Diffraction around a vertical building edge (NLOS UEs): the strongest clear one of N_CORNER_CAND."""
    ctx, ue, bs, n = c.ctx, c.ue, c.ctx.bs, c.n
    city = ctx.city
    w2 = city.street_width_m / 2
    zb, lam = bs[2], c.lam
    nlos = ~c.los
    slot_ok = np.zeros(n, bool)
    slot_gain = np.full(n, np.nan)
    slot_phase = np.full(n, np.nan)
    slot_len = np.full(n, np.nan)
    slot_aod = np.full((n, 3), np.nan)
    slot_aoa = np.full((n, 3), np.nan)
    if len(ctx.k_h) and nlos.any():
        ii = np.flatnonzero(nlos)
        u = ue[ii]
        qx, qy, qh = ctx.k_xy[:, 0], ctx.k_xy[:, 1], ctx.k_h
        d1h = np.hypot(qx - bs[0], qy - bs[1])
        ex, ey = qx - u[:, 0:1], qy - u[:, 1:2]                        # UE -> corner
        d2h = np.hypot(ex, ey)
        zq = zb + (u[:, 2:3] - zb) * d1h / (d1h + d2h)
        dz1, dz2 = zq - zb, u[:, 2:3] - zq
        d1 = np.sqrt(d1h ** 2 + dz1 ** 2)
        d2 = np.sqrt(d2h ** 2 + dz2 ** 2)
        cos_t = ((qx - bs[0]) * (-ex) + (qy - bs[1]) * (-ey) + dz1 * dz2) / (d1 * d2)
        theta = np.arccos(np.clip(cos_t, -1.0, 1.0))
        nu = theta * np.sqrt(2 * d1 * d2 / (lam * (d1 + d2)))
        gain = fspl_gain_db(d1 + d2, c.cfg.carrier_hz) - knife_edge_loss_db(nu)
        okq = (zq < qh - 0.1) & (d2h > 1.0)
        # rank by the diffracted power, favouring corners on the UE's own street (their corner -> UE
        # leg runs along the street and is usually clear); blockage decides among the best few
        band = np.zeros(okq.shape, bool)
        for (inside, si), streets, coord in zip(c.streets, (city.streets_x, city.streets_y), (qx, qy)):
            band |= inside[ii, None] & (np.abs(coord[None, :] - streets[si[ii]][:, None]) < w2 + 0.2)
        clear2d = np.ones(okq.shape, bool)
        for f in (0.3, 0.7):   # cheap footprint probe of the corner -> UE leg
            clear2d &= city.building_at(u[:, 0:1] + f * ex, u[:, 1:2] + f * ey) < 0
        sel = _topk(np.where(okq, -(gain + 10.0 * band + 30.0 * clear2d), np.inf), N_CORNER_CAND)
        tk = lambda a: np.take_along_axis(a, sel, 1)  # noqa: E731
        okc = tk(okq)
        Q = np.concatenate([ctx.k_xy[sel], tk(zq)[..., None]], -1)
        Uu = u[:, None, :]
        okc &= _test(ctx, okc, 0, bs, Q, Q[..., :2])
        okc &= _test(ctx, okc, ctx.k_apex[sel], Q, Uu, np.broadcast_to(Uu[..., :2], Q[..., :2].shape))
        gsel = tk(gain)
        best = np.argmax(np.where(okc, gsel, -np.inf), 1)
        tb = lambda a: np.take_along_axis(a, best[:, None], 1)[:, 0]  # noqa: E731
        Qb = np.take_along_axis(Q, best[:, None, None], 1)[:, 0]
        slot_ok[ii] = tb(okc)
        slot_gain[ii] = tb(gsel)
        slot_len[ii] = tb(tk(d1 + d2))
        slot_phase[ii] = -c.k0 * slot_len[ii] - np.pi / 4
        slot_aod[ii] = _unit(Qb - bs)
        slot_aoa[ii] = _unit(Qb - u)
    acc.add(slot_ok, slot_gain, slot_phase, slot_len, slot_aod, slot_aoa, Interaction.DIFFRACTION)


def _roof_diffraction(c: _Chunk, acc: _Acc) -> None:
    """Over-roof knife-edge diffraction (NLOS UEs) over the dominant roof edge found by the LOS test; every NLOS
    UE gets this path, so every UE has at least one path."""
    ue, B = c.ue, c.B
    score, t_e, h_e = c.roof
    nlos = ~c.los
    E = B + t_e[:, None].astype(np.float64) * (ue - B)
    E[:, 2] = h_e
    d1 = _norm(E - B)
    d2 = _norm(ue - E)
    nu = np.where(nlos, score.astype(np.float64), 0.0) * np.sqrt(2.0 / (c.lam * np.maximum(c.d_los, 1.0)))
    ln = d1 + d2
    acc.add(nlos, fspl_gain_db(ln, c.cfg.carrier_hz) - knife_edge_loss_db(nu), -c.k0 * ln - np.pi / 4, ln,
            _unit(E - B), _unit(E - ue), Interaction.DIFFRACTION)


def _scatterers(c: _Chunk, acc: _Acc) -> None:
    """Diffuse point scatterers of the hashed field: each UE's ``n_scatterers`` nearest, visibility-tapered."""
    ns = c.cfg.n_scatterers
    if not ns:
        return
    ctx, ue, bs, n = c.ctx, c.ue, c.ctx.bs, c.n
    ux, uy = ue[:, 0], ue[:, 1]
    cs = SCATTER_CELL_M
    m = 2 * ns
    ci = np.floor(ux / cs).astype(np.int64)
    cj = np.floor(uy / cs).astype(np.int64)
    offx = np.repeat(np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1]), m)
    offy = np.repeat(np.tile(np.array([-1, 0, 1]), 3), m)
    gx = ci[:, None] + offx
    gy = cj[:, None] + offy
    kk = np.broadcast_to(np.tile(np.arange(m), 9), gx.shape)
    hh = _hash64(c.key, gx, gy, kk)
    sx, sy = (gx + _field(hh, 0)) * cs, (gy + _field(hh, 1)) * cs
    dh = np.hypot(sx - ux[:, None], sy - uy[:, None])
    valid = (dh > 0.5) & (dh < cs)
    valid &= ctx.city.building_at(sx, sy) < 0
    key_d = np.where(valid, dh, np.inf)
    sel = _topk(key_d, ns + 1)
    dsel = np.take_along_axis(key_d, sel, 1)
    dref = np.minimum(dsel[:, ns] if sel.shape[1] > ns else np.full(n, np.inf), cs)
    sel, dsel = sel[:, :ns], dsel[:, :ns]
    wgt = np.clip(1.0 - dsel / dref[:, None], 0.0, 1.0) ** 2
    tk = lambda a: np.take_along_axis(a, sel, 1)  # noqa: E731
    hs = tk(hh)
    sz = 0.5 + 3.5 * _field(hs, 2)
    rcs = RCS_DBSM[0] + (RCS_DBSM[1] - RCS_DBSM[0]) * _field(hs, 3)
    sph = 2 * np.pi * _field(hs, 4)
    S = np.stack([tk(sx), tk(sy), sz], -1)
    okc = np.isfinite(dsel) & (wgt > 0)
    okc &= _test(ctx, okc, 0, bs, S, S[..., :2])
    Uu = np.broadcast_to(ue[:, None, :], S.shape)
    okc &= _test(ctx, okc, None, Uu, S, None, local=True)
    d1 = _norm(S - bs)
    d2 = np.where(okc, _norm(S - Uu), 1.0)
    gain = scatter_gain_db(d1, np.maximum(d2, SCATTER_MIN_D_M), rcs, c.cfg.carrier_hz) + 10 * np.log10(np.maximum(wgt, 1e-12))
    acc.add(okc, gain, -c.k0 * (d1 + d2) + sph, d1 + d2, _unit(S - bs), _unit(S - Uu), Interaction.SCATTERING)


# the mechanisms in slot order (the order of the columns before sorting by power; keep it for identical bytes)
MECHANISMS = (_los, _ground, _single_walls, _double_walls, _corner_diffraction, _roof_diffraction, _scatterers)


def _chunk(ctx: SceneContext, cfg: ScenarioConfig, ue: np.ndarray, key: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every path of a chunk of UEs: each mechanism appends its slots to the accumulator."""
    lam = wavelength(cfg.carrier_hz)
    c = _Chunk(ctx=ctx, cfg=cfg, ue=ue, lam=lam, k0=2 * np.pi / lam, eps=concrete_permittivity(cfg.carrier_hz),
               B=np.broadcast_to(ctx.bs, (len(ue), 3)), key=key, streets=_street_membership(ctx, ue))
    acc = _Acc(len(ue))
    for mechanism in MECHANISMS:
        mechanism(c, acc)
    assert CELL_MARGIN_M >= SCATTER_CELL_M
    return acc.stack(), c.los


def find_paths(city: City, cfg: ScenarioConfig, ue_pos: np.ndarray, rng: np.random.Generator) -> tuple[PathSet, np.ndarray]:
    """Paths from the BS of ``cfg`` to UEs at ``ue_pos`` ((N, 3) m, city frame, outdoors).

    ``rng`` draws the key of the scatterer field (one draw; the same key for every UE of the call, so
    UEs of one call share one environment). Returns ``(PathSet, los (N,) bool)``.
    """
    if city.name != cfg.city:
        raise ValueError(f"find_paths: city {city.name!r} does not match cfg.city {cfg.city!r}")
    ue = np.asarray(ue_pos, dtype=np.float64).reshape(-1, 3)
    ctx = scene_context(cfg.city, float(cfg.bs_height_m))
    key = int(rng.integers(0, 2**63 - 1))
    n = len(ue)
    P = n_path_slots(cfg)
    out = {"power_dbm": np.full((n, P), np.nan, np.float32), "phase_deg": np.full((n, P), np.nan, np.float32),
           "delay_s": np.full((n, P), np.nan, np.float32), "aod_az": np.full((n, P), np.nan, np.float32),
           "aod_el": np.full((n, P), np.nan, np.float32), "aoa_az": np.full((n, P), np.nan, np.float32),
           "aoa_el": np.full((n, P), np.nan, np.float32), "inter": np.full((n, P), -1, np.int16)}
    los = np.zeros(n, dtype=bool)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        cols, los[s:e] = _chunk(ctx, cfg, ue[s:e], key)
        valid = cols["valid"] & np.isfinite(cols["gain"])
        power = np.where(valid, cfg.tx_power_dbm + cols["gain"], np.nan)
        order = np.argsort(np.where(valid, -power, np.inf), axis=1, kind="stable")
        tk = lambda a: np.take_along_axis(a, order, 1)  # noqa: E731
        v = tk(valid)
        out["power_dbm"][s:e] = tk(power)
        ph = np.degrees(np.angle(np.exp(1j * tk(cols["phase"]))))
        out["phase_deg"][s:e] = np.where(v, ph, np.nan)
        out["delay_s"][s:e] = np.where(v, tk(cols["length"]) / C0, np.nan)
        for name, vec in (("aod", cols["aod"]), ("aoa", cols["aoa"])):
            az, el = angles(np.take_along_axis(vec, order[..., None], 1))
            out[f"{name}_az"][s:e] = np.where(v, az, np.nan)
            out[f"{name}_el"][s:e] = np.where(v, el, np.nan)
        out["inter"][s:e] = np.where(v, tk(cols["inter"]), -1)
    num = np.isfinite(out["power_dbm"]).sum(1).astype(np.int32)
    return PathSet(num_paths=num, **out), los
