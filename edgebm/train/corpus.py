"""The randomised training corpus: procedurally drawn cities (never city0..city3), many Set A codebooks.

:func:`random_corpus` is one call of the simulator's random scenario (:class:`edgebm.sim.RandomScenario`):
``cities`` cities drawn from the dataset ``seed``, per-sample SNR uniform over ``snr_db``, a fixed Set A
codebook. :func:`codebook_mix` draws several such datasets, each from its own seed (so its own cities) and
its own Set A codebook (the 8x8 DFT, the x2 oversampled 256-beam DFT and random subsets of the x4 oversampled
DFT), which is what a codebook-aware model is pretrained on. :func:`default_export_corpus` is the corpus
``edgebm export`` trains on by default; its dataset metadata records the scenario and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..data import BeamDataset
from ..sim import RandomScenario, ScenarioConfig

__all__ = ["CorpusSpec", "random_corpus", "codebook_mix", "default_export_corpus", "DEFAULT_EXPORT_CORPUS", "MIX_CODEBOOKS"]


@dataclass(frozen=True)
class CorpusSpec:
    """One randomised dataset: ``n_samples`` drops over ``cities`` cities of dataset ``seed``; SNR range (dB); Set A
    codebook (``codebook_a``, ``set_a``, ``codebook_seed``); Set B size; optional random UE array / carrier."""

    n_samples: int
    seed: int
    cities: int = 1000
    snr_db: tuple[float, float] = (0.0, 30.0)
    set_b: int = 16
    set_a: int = 64
    codebook_a: str = "dft"
    codebook_seed: int = 0
    random_ue_array: bool = False
    random_carrier: bool = False

    def scenario(self) -> RandomScenario:
        base = replace(ScenarioConfig(), set_b=self.set_b, set_a=self.set_a, codebook_a=self.codebook_a,
                       codebook_seed=self.codebook_seed)
        return RandomScenario(cities=self.cities, snr_db=self.snr_db, random_ue_array=self.random_ue_array,
                              random_carrier=self.random_carrier, base=base)


#: what ``edgebm export`` trains on by default: 1000 random cities, 0-30 dB, 16 -> 64 DFT (seed 2026)
DEFAULT_EXPORT_CORPUS = CorpusSpec(n_samples=60_000, seed=2026, cities=1000)

#: Set A codebooks of the pretraining mix: (codebook_a, set_a); random ones get their own codebook_seed per part
MIX_CODEBOOKS: tuple[tuple[str, int], ...] = (("dft", 64), ("random", 64), ("dft", 256), ("random", 256))


def random_corpus(spec: CorpusSpec) -> BeamDataset:
    """Simulate ``spec`` into a BeamDataset (``meta["scenario"]`` records the random scenario and its seed)."""
    from ..data.simulated import generate_dataset

    return generate_dataset(spec.scenario(), spec.n_samples, seed=spec.seed)


def codebook_mix(n_samples: int, seed: int, cities: int = 1000, parts: int = 8, dft64_share: float = 0.5,
                 snr_db: tuple[float, float] = (0.0, 30.0)) -> list[BeamDataset]:
    """``parts`` datasets adding up to ``n_samples``: ``dft64_share`` of the samples with the 8x8 DFT Set A
    (the codebook a bundle ships with), the rest spread over the other :data:`MIX_CODEBOOKS`. Part ``i`` uses
    dataset seed ``seed + i`` (its own cities) and, when random, codebook seed ``seed + i``."""
    if parts < 2 or not 0.0 < dft64_share < 1.0:
        raise ValueError("codebook_mix needs parts >= 2 and 0 < dft64_share < 1")
    n_dft = max(1, parts // 2)
    specs = []
    for i in range(parts):
        if i < n_dft:
            cb, n = ("dft", 64), dft64_share * n_samples / n_dft
        else:
            cb, n = MIX_CODEBOOKS[1 + (i - n_dft) % (len(MIX_CODEBOOKS) - 1)], (1 - dft64_share) * n_samples / (parts - n_dft)
        specs.append(CorpusSpec(n_samples=max(1, int(round(n))), seed=seed + i, cities=cities, snr_db=snr_db,
                                codebook_a=cb[0], set_a=cb[1], codebook_seed=seed + i))
    return [random_corpus(s) for s in specs]


def default_export_corpus(n_samples: int | None = None, seed: int | None = None) -> BeamDataset:
    """The default randomised corpus for ``edgebm export`` (:data:`DEFAULT_EXPORT_CORPUS`, optionally resized /
    reseeded): none of city0..city3 in it; the manifest's dataset metadata names the scenario and seed."""
    spec = DEFAULT_EXPORT_CORPUS
    spec = replace(spec, n_samples=spec.n_samples if n_samples is None else int(n_samples), seed=spec.seed if seed is None else int(seed))
    return random_corpus(spec)
