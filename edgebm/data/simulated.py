"""Build a :class:`BeamDataset` from the built-in simulator."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sim import ScenarioConfig, SimResult, simulate, simulate_trajectories
from .dataset import BeamDataset

__all__ = ["dataset_from_sim", "generate_dataset", "codebook_arrays", "GENERATOR"]

GENERATOR = "edgebm.sim/1"


def codebook_arrays(codebooks: dict[str, Any]) -> dict[str, np.ndarray]:
    """Flatten simulator codebooks into the ``cb_*`` arrays of the dataset schema."""
    a, b = codebooks["set_a"], codebooks["set_b"]
    return {
        "cb_a_weights": np.asarray(a.weights, dtype=np.complex64),
        "cb_a_az": np.asarray(a.az_deg, dtype=np.float32),
        "cb_a_el": np.asarray(a.el_deg, dtype=np.float32),
        "cb_b_weights": np.asarray(b.weights, dtype=np.complex64),
        "cb_b_az": np.asarray(b.az_deg, dtype=np.float32),
        "cb_b_el": np.asarray(b.el_deg, dtype=np.float32),
        "cb_children": np.asarray(codebooks["children"], dtype=np.int64),
    }


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


def generate_dataset(
    cfg: ScenarioConfig,
    n_samples: int,
    seed: int,
    trajectories: tuple[int, int, float] | None = None,
) -> BeamDataset:
    """Simulate ``n_samples`` UE drops (or ``trajectories=(n_ues, n_steps, dt_s)``) into a dataset."""
    if trajectories is not None:
        n_ues, n_steps, dt_s = trajectories
        return dataset_from_sim(simulate_trajectories(cfg, n_ues=n_ues, n_steps=n_steps, dt_s=dt_s, seed=seed))
    return dataset_from_sim(simulate(cfg, n_samples=n_samples, seed=seed))
