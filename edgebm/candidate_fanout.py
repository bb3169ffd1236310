"""The export's candidate training as executor tasks (``edgebm export --ray [local|ADDRESS]``).

The students of an export (every family each profile allows, distilled from that profile's teacher, or trained on
hard labels for classical families) do not depend on each other, and profiles asking for the same student share
it. :func:`fit_students` builds each profile's teacher here (profiles share it), then fits every student the
profiles need — each one once — as one task per student on the run's executor (one CPU each: training runs one
torch thread, :attr:`edgebm.train.TrainConfig.threads`; edgebm trains on CPUs, so no task asks for a GPU). Only
the fit runs remotely: the fitted models come back and :meth:`RecipeRun.student` exports, scores and gates them
here exactly as when it fits them itself, so a run with an executor builds the same candidates, with the same
validation scores, as the serial run of the same seeds (training is seeded and single-threaded in both).

A student whose fit raises comes back as the exception, which :meth:`RecipeRun.student` raises where the serial
run would have: a family that cannot train is a rejected candidate either way.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .data import BeamDataset
from .models.registry import get_family
from .profiles import DeviceProfile
from .train import TrainConfig

if TYPE_CHECKING:
    from .pipeline.recipe import RecipeRun

__all__ = ["StudentJob", "fit_students", "student_jobs"]

#: (key in the run, family, n_b, n_a, training settings, constructor parameters, fit keyword arguments without the
#: teacher's logits, key of the teacher whose logits it distils or None)
StudentJob = tuple[str, str, int, int, TrainConfig, dict[str, Any], dict[str, Any], "str | None"]


def student_jobs(run: "RecipeRun", profiles: Sequence[DeviceProfile]) -> list[StudentJob]:
    """What the recipe would fit for ``profiles``, one job per distinct student not yet built (builds each profile's
    teacher here when the run has not: the students need its logits)."""
    from .pipeline.recipe import check_families

    ctx, jobs, seen = run.ctx, [], set(run.models) | set(run.prefit)
    for prof in profiles:
        families = check_families(prof, ctx.families)
        choice, teacher = run.teacher(prof)
        for fam in families:
            if teacher is not None and fam == teacher.family and choice.source.kind == "train":
                continue  # the teacher trained here is that family's candidate (RecipeRun.candidates)
            spec = get_family(fam)
            kw, step, settings = run._fit_kw(prof, teacher, spec)
            key = run.student_key(fam, teacher, step, settings)
            if key in seen:
                continue
            seen.add(key)
            fit_kw = {k: v for k, v in kw.items() if k != "teacher_logits"}
            jobs.append((key, fam, ctx.data.n_b, ctx.data.n_a, run._cfg(spec.export_epochs), dict(spec.export_params), fit_kw,
                         teacher.key if "teacher_logits" in kw and teacher is not None else None))
    return jobs


def _fit(train: BeamDataset, val: BeamDataset, logits: dict[str, np.ndarray], job: StudentJob) -> Any:
    """Fit one student (runs in a task); returns the fitted model, or the exception its fit raised."""
    from .models.estimator import make_model
    from .parallel import reading_object_store

    _, family, n_b, n_a, cfg, params, kw, teacher_key = job
    try:
        model = make_model(family, n_b, n_a, cfg, **params)
        with reading_object_store():
            model.fit(train, val, **kw, **({"teacher_logits": logits[teacher_key]} if teacher_key is not None else {}))
        return model
    except Exception as e:  # noqa: BLE001 - raised by RecipeRun.student where the serial run raises it
        return e


def fit_students(run: "RecipeRun", profiles: Sequence[DeviceProfile]) -> int:
    """Fit the students of ``profiles`` as tasks on ``run.ctx.executor`` and leave them in ``run.prefit`` for
    :meth:`RecipeRun.student`. Returns how many tasks ran (0 without an executor, or when nothing is left to fit)."""
    from .parallel import Resources

    ctx = run.ctx
    if ctx.executor is None:
        return 0
    jobs = student_jobs(run, profiles)
    if not jobs:
        return 0
    # the teachers' logits on the training split travel once (not once per student)
    logits = {t: run._logits(run.models[t]) for t in {j[7] for j in jobs} - {None}}
    ctx.progress("distil", 0, len(jobs), f"{len(jobs)} students as tasks on {ctx.executor.describe()}")
    fit = partial(_fit, ctx.train, ctx.val, logits)
    threads = max(j[4].threads for j in jobs)
    for done, (job, model) in enumerate(zip(jobs, ctx.executor.imap(fit, jobs, Resources(cpus=threads))), 1):
        run.prefit[job[0]] = model
        ctx.progress("distil", done, len(jobs), f"{job[1]}: " + ("fitted" if not isinstance(model, Exception) else "failed"))
    return len(jobs)
