"""Build a :class:`BeamDataset` from the built-in simulator: one named scenario
(:class:`~edgebm.sim.ScenarioConfig`) or the domain-randomised one (:class:`~edgebm.sim.RandomScenario`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..sim import RandomScenario, RandomSimResult, ScenarioConfig, SimResult, simulate, simulate_random, simulate_trajectories
from ..sim.codebooks import panel_pointing
from .dataset import BeamDataset

__all__ = ["dataset_from_sim", "dataset_from_random", "generate_dataset", "codebook_arrays", "GENERATOR"]

GENERATOR = "edgebm.sim/1"


def codebook_arrays(codebooks: dict[str, Any], frame: str = "global") -> dict[str, np.ndarray]:
    """Flatten simulator codebooks into the ``cb_*`` arrays of the dataset schema.

    ``cb_{a,b}_az`` / ``cb_{a,b}_el`` (deg, elevation from the zenith) are the beams' pointing in the city frame
    (``frame="global"``, one fixed panel: named scenarios) or in the panel's own frame (``frame="panel"``:
    azimuth from boresight, elevation from the panel's up axis, 90 = boresight; the random scenario, where every
    city's panel points elsewhere). ``cb_{a,b}_psi`` (n_beams, 2) float32: the beams' panel-frame spatial
    frequencies (psi_v, psi_h) in [-1, 1], the same in either frame.
    """
    if frame not in ("global", "panel"):
        raise ValueError(f"codebook_arrays: frame must be 'global' or 'panel', got {frame!r}")
    a, b = codebooks["set_a"], codebooks["set_b"]
    out = {"cb_children": np.asarray(codebooks["children"], dtype=np.int64)}
    for tag, cb in (("a", a), ("b", b)):
        az, el = (cb.az_deg, cb.el_deg) if frame == "global" else panel_pointing(cb.psi)
        out[f"cb_{tag}_weights"] = np.asarray(cb.weights, dtype=np.complex64)
        out[f"cb_{tag}_az"] = np.asarray(az, dtype=np.float32)
        out[f"cb_{tag}_el"] = np.asarray(el, dtype=np.float32)
        out[f"cb_{tag}_psi"] = np.asarray(cb.psi, dtype=np.float32)
    return out


def dataset_from_sim(res: SimResult) -> BeamDataset:
    """Wrap a :class:`~edgebm.sim.SimResult` as a validated :class:`BeamDataset`."""
    cfg = res.config
    arrays = {
        "rsrp_b": np.asarray(res.rsrp_b, dtype=np.float32),
        "rsrp_a": np.asarray(res.rsrp_a, dtype=np.float32),
        "best_a": np.asarray(res.best_a, dtype=np.int64),
        "pos": np.asarray(res.pos, dtype=np.float32),
        "los": np.asarray(res.los, dtype=bool),
        "snr_db": np.asarray(res.snr_db, dtype=np.float32),
        "noise_dbm": np.asarray(res.noise_dbm, dtype=np.float32),
        "sector": np.asarray(res.sector, dtype=np.int8),
    }
    if res.traj_id is not None:
        arrays["traj_id"] = np.asarray(res.traj_id, dtype=np.int32)
        arrays["t"] = np.asarray(res.t, dtype=np.float32)
    meta = radio_meta(cfg, cfg.to_dict(), int(res.seed), "simulator")
    return BeamDataset(arrays=arrays, codebooks=codebook_arrays(res.codebooks), meta=meta)


NOISE_NOTE = ("complex Gaussian added per antenna element and subcarrier to H before beamforming; "
              "noise_dbm per sample sets the per-element SNR to snr_db; rsrp_a is noise-free")


def radio_meta(cfg: ScenarioConfig, scenario: dict[str, Any], seed: int, source: str, noise: str = NOISE_NOTE,
               generator: str = GENERATOR) -> dict[str, Any]:
    """The dataset metadata every generator writes (simulator, path-table import): radio settings and provenance."""
    return {
        "scenario": scenario,
        "carrier_hz": float(cfg.carrier_hz),
        "bs_array": list(cfg.bs_array),
        "ue_array": list(cfg.ue_array),
        "set_a": int(cfg.set_a),
        "set_b": int(cfg.set_b),
        "snr_db": float(cfg.snr_db),
        "noise": noise,
        "seed": int(seed),
        "generator": generator,
        "source": source,
    }


def dataset_from_random(res: RandomSimResult) -> BeamDataset:
    """Wrap a :func:`~edgebm.sim.simulate_random` result as a validated :class:`BeamDataset`.

    Adds the per-sample ``city_id`` (int32). Metadata: ``scenario = {"kind": "random", "cities": K, "seed": s,
    ...ranges}`` (:meth:`RandomScenario.to_dict` plus the seed and the stream), ``carrier_hz`` / ``ue_array``
    ``"random"`` when drawn per city, ``snr_db`` the [low, high] range, ``codebook_frame = "panel"``.
    """
    rs = res.scenario
    arrays = {name: np.asarray(getattr(res, name)) for name in
              ("rsrp_b", "rsrp_a", "best_a", "pos", "los", "snr_db", "noise_dbm", "sector", "city_id")}
    scenario = {**rs.to_dict(), "seed": int(res.seed), "stream": int(res.stream)}
    meta = radio_meta(rs.base, scenario, int(res.seed), "simulator")
    meta.update({"carrier_hz": scenario["carrier_hz"], "ue_array": scenario["ue_array"], "snr_db": list(rs.snr_db),
                 "codebook_frame": "panel"})
    return BeamDataset(arrays=arrays, codebooks=codebook_arrays(rs.codebooks(), frame="panel"), meta=meta)


def generate_dataset(
    cfg: ScenarioConfig | RandomScenario,
    n_samples: int,
    seed: int,
    trajectories: tuple[int, int, float] | None = None,
    stream: int = 0,
) -> BeamDataset:
    """Simulate ``n_samples`` UE drops (or ``trajectories=(n_ues, n_steps, dt_s)``) into a dataset.

    ``cfg`` is one named scenario or a :class:`~edgebm.sim.RandomScenario` (drops only; ``stream`` picks an
    independent sample stream over the same cities, see :func:`~edgebm.sim.simulate_random`).
    """
    if isinstance(cfg, RandomScenario):
        if trajectories is not None:
            raise ConfigError("trajectories", "not available with the random scenario", "generate UE drops")
        return dataset_from_random(simulate_random(cfg, n_samples, seed, stream=stream))
    if trajectories is not None:
        n_ues, n_steps, dt_s = trajectories
        return dataset_from_sim(simulate_trajectories(cfg, n_ues=n_ues, n_steps=n_steps, dt_s=dt_s, seed=seed))
    return dataset_from_sim(simulate(cfg, n_samples=n_samples, seed=seed))
