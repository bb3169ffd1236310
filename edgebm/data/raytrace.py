"""Ray-traced path tables from Sionna RT (optional extra: ``pip install edgebm[raytrace]``).

:func:`raytrace_scene` places one transmitter and a grid of receivers in a Sionna RT scene (one of
the scenes bundled with Sionna, e.g. ``simple_street_canyon``, or a Mitsuba XML file), traces the
paths with :class:`sionna.rt.PathSolver` using single-element isotropic arrays, and converts them
into a path table (:mod:`edgebm.data.paths`, ``docs/path_table.md``):

* power (dBW) = ``20 log10 |a| + tx_power_dbm - 30`` (Sionna's ``a`` excludes the transmit power),
* phase (deg) = ``angle(a)`` (Sionna's ``a`` carries the carrier phase, like the table's ``phase``),
* delay (s) = ``tau``; angles = ``theta_t / phi_t / theta_r / phi_r`` in degrees (Sionna's theta is
  already the zenith angle, the table's elevation convention; azimuths counter-clockwise from +x),
* interactions per depth (Sionna bit flags: 1 specular, 2 diffuse, 4 refraction, 8 diffraction)
  -> digits 1 reflection, 3 scattering, 4 transmission, 2 diffraction, concatenated from the
  transmitter side (no interaction = 0 = LoS).

Paths are sorted strongest first, at most ``max_paths`` per receiver, NaN padded. Receivers with no
valid path are dropped (count logged and put in ``info``). Sionna is imported lazily.

Tested with sionna-rt 2.2.0 (mitsuba 3.9.1, drjit 1.5.0) on the CPU (Dr.Jit LLVM backend). The LLVM
backend needs an LLVM shared library: LLVM 19 works (Debian ``libllvm19``), LLVM 14/15 abort inside
``PathSolver``; set ``DRJIT_LIBLLVM_PATH`` to pick one when several are installed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .paths import validate_path_table

__all__ = ["raytrace_scene", "sionna_paths_to_table", "sionna_interaction_codes", "RaytraceUnavailable",
           "SIONNA_TO_CODE"]

log = logging.getLogger(__name__)

INSTALL_HINT = "Sionna RT is not installed: pip install edgebm[raytrace]"
SIONNA_TO_CODE = {1: 1, 2: 3, 4: 4, 8: 2}   # specular -> reflection, diffuse -> scattering, refraction -> transmission, diffraction


class RaytraceUnavailable(ImportError):
    """Sionna RT cannot be imported (not installed, or its Dr.Jit backend does not start)."""


def _import_sionna():
    try:
        import sionna.rt as rt  # noqa: PLC0415
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("sionna", "mitsuba", "drjit"):
            raise RaytraceUnavailable(INSTALL_HINT) from None
        raise
    except ImportError as e:
        raise RaytraceUnavailable(f"Sionna RT is installed but failed to start ({e}); the CPU backend needs "
                                  "libLLVM >= 19 (apt-get install libllvm19, or set DRJIT_LIBLLVM_PATH)") from None
    return rt


def sionna_interaction_codes(types: np.ndarray) -> np.ndarray:
    """Per-depth Sionna interaction flags (D, ...) -> path-table codes (...) int64: one digit per
    interaction from the transmitter side (11 = two reflections, 0 = LoS). Unknown flags (e.g.
    sensing) raise ValueError."""
    t = np.asarray(types).astype(np.int64)
    out = np.zeros(t.shape[1:], np.int64)
    for d in range(t.shape[0]):
        flag = t[d]
        digit = np.zeros_like(flag)
        for s, code in SIONNA_TO_CODE.items():
            digit = np.where(flag == s, code, digit)
        unknown = (flag != 0) & (digit == 0)
        if unknown.any():
            raise ValueError(f"unsupported Sionna interaction flag {int(flag[unknown][0])}")
        out = np.where(digit > 0, out * 10 + digit, out)
    return out


def sionna_paths_to_table(paths: Any, rx_pos: np.ndarray, tx_pos: Sequence[float], carrier_hz: float,
                          tx_power_dbm: float = 30.0, max_paths: int = 25) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Convert a :class:`sionna.rt.Paths` of one single-antenna transmitter and ``len(rx_pos)``
    single-antenna receivers into path-table arrays. Returns ``(table, has_path (R,) bool)``; the
    table keeps every receiver (``num_paths`` 0 for those without a valid path)."""
    r = len(rx_pos)
    a_re, a_im = paths.a
    a = (np.asarray(a_re, np.float64) + 1j * np.asarray(a_im, np.float64)).reshape(r, -1)
    flat = lambda x: np.asarray(x, np.float64).reshape(r, -1)  # noqa: E731
    tau, th_t, ph_t, th_r, ph_r = (flat(x) for x in (paths.tau, paths.theta_t, paths.phi_t, paths.theta_r, paths.phi_r))
    valid = np.asarray(paths.valid, bool).reshape(r, -1) & (np.abs(a) > 0)
    inter_raw = np.asarray(paths.interactions)
    depth = inter_raw.shape[0]
    codes = sionna_interaction_codes(inter_raw.reshape(depth, r, -1)) if depth else np.zeros(a.shape, np.int64)
    p_all = a.shape[1]
    pw = np.where(valid, 20.0 * np.log10(np.maximum(np.abs(a), 1e-300)) + (tx_power_dbm - 30.0), -np.inf)
    order = np.argsort(-pw, axis=1, kind="stable")[:, :max_paths]
    take = lambda x: np.take_along_axis(x, order, 1)  # noqa: E731
    v = take(valid)
    num = v.sum(1).astype(np.int32)
    p = max(1, min(max_paths, p_all))

    def mat(x: np.ndarray) -> np.ndarray:
        out = np.full((r, p), np.nan, np.float32)
        out[:, :x.shape[1]] = np.where(v, x, np.nan)
        return out

    inter = np.full((r, p), -1, np.int64)
    inter[:, :order.shape[1]] = np.where(v, take(codes), -1)
    table = {
        "rx_pos": np.asarray(rx_pos, np.float64).reshape(r, 3),
        "tx_pos": np.asarray(tx_pos, np.float64).reshape(3),
        "power": mat(take(pw)),
        "phase": mat(np.degrees(np.angle(take(a)))),
        "delay": mat(take(tau)),
        "aoa_az": mat(np.degrees(take(ph_r))),
        "aoa_el": mat(np.degrees(take(th_r))),
        "aod_az": mat(np.degrees(take(ph_t))),
        "aod_el": mat(np.degrees(take(th_t))),
        "inter": inter,
        "num_paths": num,
        "carrier_hz": np.array(float(carrier_hz)),
        "power_unit": np.array("dBW"),
    }
    return table, num > 0


def _scene_file(rt: Any, scene: str | Path) -> str:
    p = Path(str(scene))
    if p.suffix == ".xml":
        if not p.is_file():
            raise FileNotFoundError(f"raytrace_scene: no scene file {p}")
        return str(p)
    f = getattr(rt.scene, str(scene), None)
    if not isinstance(f, str) or not f.endswith(".xml"):
        names = sorted(k for k, val in vars(rt.scene).items() if isinstance(val, str) and val.endswith(".xml"))
        raise ValueError(f"raytrace_scene: unknown Sionna scene {scene!r}; bundled: {', '.join(names)}")
    return f


def raytrace_scene(
    scene: str | Path = "simple_street_canyon",
    tx: Sequence[float] = (-45.0, 0.0, 10.0),
    grid: tuple[tuple[float, float, int], tuple[float, float, int], float] = ((-40.0, 60.0, 11), (-6.0, 6.0, 3), 1.5),
    carrier_hz: float = 28e9,
    max_depth: int = 2,
    seed: int = 0,
    *,
    rx_pos: np.ndarray | None = None,
    tx_power_dbm: float = 30.0,
    max_paths: int = 25,
    samples_per_src: int = 1_000_000,
    diffraction: bool = False,
    diffuse_reflection: bool = False,
    refraction: bool = True,
    batch_size: int = 1024,
    info: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Ray-trace ``scene`` from a transmitter at ``tx`` (m) to a receiver grid and return a path table.

    ``grid = ((x0, x1, nx), (y0, y1, ny), z)``: ``nx * ny`` receivers at ``linspace(x0, x1, nx)`` x
    ``linspace(y0, y1, ny)``, height ``z`` (x varies fastest); or give
    ``rx_pos`` (R, 3) explicitly. ``carrier_hz`` sets ``scene.frequency``. Paths: line of sight,
    specular reflections and refraction up to ``max_depth`` interactions (Sionna's PathSolver
    defaults), optionally ``diffraction`` and ``diffuse_reflection``; ``seed`` seeds the solver's
    ray sampling. Power is referred to ``tx_power_dbm`` (default 30 dBm = 0 dBW, the simulator's
    default transmit power). At most ``max_paths`` (strongest) per receiver. Receivers are traced
    ``batch_size`` at a time. Receivers without a valid path are dropped; pass ``info={}`` to get
    ``n_grid``, ``n_dropped``, ``dropped_pos``, ``seconds``, ``sionna_version``.

    Raises :class:`RaytraceUnavailable` (``Sionna RT is not installed: pip install edgebm[raytrace]``)
    when Sionna RT cannot be imported.
    """
    rt = _import_sionna()
    import mitsuba as mi  # noqa: PLC0415  (installed with sionna-rt)

    t0 = time.perf_counter()
    if rx_pos is None:
        (x0, x1, nx), (y0, y1, ny), z = grid
        xs, ys = np.linspace(float(x0), float(x1), int(nx)), np.linspace(float(y0), float(y1), int(ny))
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        rx = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, float(z))], 1)
    else:
        rx = np.asarray(rx_pos, np.float64).reshape(-1, 3)
    if len(rx) == 0:
        raise ValueError("raytrace_scene: no receivers")
    txp = np.asarray(tx, np.float64).reshape(3)

    sc = rt.load_scene(_scene_file(rt, scene))
    sc.frequency = float(carrier_hz)
    sc.tx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    sc.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    sc.add(rt.Transmitter(name="tx", position=mi.Point3f(*[float(v) for v in txp])))
    solver = rt.PathSolver()
    parts, masks = [], []
    for s in range(0, len(rx), int(batch_size)):
        chunk = rx[s:s + int(batch_size)]
        names = [f"rx{s + i}" for i in range(len(chunk))]
        for name, p in zip(names, chunk):
            sc.add(rt.Receiver(name=name, position=mi.Point3f(*[float(v) for v in p])))
        paths = solver(sc, max_depth=int(max_depth), samples_per_src=int(samples_per_src), synthetic_array=True,
                       los=True, specular_reflection=True, diffuse_reflection=bool(diffuse_reflection),
                       refraction=bool(refraction), diffraction=bool(diffraction), seed=int(seed))
        tab, has = sionna_paths_to_table(paths, chunk, txp, carrier_hz, tx_power_dbm=tx_power_dbm, max_paths=max_paths)
        parts.append(tab)
        masks.append(has)
        for name in names:
            sc.remove(name)
    has = np.concatenate(masks)
    p = max(t["power"].shape[1] for t in parts)

    def cat(name: str) -> np.ndarray:
        fill = -1 if name == "inter" else np.nan
        mats = [np.pad(t[name], ((0, 0), (0, p - t[name].shape[1])), constant_values=fill) for t in parts]
        return np.concatenate(mats)[has]

    table = {k: cat(k) for k in ("power", "phase", "delay", "aoa_az", "aoa_el", "aod_az", "aod_el", "inter")}
    table.update(rx_pos=rx[has], tx_pos=txp, num_paths=np.concatenate([t["num_paths"] for t in parts])[has],
                 carrier_hz=np.array(float(carrier_hz)), power_unit=np.array("dBW"))
    n_drop = int((~has).sum())
    if n_drop:
        log.info("raytrace_scene: dropped %d of %d receiver(s) with no valid path", n_drop, len(rx))
    validate_path_table(table, source=f"raytrace_scene({scene})")
    if info is not None:
        info.update(n_grid=int(len(rx)), n_dropped=n_drop, dropped_pos=rx[~has], seconds=time.perf_counter() - t0,
                    sionna_version=str(getattr(rt, "__version__", "?")))
    return table
