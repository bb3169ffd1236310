"""Where the export recipe's teacher comes from: trained here, a run folder, or the package's pretrained weights.

``"pretrained"`` is a seam: :data:`PRETRAINED_PROVIDER` names a function
``load_pretrained_teacher(n_b, n_a, codebooks, bs_array) -> BeamModel`` (fitted, for the dataset's Set B / Set A
codebook arrays and BS array) that the module shipping the pretrained weights provides. Until it exists, or when
it raises (no weights, a codebook it cannot serve), the recipe trains the teacher here instead and says so
(``TeacherChoice.note``, the manifest's ``teacher.note``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import BeamDataset
from ..errors import ModelError

__all__ = ["PRETRAINED_PROVIDER", "TeacherSource", "TeacherChoice", "pretrained_teacher"]

#: ``module:function`` of the pretrained-teacher loader (filled by the module that ships the weights)
PRETRAINED_PROVIDER = "edgebm.models.pretrained:load_pretrained_teacher"


@dataclass(frozen=True)
class TeacherSource:
    """``kind``: ``train`` (train ``family`` here), ``run`` (load ``run_dir``), ``pretrained`` or ``none``."""

    kind: str = "train"
    family: str = "teacher"
    run_dir: Path | None = None
    finetune_epochs: int = 0  # "pretrained": fine-tuning epochs on the export data (part of the identity)

    def __post_init__(self) -> None:
        if self.kind not in ("train", "run", "pretrained", "none"):
            raise ValueError(f"teacher source must be train, run, pretrained or none, got {self.kind!r}")
        if self.kind == "run" and self.run_dir is None:
            raise ValueError("teacher source 'run' needs run_dir")

    @property
    def key(self) -> str:
        """Identity for sharing one teacher between profiles."""
        return {"train": f"train:{self.family}", "run": f"run:{self.run_dir}",
                "pretrained": f"pretrained:{self.family}:ft{self.finetune_epochs}", "none": "none"}[self.kind]

    def describe(self) -> str:
        return {"train": f"trained here ({self.family})", "run": f"run folder {self.run_dir}",
                "pretrained": "the package's pretrained teacher" + (f", up to {self.finetune_epochs} fine-tuning epochs here"
                                                                      if self.finetune_epochs else ""),
                "none": "no teacher"}[self.kind]


@dataclass
class TeacherChoice:
    """What the recipe ended up using: ``model`` (None for no teacher), the source it came from, and a note
    when that differs from what was asked (pretrained weights missing)."""

    model: Any
    source: TeacherSource
    note: str = ""


def pretrained_teacher(ds: BeamDataset) -> tuple[Any | None, str]:
    """(fitted teacher, "") from :data:`PRETRAINED_PROVIDER`, or (None, why not)."""
    module, _, func = PRETRAINED_PROVIDER.partition(":")
    try:
        loader = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        return None, f"no pretrained teacher in this edgebm build ({PRETRAINED_PROVIDER} is missing)"
    try:
        model = loader(ds.n_b, ds.n_a, ds.codebooks, tuple(ds.meta.get("bs_array", (8, 8))))
    except (ModelError, ValueError, FileNotFoundError, KeyError) as e:
        return None, f"pretrained teacher unusable for this data: {e}"
    if model is None:
        return None, "no pretrained teacher for this configuration"
    if (model.n_in, model.n_out) != (ds.n_b, ds.n_a):
        return None, f"pretrained teacher is {model.n_in}->{model.n_out} beams, data is {ds.n_b}->{ds.n_a}"
    from ..models.registry import UnknownFamilyError, get_family

    try:
        get_family(model.family)
    except UnknownFamilyError as e:
        return None, f"pretrained teacher of an unregistered family: {e}"
    return model, ""
