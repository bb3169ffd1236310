"""The simulator's own paths as a path table (the interchange format of
:mod:`edgebm.data.paths`, DeepMIMO v4 names and units; see ``docs/path_table.md``).

``sim_to_path_table(simulate(cfg, n, seed))`` re-imported with
``edgebm.data.paths.dataset_from_path_table(table, <cfg's arrays, codebooks, SNR, subcarriers>,
seed=seed)`` reproduces the simulator's ``rsrp_a`` / ``rsrp_b`` / ``noise_dbm`` bit for bit for a
single-sector scenario (a 3-sector one is re-measured single-sector by the importer).
Write it with ``edgebm.data.paths.save_path_table(path, table)``.
"""

from __future__ import annotations

import numpy as np

from .config import ScenarioConfig
from .paths import PathSet
from .scenario import SimResult
from .sectors import sector_boresights

__all__ = ["path_table_from_paths", "sim_to_path_table"]


def path_table_from_paths(paths: PathSet, ue_pos: np.ndarray, cfg: ScenarioConfig) -> dict[str, np.ndarray]:
    """Path table dict for :func:`~edgebm.sim.find_paths` output ``paths`` at ``ue_pos`` (N, 3).

    power = ``power_dbm`` - 30 in float64 (dBW; exact, so dBW + 30 gives back the float32 dBm),
    the other matrices as the simulator stores them (float32 deg / s, elevation from the zenith),
    ``inter`` int16 with -1 padding (11 = double reflection), ``tx_pos`` = (0, 0, bs_height_m),
    ``carrier_hz``, ``power_unit`` = "dBW", and for a single-sector ``cfg`` the panel's
    ``bs_boresight_az`` / ``bs_downtilt`` (the importer's defaults).
    """
    ue = np.asarray(ue_pos)
    if ue.ndim != 2 or ue.shape != (len(paths), 3):
        raise ValueError(f"path_table_from_paths: ue_pos must be ({len(paths)}, 3), got {ue.shape}")
    table = {
        "rx_pos": ue.copy(),
        "tx_pos": np.array([0.0, 0.0, float(cfg.bs_height_m)]),
        "power": np.asarray(paths.power_dbm, np.float32).astype(np.float64) - 30.0,
        "phase": np.asarray(paths.phase_deg).copy(),
        "delay": np.asarray(paths.delay_s).copy(),
        "aoa_az": np.asarray(paths.aoa_az).copy(),
        "aoa_el": np.asarray(paths.aoa_el).copy(),
        "aod_az": np.asarray(paths.aod_az).copy(),
        "aod_el": np.asarray(paths.aod_el).copy(),
        "inter": np.asarray(paths.inter).copy(),
        "num_paths": np.asarray(paths.num_paths, np.int32).copy(),
        "carrier_hz": np.array(float(cfg.carrier_hz)),
        "power_unit": np.array("dBW"),
    }
    if cfg.sectors == 1:
        table["bs_boresight_az"] = np.array(float(sector_boresights(cfg)[0]))
        table["bs_downtilt"] = np.array(float(cfg.downtilt_deg))
    return table


def sim_to_path_table(res: SimResult) -> dict[str, np.ndarray]:
    """Path table dict of a :class:`~edgebm.sim.SimResult` (its paths at its UE positions)."""
    return path_table_from_paths(res.paths, res.pos, res.config)
