"""Settings every job shares, declared once: the default export data, the train/val/test split, the soft-label weight,
and the named cities whose fresh drops the export reports."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..data import BeamDataset
from ..data.dataset import DEFAULT_SPLIT
from ..train.corpus import DEFAULT_EXPORT_CORPUS, CorpusSpec

__all__ = [
    "DEFAULT_SAMPLES", "DEFAULT_SEED", "SPLIT", "SOFT_WEIGHT", "NAMED_CITIES", "NAMED_CITY_SAMPLES", "NAMED_CITY_SEED",
    "default_dataset", "export_corpus_spec", "default_export_data", "named_city_drops", "data_scenario", "split_dataset",
]

#: drops simulated by ``edgebm export`` when no dataset is given (the randomised corpus, 1000 cities)
DEFAULT_SAMPLES = 40_000
#: split (and training) seed; the default export data is drawn from ``DEFAULT_EXPORT_CORPUS.seed + seed``
DEFAULT_SEED = 0
#: train / validation / test fractions used by train, export and evaluate (the same seed gives the same split)
SPLIT = DEFAULT_SPLIT
#: weight lambda of the seed-003 beam-power soft labels in every training job of the pipeline
SOFT_WEIGHT = 0.2
#: the named cities the export reports top-1 on (fresh drops, information only: never used to choose)
NAMED_CITIES = ("city0", "city1", "city2", "city3")
#: drops per named city, at the simulator's default 20 dB
NAMED_CITY_SAMPLES = 2000
#: drop seed of named city k: NAMED_CITY_SEED + k (disjoint from the seeds the benches and tests draw city drops with)
NAMED_CITY_SEED = 7100


def default_dataset(n_samples: int, seed: int = DEFAULT_SEED) -> BeamDataset:
    """One named city's scenario: city0, 28 GHz, 8x8 BS UPA, 1x1 UE, Set B 16 -> Set A 64, 20 dB (benches and
    examples that want city0 data; ``edgebm export`` trains on :func:`default_export_data` instead)."""
    from ..data.simulated import generate_dataset
    from ..sim import ScenarioConfig

    return generate_dataset(ScenarioConfig(), n_samples=n_samples, seed=seed)


def export_corpus_spec(n_samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> CorpusSpec:
    """The randomised scenario ``edgebm export`` simulates without ``--data``: :data:`DEFAULT_EXPORT_CORPUS` (1000
    procedurally drawn cities, none of city0..city3, SNR 0-30 dB, 16 -> 64 DFT) with ``n_samples`` drops from
    dataset seed ``DEFAULT_EXPORT_CORPUS.seed + seed`` (so seed 0 is the documented corpus, whose cities are
    disjoint from the pretrained weights' corpus)."""
    return replace(DEFAULT_EXPORT_CORPUS, n_samples=int(n_samples), seed=DEFAULT_EXPORT_CORPUS.seed + int(seed))


def default_export_data(n_samples: int = DEFAULT_SAMPLES, seed: int = DEFAULT_SEED) -> BeamDataset:
    """Simulate :func:`export_corpus_spec` (``meta["scenario"]`` records the random scenario and its seed)."""
    from ..train.corpus import random_corpus

    return random_corpus(export_corpus_spec(n_samples, seed))


def named_city_drops(n_samples: int | None = None) -> dict[str, BeamDataset]:
    """Fresh drops of every named city at the simulator's defaults (28 GHz, 8x8 DFT Set A of 64, 16 wide beams,
    20 dB), city k from seed :data:`NAMED_CITY_SEED` + k; ``n_samples`` per city (default
    :data:`NAMED_CITY_SAMPLES`)."""
    from ..data.simulated import generate_dataset
    from ..sim import ScenarioConfig

    n = NAMED_CITY_SAMPLES if n_samples is None else int(n_samples)
    return {c: generate_dataset(ScenarioConfig(city=c), n_samples=n, seed=NAMED_CITY_SEED + k) for k, c in enumerate(NAMED_CITIES)}


def data_scenario(ds: BeamDataset) -> dict[str, Any]:
    """The training data's scenario in brief: ``kind`` (``random``: procedurally drawn cities; ``city``: one named
    city; ``imported`` otherwise), ``cities`` (a count, or the city's name), the dataset ``seed``, ``n_samples``."""
    scn = ds.meta.get("scenario") if isinstance(ds.meta.get("scenario"), dict) else {}
    if scn.get("kind") == "random":
        kind, cities = "random", scn.get("cities")
    elif "city" in scn:
        kind, cities = "city", scn.get("city")
    else:
        kind, cities = "imported", None
    return {"kind": kind, "cities": cities, "seed": ds.meta.get("seed"), "n_samples": len(ds),
            "source": ds.meta.get("source", "unknown")}


def split_dataset(ds: BeamDataset, seed: int = DEFAULT_SEED) -> tuple[BeamDataset, BeamDataset, BeamDataset]:
    """(train, val, test) with :data:`SPLIT` fractions."""
    train, val, test = ds.split(SPLIT, seed=seed)
    return train, val, test
