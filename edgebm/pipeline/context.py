"""The typed context one export run hands to every step, and the record of each model it built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..budget.graph import GraphStats
from ..data import BeamDataset
from ..models.estimator import BeamModel, ExportedGraph
from ..train import TrainConfig
from .candidates import LineageStep, ValScore
from .teacher import TeacherSource

__all__ = ["Progress", "ExportContext", "StoredModel", "noop_progress"]

Progress = Callable[[str, float, float, str], None]  # (stage, done, total, detail)


def noop_progress(stage: str, done: float, total: float, detail: str = "") -> None:
    return None


@dataclass
class ExportContext:
    """Everything the recipe's steps read, for all the profiles of one ``edgebm export`` run.

    ``train_cfg`` overrides the training settings of every neural family (tests use few epochs);
    ``teacher`` overrides every profile's ``[recipe] teacher`` (``--teacher RUN``); ``families`` narrows
    each profile's family list. ``work`` is a temporary folder the run owns.
    """

    data: BeamDataset
    train: BeamDataset
    val: BeamDataset
    test: BeamDataset
    calib: np.ndarray  # Set B samples from the training split for int8 calibration
    seed: int
    work: Path
    train_cfg: TrainConfig | None = None
    teacher: TeacherSource | None = None
    families: tuple[str, ...] | None = None
    latency_runs: int = 500
    progress: Progress = noop_progress
    #: scale-out seam (``edgebm export --ray``): an :class:`edgebm.parallel.Executor` the students are trained on as
    #: tasks (:mod:`edgebm.candidate_fanout`), and a replacement for :meth:`RecipeRun.prune_points` (``--search tune``:
    #: :class:`edgebm.search_tune.TuneSearch`); None: everything here, one after another
    executor: Any = None
    prune_search: Any = None


@dataclass
class StoredModel:
    """A trained (teacher, student, pruned or classical) model, its fp32 graph and how it was made.

    ``key`` identifies it in the run (shared between profiles); ``name`` is what tables show.
    ``quantised`` caches its reduced-precision graphs: (precision, max drop) -> (path, QuantResult, ValScore).
    """

    key: str
    name: str
    family: str
    model: BeamModel
    graph: ExportedGraph
    stats: GraphStats
    val: ValScore
    lineage: list[LineageStep]
    extra: dict[str, Any] = field(default_factory=dict)
    quantised: dict[tuple[str, float], tuple[Path, Any, ValScore]] = field(default_factory=dict)

    @property
    def mflops(self) -> float:
        return self.stats.flops / 1e6

    def step(self, step: str, source: str | None, settings: dict[str, Any]) -> LineageStep:
        """A lineage step whose result is this model."""
        return LineageStep(step, self.name, source, settings, self.val.top1, self.mflops, int(self.stats.params))
