"""The recipe's pruning-ratio search under Ray Tune with ASHA early stopping (``edgebm export --ray --search tune``).

By default the recipe searches each prunable student's pruning ratio by bisection on the budget and fine-tuned
halving points (:mod:`edgebm.pipeline.prune_search`). :class:`TuneSearch` replaces that search, student by student
(it has :meth:`RecipeRun.prune_points`' signature and is plugged in through ``ExportContext.prune_search``), with
a Ray Tune run over ``trials`` pruning ratios (:func:`ratio_grid`: from 0 to ``R_MAX``, kept widths evenly spaced
on a log scale, so ratio = how much of every prunable layer's width goes; a grid, so every run tries the same
configurations). One trial = one ratio, one CPU:

1. **constraint** — prune the student at the ratio (structure only, the on-device head capped as the recipe caps
   it) and gate the structure against the profile with the recipe's own search-time check (every gate line but
   precision; model size at the cheapest allowed precision; latency at the typical device latency; the on-device
   head). A structure that fails is **infeasible**: the trial reports ``score = NaN`` once, with the gate's
   reason, and ends without training (ASHA ignores NaN scores when it sets its cut-offs);
2. **objective** — otherwise it is fine-tuned with the student's own loss (distillation from the teacher) for up to
   ``[recipe] finetune_epochs``, exactly as :meth:`RecipeRun.pruned` fine-tunes, reporting after every epoch the
   validation top-1 of the weights training would keep (those of the best validation loss so far). ASHA
   (``grace_period`` 1 epoch, reduction factor 2, ``max_t`` = the fine-tuning epochs) stops trials that trail the
   others at the same epoch; a scheduler wrapper records which trials ASHA stopped.

Of the feasible trials that ran to their end (not stopped by ASHA), the most accurate ratio and the cheapest one
(structure cost at the profile's objective) within ``[recipe] tolerance_pp`` of it are fine-tuned again here by
:meth:`RecipeRun.pruned` — seeded and single-threaded, the same computation as the trial, so the candidate's
validation top-1 is the trial's — and become candidates, gated and selected by the recipe's own rule. The
trial table (trial id, config, kept widths, gate pass/fail and why, MFLOPs, params, structure cost, epochs run,
validation top-1, stopped by ASHA or not) is the student's entry in the search log (the manifest's
``recipe.prune_search``, ``"search": "ray_tune"``) and a table in budget.md (:func:`trials_markdown`). Which trials
ASHA stops depends on the order their reports arrive, so the table (and the ratios it keeps) can differ between
runs; the entry says so.

Ray is imported only when a search runs (the module itself imports no Ray: :func:`trials_markdown` serves
budget.md in every export).
"""

from __future__ import annotations

import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .errors import ConfigError
from .models.registry import get_family
from .parallel import RAY_INSTALL_HINT

if TYPE_CHECKING:
    from .data import BeamDataset
    from .pipeline.context import StoredModel
    from .pipeline.recipe import RecipeRun
    from .profiles import DeviceProfile
    from .train import TrainConfig

__all__ = ["TuneSearch", "ratio_grid", "check_tune", "trials_markdown", "DEFAULT_TRIALS", "GRACE_EPOCHS", "REDUCTION_FACTOR"]

#: pruning ratios a search tries per student (``--tune-trials``)
DEFAULT_TRIALS = 8
#: ASHA: epochs every feasible trial gets before it can be stopped
GRACE_EPOCHS = 1
#: ASHA: at each rung (1, 2, 4 ... epochs) a trial continues when it is in the top 1/2 of those that reached it
REDUCTION_FACTOR = 2


def ratio_grid(n: int, r_max: float | None = None) -> list[float]:
    """``n`` pruning ratios from 0 to ``r_max`` (default the recipe's ``R_MAX``) whose kept widths ``1 - ratio`` are
    evenly spaced on a log scale: each step keeps the same fraction of the width before it, so small structures,
    where tight budgets land, are tried as densely as large ones. Rounded to 4 decimals."""
    from .pipeline.prune_search import R_MAX

    r_max = R_MAX if r_max is None else r_max
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError("--tune-trials", f"{n!r} is invalid", "an integer >= 2 (pruning ratios tried per student)")
    keep = (1.0 - r_max) ** (np.arange(n) / (n - 1))
    return [round(float(1.0 - k), 4) for k in keep]


def check_tune() -> None:
    """:class:`ConfigError` naming ``--search`` when Ray Tune cannot be imported (it needs pandas and pyarrow besides
    Ray). Imports Ray: call it only when ``--ray`` was given."""
    try:
        from ray import tune  # noqa: F401
        from ray.tune.schedulers import ASHAScheduler  # noqa: F401
    except ImportError as e:
        raise ConfigError("--search", f"tune needs Ray Tune, which cannot be imported here ({e})", RAY_INSTALL_HINT) from None


@dataclass
class _Payload:
    """What every trial of one student's search reads (shipped once to the Ray object store)."""

    profile: "DeviceProfile"
    train: "BeamDataset"
    val: "BeamDataset"
    module: Any  # the student's trained torch module (pruned copies are made from it)
    family: str
    finetune: "TrainConfig"
    fit_kw: dict[str, Any]  # distillation settings and the teacher's logits on the training split, or {}
    head_cap: int | None
    objective: str
    pj_per_flop: float | None


def _structure(p: _Payload, ratio: float, work: Path) -> tuple[Any, dict[str, Any]]:
    """Prune ``p.module`` at ``ratio`` and judge the structure as the recipe's bisection does
    (:meth:`RecipeRun._structure_report`): returns (pruned module, the trial's gate columns)."""
    from .budget import analyze_onnx, run_gate
    from .compress import prune_structured
    from .pipeline.candidates import Candidate
    from .pipeline.recipe import _fits, _probe_onnx
    from .pipeline.selection import objective_cost

    pr = prune_structured(p.module, p.train.rsrp_b[:256], ratio, check_onnx=False, max_head_in=p.head_cap)
    path = _probe_onnx(pr.model, p.train.rsrp_b, work / "structure.onnx")
    head = int(pr.model.head.weight.numel() + pr.model.head.bias.numel())
    rep = run_gate(path, p.profile, p.val.rsrp_b[:1], runs=60, warmup=10, precision="fp32", head_params=head)
    ok, why = _fits(p.profile, rep, head)
    stats = analyze_onnx(path)
    cost = objective_cost(Candidate("s", "", "fp32", "", report=rep), p.objective, p.pj_per_flop)
    widths = {k: v[1] for k, v in pr.widths_after.items() if k != "head"}
    return pr.model, {"gate": "pass" if ok else "fail", "why": why, "mflops": stats.flops / 1e6, "params": int(stats.params),
                      "structure_cost": float(cost), "widths": widths}


def _trial(config: dict[str, Any], payload: _Payload) -> None:
    """One Tune trial (runs in a Ray worker): the constraint, then the fine-tuning with a report per epoch."""
    from ray import tune

    from .models.estimator import TorchBeamModel
    from .parallel import reading_object_store

    with reading_object_store(), tempfile.TemporaryDirectory(prefix="edgebm-tune-") as d:
        module, cols = _structure(payload, float(config["ratio"]), Path(d))
        if cols["gate"] == "fail":
            tune.report({**cols, "score": math.nan, "epochs": 0})
            return
        best = [math.inf, math.nan]  # (validation loss, top-1) of the weights training keeps (train.loop.EarlyStopping)

        def report(epoch: int, n: int, row: dict[str, float]) -> None:
            if row["val_loss"] < best[0] - 1e-6:
                best[:] = [row["val_loss"], row["val_top1"]]
            tune.report({**cols, "score": best[1], "top1_epoch": row["val_top1"], "epochs": epoch})

        model = TorchBeamModel(payload.family, payload.train.n_b, payload.train.n_a, train_cfg=payload.finetune, module=module)
        model.fit(payload.train, payload.val, progress=report, **payload.fit_kw)


@contextmanager
def _quiet_tune() -> Iterator[None]:
    """Tune without its console tables and TensorBoard hint (the trial table goes to the manifest and budget.md; its
    per-trial logs stay in the export's temporary folder), and without numpy's all-NaN warning when an ASHA rung
    holds only infeasible trials (their NaN scores are meant to be ignored). The variable is put back afterwards."""
    import os
    import warnings

    env = {"RAY_AIR_NEW_OUTPUT": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="All-NaN slice encountered", category=RuntimeWarning)
            yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _recording_asha(max_t: int, grace: int, rf: float) -> Any:
    """Ray Tune's ASHA scheduler, recording which trials it stopped before ``max_t`` (trial id -> epoch)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class RecordingASHA(ASHAScheduler):
        def __init__(self) -> None:
            super().__init__(time_attr="training_iteration", max_t=max_t, grace_period=grace, reduction_factor=rf)
            self.stopped: dict[str, int] = {}

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            action = super().on_trial_result(tune_controller, trial, result)
            it = int(result.get("training_iteration", 0))
            if action == TrialScheduler.STOP and it < max_t:
                self.stopped[trial.trial_id] = it
            return action

    return RecordingASHA()


@dataclass
class TuneSearch:
    """``ExportContext.prune_search`` for ``edgebm export --ray ... --search tune`` (module doc): called as
    ``search(run, prof, student, teacher, tied_costs, log)`` and returns the fine-tuned pruned models it keeps.
    Needs a Ray runtime (``executor``: the export's :class:`edgebm.parallel.RayExecutor`, whose runtime the trials
    run on)."""

    executor: Any
    trials: int = DEFAULT_TRIALS
    grace_epochs: int = GRACE_EPOCHS
    reduction_factor: float = REDUCTION_FACTOR

    def __post_init__(self) -> None:
        if getattr(self.executor, "name", None) != "ray":
            raise ConfigError("--search", "tune needs a Ray runtime", "add --ray (local, or a cluster's HOST:PORT)")
        ratio_grid(self.trials)  # a bad --tune-trials fails before any training
        check_tune()

    def __call__(self, run: "RecipeRun", prof: "DeviceProfile", student: "StoredModel", teacher: "StoredModel | None",
                 tied_costs: list[tuple[float, float, str]], log: list[dict]) -> list["StoredModel"]:
        from ray import tune

        from .pipeline.selection import OBJECTIVE_UNITS, SelectionRule
        from .train import TrainConfig

        ctx, r, rule = run.ctx, prof.recipe, SelectionRule.from_profile(prof)
        kw, _, _ = run._fit_kw(prof, teacher, get_family(student.family))
        base = run._cfg(student.model.train_cfg.epochs)  # the fine-tuning RecipeRun.pruned runs
        ft = TrainConfig(**{**base.to_dict(), "epochs": max(1, min(r.finetune_epochs, base.epochs))})
        cap = run.head_cap(prof, student)
        payload = _Payload(prof, ctx.train, ctx.val, student.model.module, student.family, ft, kw, cap, rule.objective,
                           rule.pj_per_flop)
        ratios = ratio_grid(self.trials)
        asha = _recording_asha(ft.epochs, self.grace_epochs, self.reduction_factor)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{prof.name}-{student.name}")
        ctx.progress("prune", 0, 1, f"{student.name}: Ray Tune, {len(ratios)} pruning ratios, ASHA")
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, payload=payload), {"cpu": ft.threads}),
            param_space={"ratio": tune.grid_search(ratios)},
            tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=asha),
            run_config=tune.RunConfig(name=f"prune-{safe}", storage_path=str(Path(ctx.work).resolve() / "tune"), verbose=0),
        )
        with _quiet_tune():
            grid = tuner.fit()
        rows = sorted((_row(res, asha.stopped, ft.epochs) for res in grid), key=lambda x: x["ratio"])
        finished = [x for x in rows if x["gate"] == "pass" and "error" not in x and not x["stopped_by_asha"]
                    and x["top1_val"] is not None]
        chosen: list[float] = []
        if finished:
            best = max(finished, key=lambda x: (x["top1_val"], -x["ratio"]))
            tied = [x for x in finished if 100 * (best["top1_val"] - x["top1_val"]) <= rule.tolerance_pp + 1e-9]
            cheapest = min(tied, key=lambda x: (x["structure_cost"], -x["ratio"]))
            # ratio 0 without a head cap is the unpruned student, a candidate already
            chosen = sorted({q for q in (best["ratio"], cheapest["ratio"]) if q > 0 or cap is not None})
        out, refits = [], []
        for q in chosen:
            sm = run.pruned(prof, student, teacher, q)
            trial = next(x for x in rows if x["ratio"] == q)
            refits.append({"ratio": q, "model": sm.name, "trial": trial["trial"], "top1_val_trial": trial["top1_val"],
                           "top1_val_candidate": round(sm.val.top1, 5)})
            out.append(sm)
        log.append({
            "student": student.name, "search": "ray_tune", "objective": "validation top-1 of the fine-tuned student, "
            "maximised subject to the gate", "space": {"ratio": ratios}, "finetune_epochs": ft.epochs,
            **({"head_input_cap": cap} if cap is not None else {}),
            "scheduler": {"name": "ASHA", "time_attr": "epochs", "max_t": ft.epochs, "grace_period": self.grace_epochs,
                          "reduction_factor": self.reduction_factor},
            "constraint": "the profile's gate on the pruned structure (the bisection's search-time check): a structure "
                          "that fails is infeasible (score NaN, not trained)",
            "cost_unit": OBJECTIVE_UNITS[rule.objective], "trials": rows, "chosen": chosen, "refit": refits,
            "note": "the chosen ratios are fine-tuned again here (seeded: the same computation as their trial); which "
                    "trials ASHA stops depends on the order their reports arrive, so this table can differ between runs"})
        ctx.progress("prune", 1, 1, f"{student.name}: Tune kept ratio(s) {', '.join(f'{q:.4f}' for q in chosen) or 'none'}")
        return out


def _row(res: Any, stopped: dict[str, int], max_epochs: int) -> dict[str, Any]:
    """One row of the trial table from a Ray Tune ``Result``."""
    m = res.metrics or {}
    trial_id = m.get("trial_id") or Path(str(res.path)).name
    score = m.get("score")
    row: dict[str, Any] = {
        "trial": trial_id, "ratio": float(res.config["ratio"]), "widths": m.get("widths"), "gate": m.get("gate", "-"),
        "why": m.get("why") or "", "mflops": m.get("mflops"), "params": m.get("params"), "structure_cost": m.get("structure_cost"),
        "epochs_run": int(m.get("epochs", 0)), "max_epochs": max_epochs,
        "top1_val": None if score is None or not math.isfinite(score) else round(float(score), 5),
        "stopped_by_asha": trial_id in stopped,
    }
    if res.error is not None:
        row["error"] = " ".join(str(res.error).split())[:300]
    return row


def trials_markdown(search_log: list[dict] | None) -> list[str]:
    """budget.md's section on the Ray Tune searches of an export, from a blank line on (nothing when the recipe's
    bisection searched)."""
    entries = [e for e in (search_log or []) if e.get("search") == "ray_tune"]
    if not entries:
        return []
    out = ["", "## Pruning-ratio search: Ray Tune with ASHA"]
    for e in entries:
        s = e["scheduler"]
        out += ["", f"Student `{e['student']}`: {len(e['trials'])} trials, objective {e['objective']}; constraint: "
                f"{e['constraint']}. ASHA on epochs (grace {s['grace_period']}, reduction factor {s['reduction_factor']}, "
                f"max {s['max_t']}). Kept for the recipe: {', '.join(f'{q:.4f}' for q in e['chosen']) or 'none'}.", "",
                f"| trial | ratio | kept widths | gate | MFLOPs | params | cost ({e['cost_unit']}) | epochs | top-1 val | "
                "stopped by ASHA | why |",
                "|---|---:|---|---|---:|---:|---:|---:|---:|---|---|"]
        for t in e["trials"]:
            w = ",".join(str(v) for v in (t.get("widths") or {}).values())
            num = lambda v, d: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
            out.append(f"| {t['trial']} | {t['ratio']:.4f} | {w or '-'} | {t['gate']} | {num(t['mflops'], 4)} | "
                       f"{'-' if t['params'] is None else format(t['params'], ',')} | {num(t['structure_cost'], 4)} | "
                       f"{t['epochs_run']}/{t['max_epochs']} | {num(t['top1_val'], 4)} | {'yes' if t['stopped_by_asha'] else 'no'} | "
                       f"{t.get('error') or t['why']} |")
    return out
