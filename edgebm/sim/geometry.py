"""City geometry: rectangular buildings on a street grid, point-in-building lookups and the
vectorised segment-vs-building (3-D slab) blockage test.

Frame: x east, y north, z up, metres; the BS mast stands at ``(0, 0)`` (a street corner) and the
city is generated around it. Every building is an axis-aligned box ``[xmin, xmax] x [ymin, ymax]
x [0, height]`` with integer-metre footprints, so a 1 m raster of building ids is exact.

Two kinds of city, one builder (:func:`make_city`):

* the named test cities :data:`CITY_NAMES` (``city0`` .. ``city3``): hand-written layout specs,
  building heights and open lots from a fixed per-city integer seed;
* procedurally drawn cities ``rand-<SEED>-<K>`` (see :func:`random_city_name`): the whole layout
  (block and lot sizes, street width, alleys, density, height range, tower probability, coverage
  radius, host corner, panel boresight) is drawn from
  ``np.random.default_rng(np.random.SeedSequence([RANDOM_CITY_DOMAIN, SEED, K]).spawn(2)[0])``.
  They can never be one of the named cities: a named layout is never drawn from a seed sequence,
  and a drawn grid ``(block, street width, lots, alley)`` equal to a named city's grid is redrawn,
  so a random city's street grid always differs from every named city's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["City", "make_city", "CITY_NAMES", "segments_blocked", "UE_HEIGHT_M", "HOST_MAX_HEIGHT_M",
           "RANDOM_CITY_DOMAIN", "random_city_name", "parse_random_city", "is_city_name", "random_city_streams"]

CITY_NAMES: tuple[str, ...] = ("city0", "city1", "city2", "city3")
UE_HEIGHT_M = 1.5
HOST_MAX_HEIGHT_M = 12.0   # the building that hosts the BS corner is kept below the lowest BS height (15 m)
# domain tag of the random-city seed space ("RCTY"): SeedSequence([RANDOM_CITY_DOMAIN, seed, k]); the named
# cities use the plain integer seeds 7001..7004, which are never a 3-word entropy starting with this tag
RANDOM_CITY_DOMAIN = 0x52435459
_RANDOM_RE = re.compile(r"^rand-(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,9})$")
_RANDOM_CACHE = 64          # random cities kept in memory (a raster is ~1-2 MB)


@dataclass(frozen=True)
class _CitySpec:
    seed: int
    block: tuple[int, int]      # kerb-to-kerb block size (x, y), m
    street_w: int               # street width (facade to facade), m, even
    lots: tuple[int, int]       # lots per block (x, y)
    alley: int                  # gap between lots inside a block, m
    density: float              # probability that a lot holds a building (else a plaza)
    heights: tuple[float, float]  # uniform building height range, m
    tower_p: float              # probability of a tower (height x1.3..1.8 of the top of the range)
    coverage_m: float           # coverage radius around the BS, m
    host: str                   # which corner building of the BS intersection carries the BS: SW, SE, NW, NE
    description: str
    boresight_offset_deg: float = 0.0   # panel azimuth relative to the diagonal into the intersection, deg


_SPECS: dict[str, _CitySpec] = {
    "city0": _CitySpec(7001, (60, 60), 20, (2, 2), 0, 0.92, (15.0, 40.0), 0.05, 200.0, "SW",
                       "dense downtown: 60 m square blocks of 4 attached buildings, 20 m streets, 15-40 m"),
    "city1": _CitySpec(7002, (92, 50), 16, (3, 2), 4, 0.85, (10.0, 30.0), 0.03, 220.0, "NE",
                       "mid-rise: 92x50 m blocks of 6 buildings split by 4 m alleys, narrow 16 m streets"),
    "city2": _CitySpec(7003, (50, 50), 24, (2, 2), 6, 0.65, (8.0, 20.0), 0.0, 250.0, "NW",
                       "low-rise suburb: small blocks, 6 m gaps, many open lots, wide 24 m streets, 8-20 m"),
    "city3": _CitySpec(7004, (100, 70), 30, (2, 2), 0, 0.8, (15.0, 40.0), 0.12, 170.0, "SE",
                       "high-rise boulevards: large 100x70 m blocks, 30 m avenues, towers up to ~70 m"),
}
_NAMED_GRIDS = {(sp.block, sp.street_w, sp.lots, sp.alley) for sp in _SPECS.values()}

# ranges of the random-city layout draw (all uniform; integers inclusive)
RANDOM_LAYOUT = {
    "lot_m": (16, 48),              # lot edge, m (block = lots * lot + (lots - 1) * alley)
    "lots": (1, 3),                 # lots per block along each axis
    "alley_m": (0, 3, 2),           # alley width = 2 * U{0..3} m (0-6 m) when a block has several lots
    "street_w_m": (6, 18, 2),       # street width = 2 * U{6..18} m (12-36 m, even)
    "density": (0.55, 0.97),
    "height_lo_m": (6.0, 20.0),
    "height_span_m": (8.0, 30.0),   # top of the height range = bottom + span
    "tower_p": (0.0, 0.15),
    "coverage_m": (150.0, 260.0),
    "boresight_offset_deg": (-30.0, 30.0),
}


def random_city_name(seed: int, k: int) -> str:
    """Name of random city ``k`` of the random scenario with dataset seed ``seed`` (``rand-<seed>-<k>``)."""
    return f"rand-{int(seed)}-{int(k)}"


def parse_random_city(name: str) -> tuple[int, int] | None:
    """``(seed, k)`` of a random-city name, None for anything else."""
    m = _RANDOM_RE.match(name) if isinstance(name, str) else None
    if m is None or int(m.group(1)) > 2**63 - 1:
        return None
    return int(m.group(1)), int(m.group(2))


def is_city_name(name: object) -> bool:
    """True for a named city (:data:`CITY_NAMES`) or a random-city name ``rand-<seed>-<k>``."""
    return isinstance(name, str) and (name in _SPECS or parse_random_city(name) is not None)


def random_city_streams(seed: int, k: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(layout, placement) generators of random city ``k`` of dataset seed ``seed``: the two children of
    ``SeedSequence([RANDOM_CITY_DOMAIN, seed, k])``. The layout stream draws the city (:func:`make_city`), the
    placement stream the BS, scatterers and radio settings (:mod:`edgebm.sim.randomize`)."""
    ss = np.random.SeedSequence([RANDOM_CITY_DOMAIN, int(seed), int(k)])
    a, b = ss.spawn(2)
    return np.random.default_rng(a), np.random.default_rng(b)


def _random_spec(seed: int, k: int) -> tuple[_CitySpec, np.random.Generator]:
    """Layout spec of random city (seed, k) and the generator (positioned after the spec draw) that then draws
    its buildings. A grid equal to a named city's is redrawn (see the module doc)."""
    rng, _ = random_city_streams(seed, k)
    r = RANDOM_LAYOUT
    for _ in range(100):
        lots = (int(rng.integers(r["lots"][0], r["lots"][1] + 1)), int(rng.integers(r["lots"][0], r["lots"][1] + 1)))
        lot = (int(rng.integers(r["lot_m"][0], r["lot_m"][1] + 1)), int(rng.integers(r["lot_m"][0], r["lot_m"][1] + 1)))
        alley = r["alley_m"][2] * int(rng.integers(r["alley_m"][0], r["alley_m"][1] + 1))
        if lots == (1, 1):
            alley = 0
        street_w = r["street_w_m"][2] * int(rng.integers(r["street_w_m"][0], r["street_w_m"][1] + 1))
        block = (lots[0] * lot[0] + (lots[0] - 1) * alley, lots[1] * lot[1] + (lots[1] - 1) * alley)
        if (block, street_w, lots, alley) not in _NAMED_GRIDS:
            break
    else:   # pragma: no cover - probability ~ (1/1000)^100
        raise RuntimeError(f"random city ({seed}, {k}): could not draw a grid different from the named cities")
    density = float(rng.uniform(*r["density"]))
    lo = float(rng.uniform(*r["height_lo_m"]))
    hi = lo + float(rng.uniform(*r["height_span_m"]))
    tower_p = float(rng.uniform(*r["tower_p"]))
    coverage = float(np.round(rng.uniform(*r["coverage_m"])))
    host = ("SW", "SE", "NW", "NE")[int(rng.integers(0, 4))]
    offset = float(rng.uniform(*r["boresight_offset_deg"]))
    desc = (f"random city {k} of seed {seed}: {block[0]}x{block[1]} m blocks of {lots[0]}x{lots[1]} lots, "
            f"{alley} m alleys, {street_w} m streets, density {density:.2f}, {lo:.0f}-{hi:.0f} m")
    spec = _CitySpec(seed=int(k), block=block, street_w=street_w, lots=lots, alley=alley, density=density,
                     heights=(lo, hi), tower_p=tower_p, coverage_m=coverage, host=host, description=desc,
                     boresight_offset_deg=offset)
    return spec, rng


@dataclass(frozen=True, eq=False)
class City:
    """A named city layout (fixed per name).

    buildings: (M, 5) float64 ``[xmin, ymin, xmax, ymax, height]`` m.
    streets_x / streets_y: centre-line coordinates (m) of the north-south / east-west streets.
    bounds: ``(xmin, ymin, xmax, ymax)`` of the modelled area, m. BS mast at ``bs_xy = (0, 0)``.
    boresight_az_deg: default single-sector panel azimuth (deg, into the BS intersection).
    raster: (nx, ny) int32 id of the building covering each 1 m cell (-1 = outdoor), cell ``(i, j)``
    covers ``[x0 + i, x0 + i + 1) x [y0 + j, y0 + j + 1)`` with ``(x0, y0) = raster_origin``.
    """

    name: str
    description: str
    buildings: np.ndarray
    street_width_m: float
    block_size_m: tuple[float, float]
    bounds: tuple[float, float, float, float]
    streets_x: np.ndarray
    streets_y: np.ndarray
    boresight_az_deg: float
    coverage_radius_m: float
    seed: int
    raster: np.ndarray
    raster_origin: tuple[int, int]
    bs_xy: tuple[float, float] = (0.0, 0.0)

    @property
    def n_buildings(self) -> int:
        return int(self.buildings.shape[0])

    def building_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Id of the building whose footprint contains ``(x, y)`` (m), -1 outdoors or off the map."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        nx, ny = self.raster.shape
        # the raster has an outdoor border, so clipping off-map points onto it returns -1
        ix = np.clip(np.floor(x - self.raster_origin[0]), 0, nx - 1).astype(np.int64)
        iy = np.clip(np.floor(y - self.raster_origin[1]), 0, ny - 1).astype(np.int64)
        return np.take(self.raster.ravel(), ix * ny + iy)

    def is_outdoor(self, xy: np.ndarray, clearance_m: float = 0.0) -> np.ndarray:
        """True where point(s) ``xy`` (..., 2) m are outside every footprint, also ``clearance_m``
        away along +-x and +-y (probe points), and inside :attr:`bounds`."""
        xy = np.asarray(xy, dtype=np.float64)
        x, y = xy[..., 0], xy[..., 1]
        b = self.bounds
        ok = (x >= b[0]) & (x <= b[2]) & (y >= b[1]) & (y <= b[3]) & (self.building_at(x, y) < 0)
        if clearance_m > 0:
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (0.7, 0.7), (0.7, -0.7), (-0.7, 0.7), (-0.7, -0.7)):
                ok &= self.building_at(x + dx * clearance_m, y + dy * clearance_m) < 0
        return ok


def _lot_edges(start: float, size: int, n: int, alley: int) -> list[tuple[float, float]]:
    lot = (size - (n - 1) * alley) / n
    return [(start + k * (lot + alley), start + k * (lot + alley) + lot) for k in range(n)]


def make_city(name: str) -> City:
    """Build (once, then cached) the layout of city ``name``: one of :data:`CITY_NAMES` (fixed) or a random
    city ``rand-<seed>-<k>`` (drawn, see the module doc).

    The layout is drawn from a per-city seed: block size, street width, lots per block, alleys, open
    lots (density), building heights (m) and the BS corner differ between cities. The returned arrays
    are read-only.
    """
    if isinstance(name, str) and name in _SPECS:
        return _named_city(name)
    sk = parse_random_city(name)
    if sk is None:
        raise ValueError(f"make_city: unknown city {name!r}; allowed: {', '.join(CITY_NAMES)} or rand-<seed>-<k>")
    return _random_city(*sk)


@lru_cache(maxsize=None)
def _named_city(name: str) -> City:
    sp = _SPECS[name]
    return _build_city(name, sp, np.random.default_rng(sp.seed))


@lru_cache(maxsize=_RANDOM_CACHE)
def _random_city(seed: int, k: int) -> City:
    sp, rng = _random_spec(seed, k)
    return _build_city(random_city_name(seed, k), sp, rng)


def _build_city(name: str, sp: _CitySpec, rng: np.random.Generator) -> City:
    w = sp.street_w
    px, py = sp.block[0] + w, sp.block[1] + w
    sx = {"SW": 1, "NW": 1, "SE": -1, "NE": -1}[sp.host]   # direction from host corner into the intersection
    sy = {"SW": 1, "SE": 1, "NW": -1, "NE": -1}[sp.host]
    # intersection centre at the origin of the generation frame; host building corner at (-sx, -sy) * w/2
    bs_gen = (-sx * (w // 2) + sx * 1, -sy * (w // 2) + sy * 1)   # 1 m from the host corner, in the intersection
    half = sp.coverage_m + 90.0
    lo_x, hi_x = bs_gen[0] - half, bs_gen[0] + half
    lo_y, hi_y = bs_gen[1] - half, bs_gen[1] + half
    ix = np.arange(int(np.floor(lo_x / px)) - 1, int(np.ceil(hi_x / px)) + 2)
    iy = np.arange(int(np.floor(lo_y / py)) - 1, int(np.ceil(hi_y / py)) + 2)
    streets_x = ix * px
    streets_y = iy * py
    rows = []
    for bx in streets_x[:-1]:
        for by in streets_y[:-1]:
            for (x0, x1) in _lot_edges(bx + w / 2, sp.block[0], sp.lots[0], sp.alley):
                for (y0, y1) in _lot_edges(by + w / 2, sp.block[1], sp.lots[1], sp.alley):
                    if x1 < lo_x or x0 > hi_x or y1 < lo_y or y0 > hi_y:
                        continue
                    rows.append((x0, y0, x1, y1))
    fp = np.array(rows, dtype=np.float64)
    n = len(fp)
    present = rng.random(n) < sp.density
    h = rng.uniform(sp.heights[0], sp.heights[1], n)
    tower = rng.random(n) < sp.tower_p
    h = np.where(tower, sp.heights[1] * rng.uniform(1.3, 1.8, n), h)
    h = np.round(h * 2) / 2
    # the host building: its corner touches the BS intersection corner (-sx w/2, -sy w/2)
    cx, cy = -sx * w / 2, -sy * w / 2
    host = np.flatnonzero(((fp[:, 0] == cx) | (fp[:, 2] == cx)) & ((fp[:, 1] == cy) | (fp[:, 3] == cy))
                          & (np.sign((fp[:, 0] + fp[:, 2]) / 2 - cx) == -sx)
                          & (np.sign((fp[:, 1] + fp[:, 3]) / 2 - cy) == -sy))
    assert host.size == 1, (name, host)
    present[host] = True
    h[host] = min(h[host[0]], HOST_MAX_HEIGHT_M)
    fp = fp[present] - np.array([bs_gen[0], bs_gen[1], bs_gen[0], bs_gen[1]], dtype=np.float64)
    h = h[present]
    buildings = np.concatenate([fp, h[:, None]], axis=1)
    streets_x = (streets_x - bs_gen[0]).astype(np.float64)
    streets_y = (streets_y - bs_gen[1]).astype(np.float64)
    bounds = (-half, -half, half, half)
    # raster of building ids, 1 m cells, covering every footprint and the bounds
    x0 = int(np.floor(min(bounds[0], buildings[:, 0].min()))) - 2
    y0 = int(np.floor(min(bounds[1], buildings[:, 1].min()))) - 2
    x1 = int(np.ceil(max(bounds[2], buildings[:, 2].max()))) + 2
    y1 = int(np.ceil(max(bounds[3], buildings[:, 3].max()))) + 2
    raster = np.full((x1 - x0, y1 - y0), -1, dtype=np.int32)
    for k, (a0, b0, a1, b1, _) in enumerate(buildings):   # once per city, not per UE
        raster[int(a0) - x0:int(a1) - x0, int(b0) - y0:int(b1) - y0] = k
    az0 = float(np.degrees(np.arctan2(sy, sx))) + sp.boresight_offset_deg
    for arr in (buildings, streets_x, streets_y, raster):
        arr.setflags(write=False)
    return City(name=name, description=sp.description, buildings=buildings, street_width_m=float(w),
                block_size_m=(float(sp.block[0]), float(sp.block[1])), bounds=bounds, streets_x=streets_x,
                streets_y=streets_y, boresight_az_deg=az0, coverage_radius_m=sp.coverage_m, seed=sp.seed,
                raster=raster, raster_origin=(x0, y0))


def segments_blocked(p0: np.ndarray, p1: np.ndarray, cand: np.ndarray, boxes: tuple[np.ndarray, ...],
                     shrink_m: float = 0.05, roof: bool = False):
    """Exact 3-D slab test of segments ``p0 -> p1`` ((n, 3) m) against candidate buildings.

    cand: (n, K) int indices into ``boxes = (xmin, ymin, xmax, ymax, height)`` (each (M+1,), the last
    row a dummy that never blocks). Each segment is shortened by ``shrink_m`` at both ends so that
    paths touching a wall at a reflection point or starting on a roof edge do not block themselves.
    A segment is blocked when its footprint crosses a building footprint and its lowest point over
    that crossing is below the roof.

    Returns blocked (n,) bool; with ``roof=True`` also ``(nu_terms, t_edge, h_edge)`` for the
    dominant roof edge (largest excess height factor) used by the over-roof diffraction term.
    """
    f32 = np.float32
    p0 = np.asarray(p0, dtype=f32)
    p1 = np.asarray(p1, dtype=f32)
    d = p1 - p0
    length = np.sqrt((d * d).sum(1))
    s = (shrink_m / np.maximum(length, 1e-3)).astype(f32)[:, None]
    tiny = f32(1e-9)
    dx = np.where(np.abs(d[:, 0]) < tiny, tiny, d[:, 0])[:, None]
    dy = np.where(np.abs(d[:, 1]) < tiny, tiny, d[:, 1])[:, None]
    x0 = p0[:, 0:1]
    y0 = p0[:, 1:2]
    ix = f32(1) / dx
    iy = f32(1) / dy
    xa = (boxes[0][cand] - x0) * ix
    xb = (boxes[2][cand] - x0) * ix
    ya = (boxes[1][cand] - y0) * iy
    yb = (boxes[3][cand] - y0) * iy
    t_in = np.maximum(np.minimum(xa, xb), np.minimum(ya, yb))
    t_out = np.minimum(np.maximum(xa, xb), np.maximum(ya, yb))
    t_in = np.maximum(t_in, s)
    t_out = np.minimum(t_out, f32(1) - s)
    cross = t_in < t_out
    dz = d[:, 2:3]
    z0 = p0[:, 2:3]
    zlow = z0 + np.minimum(t_in * dz, t_out * dz)
    hb = boxes[4][cand]
    blocked = (cross & (zlow < hb)).any(1)
    if not roof:
        return blocked
    # over-roof knife edge: for every crossed building and both roof edges, excess height of the roof
    # over the segment; nu ~ h_ex / sqrt(t (1 - t)) (the caller scales by sqrt(2 / (lambda L)))
    best = np.full(len(p0), -np.inf, dtype=f32)
    t_best = np.full(len(p0), 0.5, dtype=f32)
    h_best = np.zeros(len(p0), dtype=f32)
    for t in (t_in, t_out):
        tc = np.clip(t, f32(1e-4), f32(1 - 1e-4))
        hex_ = hb - (z0 + tc * dz)
        score = np.where(cross, hex_ / np.sqrt(tc * (1 - tc)), -np.inf).astype(f32)
        k = score.argmax(1)
        sc = np.take_along_axis(score, k[:, None], 1)[:, 0]
        upd = sc > best
        best = np.where(upd, sc, best)
        t_best = np.where(upd, np.take_along_axis(tc, k[:, None], 1)[:, 0], t_best)
        h_best = np.where(upd, np.take_along_axis(hb, k[:, None], 1)[:, 0], h_best)
    return blocked, (best, t_best, h_best)
