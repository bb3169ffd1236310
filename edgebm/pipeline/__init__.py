"""The jobs behind the CLI: ``export`` (the compression recipe per device profile) and ``train``.

- :mod:`.settings` — default scenario, the train/val/test split and the soft-label weight, declared once;
- :mod:`.teacher` — where the recipe's teacher comes from (train / run folder / pretrained seam);
- :mod:`.recipe` — teacher -> distil -> prune to the budget -> quantise -> gate, shared across profiles;
- :mod:`.gating` — the gate plus the recipe's parity and slower-than-parent lines;
- :mod:`.selection` — the choice on validation (paired test, objective);
- :mod:`.candidates` / :mod:`.context` — typed candidate facts, lineage steps, the run context;
- :mod:`.report` — manifest fields and budget.md; :mod:`.export_job` — the export job; :mod:`.train_job` — training.
"""

from .candidates import STEPS, Candidate, LineageStep, ValScore
from .export_job import ExportResult, NothingFitsError, export_for_profile, export_profiles, resolve_profiles
from .recipe import RecipeRun, check_families
from .selection import SelectionRule, mcnemar_p, select
from .settings import DEFAULT_SAMPLES, DEFAULT_SEED, SOFT_WEIGHT, SPLIT, default_dataset, split_dataset
from .teacher import PRETRAINED_PROVIDER, TeacherSource
from .train_job import TrainJobResult, train_run

__all__ = [
    "DEFAULT_SAMPLES", "DEFAULT_SEED", "SOFT_WEIGHT", "SPLIT", "default_dataset", "split_dataset",
    "STEPS", "Candidate", "LineageStep", "ValScore",
    "ExportResult", "NothingFitsError", "export_for_profile", "export_profiles", "resolve_profiles",
    "RecipeRun", "check_families", "SelectionRule", "mcnemar_p", "select",
    "PRETRAINED_PROVIDER", "TeacherSource", "TrainJobResult", "train_run",
]
