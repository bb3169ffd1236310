"""Per-city acceleration structures for the blockage tests (built once per city and BS height).

Every path leg the simulator tests lies, in the ground plan, on a ray from a known *apex*: the BS
(LOS, ground reflection, first legs), the image of the BS in a wall plane (the leg after a single
reflection), a double image (the leg after two canyon reflections) or a diffracting corner. For
each apex the plane around it is cut into ``N_BINS`` azimuth wedges and each wedge keeps the list
of buildings whose footprint overlaps it, so a leg is tested exactly (3-D slab test) against the
few buildings in its wedge instead of all of them. Short legs near the UE (scatterer -> UE) use a
16 m cell table of nearby buildings instead.

The context also pre-selects the reflecting walls and diffracting corners that are visible from
the BS somewhere (sampled), which prunes the per-UE candidate search.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .geometry import City, make_city, segments_blocked

__all__ = ["SceneContext", "scene_context", "ApexTables", "CellTable", "N_BINS"]

N_BINS = 720
CELL_M = 16.0
CELL_MARGIN_M = 30.0
WALL_MARGIN_M = 40.0      # reflecting walls kept up to this far beyond the coverage radius
CORNER_MARGIN_M = 10.0    # diffracting corners kept up to this far beyond the coverage radius


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _pad_lists(mask: np.ndarray, order_key: np.ndarray | None, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, M) bool -> (R, K) padded index lists (sorted by order_key) and counts (R,)."""
    if order_key is not None:
        perm = np.argsort(order_key, kind="stable")
        mask = mask[:, perm]
    else:
        perm = np.arange(mask.shape[1])
    r, m = np.nonzero(mask)
    cnt = np.bincount(r, minlength=mask.shape[0]).astype(np.int32)
    k = max(1, int(cnt.max()) if cnt.size else 1)
    start = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    pos = np.arange(r.size) - start[r]
    out = np.full((mask.shape[0], k), pad, dtype=np.int32)
    out[r, pos] = perm[m]
    return out, cnt


def _wedge_tables(apex_xy: np.ndarray, fp: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Wedge candidate lists for apexes (A, 2) m over footprints fp (M, 4): ``(tbl (A, N_BINS, K) int32 building
    ids in ascending order padded with ``pad``, cnt (A, N_BINS) int32)``. Each apex's lists depend only on that
    apex, so tables built for any subset of apexes hold the same lists."""
    n_a, m = len(apex_xy), len(fp)
    x0, y0, x1, y1 = (fp[None, :, i] for i in range(4))
    ax, ay = apex_xy[:, 0:1], apex_xy[:, 1:2]
    thc = np.arctan2((y0 + y1) / 2 - ay, (x0 + x1) / 2 - ax)            # (A, M)
    lo = np.full((n_a, m), np.inf)
    hi = np.full((n_a, m), -np.inf)
    for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
        vx, vy = cx - ax, cy - ay
        d = _wrap(np.arctan2(vy, vx) - thc)
        d = np.where(np.hypot(vx, vy) < 1e-9, 0.0, d)
        lo = np.minimum(lo, d)
        hi = np.maximum(hi, d)
    delta = 2 * np.pi / N_BINS
    b_lo = np.floor((thc + lo - 1e-4 + np.pi) / delta).astype(np.int32)
    b_hi = np.floor((thc + hi + 1e-4 + np.pi) / delta).astype(np.int32)
    inside = (x0 < ax) & (ax < x1) & (y0 < ay) & (ay < y1)
    nb = np.where(inside, N_BINS, np.minimum(b_hi - b_lo + 1, N_BINS)).astype(np.int32).ravel()
    b_lo = np.where(inside, 0, b_lo).astype(np.int32).ravel()
    # one entry per (apex, building, bin the building overlaps), in (apex, building) order; int32 throughout
    pair = np.repeat(np.arange(n_a * m, dtype=np.int32), nb)
    off = np.arange(pair.size, dtype=np.int32) - np.repeat((np.cumsum(nb) - nb).astype(np.int32), nb)
    b = b_lo[pair] + off
    b %= N_BINS
    apex = pair // m
    row = apex * N_BINS + b                                             # apex * N_BINS + bin
    bld = pair - apex * m
    order = np.argsort(row, kind="stable")                              # stable: buildings stay ascending
    row, bld = row[order], bld[order]
    cnt = np.bincount(row, minlength=n_a * N_BINS).astype(np.int32)
    k = max(1, int(cnt.max()))
    start = (np.cumsum(cnt) - cnt).astype(np.int32)
    tbl = np.full((n_a * N_BINS, k), pad, dtype=np.int32)
    tbl[row, np.arange(row.size, dtype=np.int32) - start[row]] = bld
    return tbl.reshape(n_a, N_BINS, k), cnt.reshape(n_a, N_BINS)


@dataclass(eq=False)
class ApexTables:
    """Azimuth-wedge candidate lists around apex points (see module doc).

    Built lazily: an apex's lists are computed the first time a leg from it is tested (most apexes of a city,
    e.g. the canyons of streets no UE stands in, are never used by a given run); the lists do not depend on
    which apexes were built before, so results are the same as with every table built up front.
    """

    xy: np.ndarray      # (A, 2) m
    fp: np.ndarray      # (M, 4) building footprints, m
    pad: int            # dummy building id used as padding
    tbl: np.ndarray     # (A, N_BINS, K) int32 building ids, padded with the dummy id; valid where ``built``
    cnt: np.ndarray     # (A, N_BINS) int32
    built: np.ndarray   # (A,) bool

    @classmethod
    def build(cls, apex_xy: np.ndarray, fp: np.ndarray, pad: int) -> "ApexTables":
        """Tables for apexes (A, 2) m over building footprints fp (M, 4); ``pad`` = dummy id. Nothing is
        computed until :meth:`candidates` needs it."""
        apex_xy = np.asarray(apex_xy, dtype=np.float64).reshape(-1, 2)
        n_a = len(apex_xy)
        return cls(xy=apex_xy, fp=np.asarray(fp, dtype=np.float64), pad=int(pad),
                   tbl=np.empty((n_a, N_BINS, 1), dtype=np.int32), cnt=np.zeros((n_a, N_BINS), dtype=np.int32),
                   built=np.zeros(n_a, dtype=bool))

    def ensure(self, apex: np.ndarray) -> None:
        """Compute the tables of the apexes in ``apex`` that are not built yet."""
        apex = np.asarray(apex, dtype=np.int64)
        miss = ~self.built[apex]
        if not miss.any():
            return
        need = np.unique(apex[miss])
        tbl, cnt = _wedge_tables(self.xy[need], self.fp, self.pad)
        k = tbl.shape[2]
        if k > self.tbl.shape[2]:      # widen, at least x2 (np.empty: rows of unbuilt apexes are never read)
            wide = np.empty(self.tbl.shape[:2] + (max(k, 2 * self.tbl.shape[2]),), dtype=np.int32)
            old = np.flatnonzero(self.built)
            wide[old, :, :self.tbl.shape[2]] = self.tbl[old]
            wide[old, :, self.tbl.shape[2]:] = self.pad
            self.tbl = wide
        if k == self.tbl.shape[2]:
            self.tbl[need] = tbl
        else:
            part = np.full((need.size, N_BINS, self.tbl.shape[2]), self.pad, dtype=np.int32)
            part[:, :, :k] = tbl
            self.tbl[need] = part
        self.cnt[need] = cnt
        self.built[need] = True

    def candidates(self, apex: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
        """(n, K_eff) candidate buildings for legs on the rays ``apex[i] -> target_xy[i]`` (m)."""
        if len(apex) == 0:
            return np.zeros((0, 1), dtype=np.int32)
        self.ensure(apex)
        a = self.xy[apex]
        ang = np.arctan2(target_xy[:, 1] - a[:, 1], target_xy[:, 0] - a[:, 0])
        b = np.clip(((ang + np.pi) * (N_BINS / (2 * np.pi))).astype(np.int64), 0, N_BINS - 1)
        k = max(1, int(self.cnt[apex, b].max()))
        return self.tbl[apex, b, :k]


@dataclass(eq=False)
class CellTable:
    """Buildings within ``CELL_MARGIN_M`` of each ``CELL_M`` square cell (for short legs)."""

    origin: tuple[float, float]
    tbl: np.ndarray   # (cx, cy, K)
    cnt: np.ndarray   # (cx, cy)

    @classmethod
    def build(cls, city: City, pad: int) -> "CellTable":
        fp = city.buildings
        x0, y0 = city.raster_origin
        nx = int(np.ceil(city.raster.shape[0] / CELL_M))
        ny = int(np.ceil(city.raster.shape[1] / CELL_M))
        gx, gy = np.meshgrid(x0 + np.arange(nx) * CELL_M, y0 + np.arange(ny) * CELL_M, indexing="ij")
        gx, gy = gx.ravel(), gy.ravel()
        m = CELL_MARGIN_M
        ov = ((fp[None, :, 0] <= gx[:, None] + CELL_M + m) & (fp[None, :, 2] >= gx[:, None] - m)
              & (fp[None, :, 1] <= gy[:, None] + CELL_M + m) & (fp[None, :, 3] >= gy[:, None] - m))
        t, c = _pad_lists(ov, None, pad)
        return cls(origin=(float(x0), float(y0)), tbl=t.reshape(nx, ny, -1), cnt=c.reshape(nx, ny))

    def candidates(self, xy: np.ndarray) -> np.ndarray:
        """(n, K_eff) buildings that can block a leg shorter than CELL_MARGIN_M starting at ``xy``."""
        i = np.clip(((xy[:, 0] - self.origin[0]) // CELL_M).astype(np.int64), 0, self.tbl.shape[0] - 1)
        j = np.clip(((xy[:, 1] - self.origin[1]) // CELL_M).astype(np.int64), 0, self.tbl.shape[1] - 1)
        if len(i) == 0:
            return np.zeros((0, 1), dtype=np.int32)
        k = max(1, int(self.cnt[i, j].max()))
        return self.tbl[i, j, :k]


@dataclass(eq=False)
class SceneContext:
    """Everything path finding needs about a (city, BS height) pair. See :func:`scene_context`."""

    city: City
    bs: np.ndarray                      # (3,) BS position, m
    boxes: tuple[np.ndarray, ...]       # 5 x (M+1,) float32: xmin, ymin, xmax, ymax, height (+ dummy)
    heights: np.ndarray                 # (M+1,) float64, dummy -1
    apex: ApexTables                    # apex 0 = the BS
    cells: CellTable
    # BS-visible reflecting walls: axis (0: plane x = c, 1: plane y = c), outward normal sign, span, height
    w_axis: np.ndarray
    w_c: np.ndarray
    w_n: np.ndarray
    w_s0: np.ndarray
    w_s1: np.ndarray
    w_h: np.ndarray
    w_apex: np.ndarray                  # apex id of the BS image in the wall's plane
    # BS-visible convex building corners (diffracting vertical edges), nudged 5 cm outwards
    k_xy: np.ndarray
    k_h: np.ndarray
    k_apex: np.ndarray
    # street canyons: for streets_x (planes x = X -+ w/2) and streets_y; [west/south, east/north]
    canyon_apex_x: np.ndarray           # (nX, 2) apex ids of the BS images in the two facade planes
    canyon_apex_y: np.ndarray
    dbl_apex_x: np.ndarray              # (nX, 2) apex ids of the double images, order 0: west/south first
    dbl_apex_y: np.ndarray


def _visible_from_bs(bs_tables: ApexTables, bs: np.ndarray, pts: np.ndarray, boxes) -> np.ndarray:
    out = np.zeros(len(pts), dtype=bool)
    for s in range(0, len(pts), 8192):
        p = pts[s:s + 8192]
        cand = bs_tables.candidates(np.zeros(len(p), dtype=np.int64), p[:, :2])
        out[s:s + 8192] = ~segments_blocked(np.broadcast_to(bs, p.shape), p, cand, boxes)
    return out


@lru_cache(maxsize=16)
def scene_context(city_name: str, bs_height_m: float) -> SceneContext:
    """Build (cached) the :class:`SceneContext` for ``city_name`` with the BS at ``bs_height_m`` m."""
    city = make_city(city_name)
    b = city.buildings
    m = len(b)
    bs = np.array([city.bs_xy[0], city.bs_xy[1], float(bs_height_m)])
    dummy = np.array([[1e7, 1e7, 1e7 + 1, 1e7 + 1, 0.0]])
    bb = np.concatenate([b, dummy], 0)
    boxes = tuple(np.ascontiguousarray(bb[:, i], dtype=np.float32) for i in range(5))
    fp = b[:, :4]
    bs_tab = ApexTables.build(bs[None, :2], fp, pad=m)

    # --- exposed walls (not glued to a neighbour), facing the BS, visible from it somewhere
    x0, y0, x1, y1, h = b.T
    axis = np.repeat([[0, 0, 1, 1]], m, 0)
    c = np.stack([x0, x1, y0, y1], 1)
    nrm = np.repeat([[-1.0, 1.0, -1.0, 1.0]], m, 0)
    s0 = np.stack([y0, y0, x0, x0], 1)
    s1 = np.stack([y1, y1, x1, x1], 1)
    hh = np.repeat(h[:, None], 4, 1)
    axis, c, nrm, s0, s1, hh = (a.ravel() for a in (axis, c, nrm, s0, s1, hh))
    mid = (s0 + s1) / 2
    ox = np.where(axis == 0, c + 0.5 * nrm, mid)
    oy = np.where(axis == 0, mid, c + 0.5 * nrm)
    exposed = city.building_at(ox, oy) < 0
    b_a = np.where(axis == 0, bs[0], bs[1])
    facing = (b_a - c) * nrm > 0.5
    # distance from the BS to the wall segment: walls far outside the coverage area are dropped
    o_lo, o_hi = s0, s1
    b_o = np.where(axis == 0, bs[1], bs[0])
    dw = np.hypot(b_a - c, np.maximum(np.maximum(o_lo - b_o, b_o - o_hi), 0.0))
    near = dw < city.coverage_radius_m + WALL_MARGIN_M
    keep = np.flatnonzero(exposed & facing & near)
    # sample points on each candidate wall: a 5-height column every ~3 m along it (np.linspace's arithmetic,
    # vectorised over walls: i * step + start, last point exactly at the end)
    start, stop = s0[keep] + 0.5, s1[keep] - 0.5
    num = np.maximum(2, ((s1[keep] - s0[keep]) / 3.0).astype(np.int64) + 1)
    owner_s = np.repeat(np.arange(keep.size), num)
    i_s = np.arange(owner_s.size) - np.repeat(np.cumsum(num) - num, num)
    ss = i_s.astype(np.float64) * ((stop - start) / (num - 1))[owner_s] + start[owner_s]
    last = i_s == num[owner_s] - 1
    ss[last] = stop[owner_s[last]]
    hk = hh[keep][owner_s]
    zz = np.stack([np.ones_like(hk), 0.25 * hk, 0.5 * hk, 0.75 * hk, hk - 0.3], 1).ravel()
    S = np.repeat(ss, 5)
    wk = keep[np.repeat(owner_s, 5)]
    cc = c[wk] + 0.05 * nrm[wk]
    pts = np.where((axis[wk] == 0)[:, None], np.stack([cc, S, zz], 1), np.stack([S, cc, zz], 1))
    # a wall is kept when any of its points is visible: test the top row first, then lower rows only on the walls
    # not seen yet (the same set of walls as testing every point, at a fraction of the tests)
    level = np.tile(np.arange(5), len(ss))
    seen = np.zeros(len(c), dtype=bool)
    for lv in (4, 3, 2, 1, 0):
        todo = np.flatnonzero((level == lv) & ~seen[wk])
        if todo.size:
            seen[wk[todo[_visible_from_bs(bs_tab, bs, pts[todo], boxes)]]] = True
    wsel = np.flatnonzero(seen)

    # --- convex exposed corners visible from the BS
    cxs = np.stack([x0, x1, x0, x1], 1).ravel()
    cys = np.stack([y0, y0, y1, y1], 1).ravel()
    sx = np.tile([-1.0, 1.0, -1.0, 1.0], m)
    sy = np.tile([-1.0, -1.0, 1.0, 1.0], m)
    ch = np.repeat(h, 4)
    convex = ((city.building_at(cxs + 0.5 * sx, cys + 0.5 * sy) < 0) & (city.building_at(cxs + 0.5 * sx, cys - 0.5 * sy) < 0)
              & (city.building_at(cxs - 0.5 * sx, cys + 0.5 * sy) < 0))
    ci = np.flatnonzero(convex & (np.hypot(cxs - bs[0], cys - bs[1]) < city.coverage_radius_m + CORNER_MARGIN_M))
    qx, qy = cxs[ci] + 0.05 * sx[ci], cys[ci] + 0.05 * sy[ci]
    zs = np.stack([np.full(ci.size, 1.5), ch[ci] / 2, ch[ci] - 0.3], 1)
    cp = np.stack([np.repeat(qx, 3), np.repeat(qy, 3), zs.ravel()], 1)
    cvis = _visible_from_bs(bs_tab, bs, cp, boxes).reshape(-1, 3).any(1)
    ci = ci[cvis]
    k_xy = np.stack([cxs[ci] + 0.05 * sx[ci], cys[ci] + 0.05 * sy[ci]], 1)
    k_h = ch[ci]

    # --- planes: of the visible walls and of every street canyon; their BS images; double images
    w2 = city.street_width_m / 2
    planes: dict[tuple[int, float], int] = {}
    for a_, c_ in zip(axis[wsel], c[wsel]):
        planes.setdefault((int(a_), float(c_)), len(planes))
    for a_, streets in ((0, city.streets_x), (1, city.streets_y)):
        for s in streets:
            planes.setdefault((a_, float(s - w2)), len(planes))
            planes.setdefault((a_, float(s + w2)), len(planes))
    apex = [bs[:2]]
    for (a_, c_) in planes:
        im = bs[:2].copy()
        im[a_] = 2 * c_ - bs[a_]
        apex.append(im)
    plane_id = {k: 1 + v for k, v in planes.items()}
    dbl = {}
    for a_, streets in ((0, city.streets_x), (1, city.streets_y)):
        ids = np.zeros((len(streets), 2), dtype=np.int64)
        canyon = np.zeros((len(streets), 2), dtype=np.int64)
        for i, s in enumerate(streets):
            lo_c, hi_c = float(s - w2), float(s + w2)
            canyon[i] = plane_id[(a_, lo_c)], plane_id[(a_, hi_c)]
            for order, (c1, c2) in enumerate(((lo_c, hi_c), (hi_c, lo_c))):
                im = bs[:2].copy()
                im[a_] = 2 * c2 - (2 * c1 - bs[a_])
                ids[i, order] = len(apex)
                apex.append(im)
        dbl[a_] = (ids, canyon)
    k_apex = np.arange(len(apex), len(apex) + len(ci))
    apex = np.concatenate([np.array(apex), k_xy], 0)
    tables = ApexTables.build(apex, fp, pad=m)
    w_apex = np.array([plane_id[(int(a_), float(c_))] for a_, c_ in zip(axis[wsel], c[wsel])], dtype=np.int64)
    heights = np.concatenate([h, [-1.0]])
    ctx = SceneContext(
        city=city, bs=bs, boxes=boxes, heights=heights, apex=tables, cells=CellTable.build(city, pad=m),
        w_axis=axis[wsel].astype(np.int64), w_c=c[wsel], w_n=nrm[wsel], w_s0=s0[wsel], w_s1=s1[wsel], w_h=hh[wsel],
        w_apex=w_apex, k_xy=k_xy, k_h=k_h, k_apex=k_apex,
        canyon_apex_x=dbl[0][1], canyon_apex_y=dbl[1][1], dbl_apex_x=dbl[0][0], dbl_apex_y=dbl[1][0])
    return ctx
