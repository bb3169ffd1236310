"""Settings every job shares, declared once: the default scenario, the train/val/test split, the soft-label weight."""

from __future__ import annotations

from ..data import BeamDataset
from ..data.dataset import DEFAULT_SPLIT

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_SEED", "SPLIT", "SOFT_WEIGHT", "default_dataset", "split_dataset"]

#: UEs simulated when no dataset is given
DEFAULT_SAMPLES = 20000
DEFAULT_SEED = 0
#: train / validation / test fractions used by train, export and evaluate (the same seed gives the same split)
SPLIT = DEFAULT_SPLIT
#: weight lambda of the seed-003 beam-power soft labels in every training job of the pipeline
SOFT_WEIGHT = 0.2


def default_dataset(n_samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> BeamDataset:
    """The embedded default scenario: city0, 28 GHz, 8x8 BS UPA, 1x1 UE, Set B 16 -> Set A 64, 20 dB."""
    from ..data.simulated import generate_dataset
    from ..sim import ScenarioConfig

    return generate_dataset(ScenarioConfig(), n_samples=n_samples, seed=seed)


def split_dataset(ds: BeamDataset, seed: int = DEFAULT_SEED) -> tuple[BeamDataset, BeamDataset, BeamDataset]:
    """(train, val, test) with :data:`SPLIT` fractions."""
    train, val, test = ds.split(SPLIT, seed=seed)
    return train, val, test
