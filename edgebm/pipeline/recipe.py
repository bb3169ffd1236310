"""The export recipe: teacher -> distil -> prune to the budget -> quantise -> export -> gate, per profile.

:class:`RecipeRun` holds what one ``edgebm export`` run has built so far, so several profiles share the
teacher, the distilled students, the pruned structures and the quantised graphs (each is made once, keyed by
what determines it). For a profile (:meth:`RecipeRun.candidates`):

1. **teach** — the teacher from the profile's ``[recipe] teacher`` (or ``--teacher RUN``): trained here,
   loaded from a run folder, the package's pretrained one (falls back to training here, with a note), or none.
2. **distil** — every neural family the profile allows is trained on the seed-003 beam-power soft labels plus
   the teacher's logits (Hinton KD, ``distil_weight`` x T^2 KL at ``distil_temperature``); classical families
   are trained on hard labels (step ``train``).
3. **prune** — each prunable student is pruned structurally (torch-pruning, L2 magnitude, head kept) at the
   smallest ratio whose structure passes the profile's gate (bisection on the ratio; the gate on the exported
   structure is the constraint; model size judged at the cheapest allowed precision, the on-device head against
   ``max_trainable_params``), then at up to ``prune_points`` cheaper ratios (each halves the remaining width),
   every point fine-tuned with the same distillation loss. The cheaper points stop at the first one that is no
   longer tied with the unpruned student on validation, then :data:`REFINE_STEPS` fine-tuned bisection steps
   between it and the last tied one find the cheapest tied ratio; a point whose structure already costs more than
   a tied candidate found so far is not fine-tuned (it could not win); the search log says which.
4. **quantise** — every neural fp32 graph to each precision the profile allows (static int8 QDQ with the
   accuracy-aware exclusion, fp16), the on-device head kept fp32.
5. **export / gate** — every variant is gated against the profile, with the parity and slower-than-parent lines;
   a variant the gate passes then gets its per-device-class artifacts built and judged
   (:func:`edgebm.deploy.targets.check_targets`: fixed-shape graph and accelerator coverage, ORT format, C for
   microcontrollers, TensorRT), whose lines join its report (a failing variant loses anyway: building C or ORT
   artifacts for it would only cost time).

Selection (:mod:`.selection`) then picks on validation; the test split is read once, for the chosen
candidate and the teacher, by the export job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..budget import BudgetReport, analyze_onnx, run_gate
from ..runtime.session import ort_session
from ..deploy.onnx_export import INPUT_NAME
from ..models.estimator import BeamModel, ExportedGraph, TorchBeamModel, load_model, make_model
from ..models.registry import get_family
from ..profiles import DeviceProfile
from ..train import TrainConfig
from .candidates import Candidate, LineageStep, ValScore
from .context import ExportContext, StoredModel
from .prune_search import R_MAX, R_TOL, REFINE_STEPS, bisect_fit, head_input_cap, search_cheaper  # noqa: F401 (re-exported)
from .gating import SLOWER_MARGIN, c_slower_line, gate_candidate, head_line, paired_latency_ratio, parity_line, slower_line
from .selection import SelectionRule, mcnemar_p, objective_cost
from .settings import SOFT_WEIGHT
from .teacher import TeacherChoice, TeacherSource, pretrained_teacher

__all__ = ["RecipeRun", "ProfileCandidates", "R_MAX", "check_families"]

#: learning rate of the pretrained teacher's fine-tuning on the export data (measured: 20 epochs at 1e-3 take the shipped
#: angular teacher from 0.84 to 0.94 validation top-1 on the default city0 scenario; 5 epochs at 5e-4 reached 0.93)
TEACHER_FINETUNE_LR = 1e-3
#: the fine-tuning stops after this many epochs without a better validation loss (measured: on the randomised export
#: corpus, in-distribution for the pretrained weights, 20 epochs took 4.8 min and left validation top-1 at 0.797 from
#: 0.800 zero-shot; the weights are kept only when fine-tuning raises validation top-1)
TEACHER_FINETUNE_PATIENCE = 3
_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def check_families(prof: DeviceProfile, families: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The families ``edgebm export`` trains for ``prof`` (``families`` narrows the profile's list)."""
    allowed = list(prof.models.families)
    if families:
        bad = [f for f in families if f not in allowed]
        if bad:
            raise ValueError(f"families {bad} are not allowed by profile '{prof.name}' (allowed: {', '.join(allowed)})")
        allowed = [f for f in allowed if f in families]
    out = tuple(f for f in allowed if get_family(f).exportable)
    if not out:
        raise ValueError(f"profile '{prof.name}' allows no exportable family (BM-Case1 families: "
                         f"{', '.join(f for f in prof.models.families if get_family(f).exportable) or 'none'})")
    return out


@dataclass
class ProfileCandidates:
    """Everything the recipe built and measured for one profile."""

    profile: DeviceProfile
    teacher: StoredModel | None
    teacher_choice: TeacherChoice
    candidates: list[Candidate]
    models: dict[str, StoredModel]  # candidate's model_key -> model
    search_log: list[dict[str, Any]] = field(default_factory=list)


class RecipeRun:
    """The shared state of one export run over one or more profiles (see the module doc)."""

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx
        self.models: dict[str, StoredModel] = {}
        self.teachers: dict[str, tuple[TeacherChoice, StoredModel | None]] = {}
        self._structures: dict[tuple[str, float], tuple[Any, Path]] = {}
        self._teacher_logits: dict[str, np.ndarray] = {}
        #: students fitted as executor tasks (edgebm.candidate_fanout): key -> fitted model, or the exception it raised
        self.prefit: dict[str, Any] = {}
        #: fresh drops of the named cities (set by the export job; reported per bundle, never used to choose)
        self.named_drops: dict[str, Any] | None = None
        self.named_drops_note = ""

    # -- shared helpers ----------------------------------------------------------------------------
    def _cfg(self, epochs: int, **kw: Any) -> TrainConfig:
        """The training settings of a step: ``ctx.train_cfg`` when given (tests), else ``epochs`` with the pipeline's
        soft-label weight (and ``kw`` overrides, e.g. a fine-tuning learning rate)."""
        c = self.ctx.train_cfg
        if c is not None:
            return c
        return TrainConfig(seed=self.ctx.seed, epochs=epochs, soft_weight=SOFT_WEIGHT, **kw)

    def _scores(self, path: Path, graph: ExportedGraph, x: np.ndarray) -> np.ndarray:
        sess = ort_session(path, 1)
        s = sess.run([graph.score_output], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.log(np.maximum(s, 1e-12)) if graph.score_kind == "probabilities" else s

    def scores(self, path: Path, graph: ExportedGraph, x: np.ndarray) -> np.ndarray:
        """Log-scores (logits, or log-probabilities) of the graph at ``path`` on Set B rows ``x`` (dBm)."""
        return self._scores(path, graph, x)

    def val_score(self, path: Path, graph: ExportedGraph) -> ValScore:
        return ValScore.from_scores(self._scores(path, graph, self.ctx.val.rsrp_b), self.ctx.val.best_a)

    def test_scores(self, path: Path, graph: ExportedGraph) -> np.ndarray:
        """Scores on the test split (the export job calls this once for the chosen candidate and the teacher)."""
        return self._scores(path, graph, self.ctx.test.rsrp_b)

    def _store(self, key: str, name: str, model: BeamModel, lineage_fn, extra: dict | None = None) -> StoredModel:
        """Export ``model``, score it on validation and record it; ``lineage_fn(stored) -> list[LineageStep]``."""
        ctx = self.ctx
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
        graph = model.to_onnx(ctx.work / f"{safe}-fp32.onnx", ctx.train.rsrp_b, ctx.val.rsrp_b)
        sm = StoredModel(key, name, model.family, model, graph, analyze_onnx(graph.path), self.val_score(graph.path, graph), [],
                         extra=dict(extra or {}))
        sm.lineage = lineage_fn(sm)
        self.models[key] = sm
        return sm

    # -- 1. teach ----------------------------------------------------------------------------------
    def teacher(self, prof: DeviceProfile) -> tuple[TeacherChoice, StoredModel | None]:
        """The teacher for ``prof`` (shared by every profile asking for the same source)."""
        r = prof.recipe
        src = self.ctx.teacher or TeacherSource(r.teacher, r.teacher_family,
                                                finetune_epochs=r.teacher_finetune_epochs if r.teacher == "pretrained" else 0)
        if src.key in self.teachers:
            return self.teachers[src.key]
        ctx, note = self.ctx, ""
        model: BeamModel | None = None
        if src.kind == "none":
            choice = TeacherChoice(None, src)
            self.teachers[src.key] = (choice, None)
            return choice, None
        if src.kind == "run":
            model = load_model(src.run_dir)  # type: ignore[arg-type]
            if (model.n_in, model.n_out) != (ctx.data.n_b, ctx.data.n_a):
                from ..errors import ModelError

                raise ModelError(f"--teacher {src.run_dir}: teacher is {model.n_in}->{model.n_out} beams, "
                                 f"data is {ctx.data.n_b}->{ctx.data.n_a}")
        elif src.kind == "pretrained":
            model, why = pretrained_teacher(ctx.data)
            if model is not None and r.teacher_finetune_epochs > 0:
                note = self._finetune_teacher(model, r.teacher_finetune_epochs)
            if model is None:
                note = f"{why}; trained the '{src.family}' teacher here instead"
                trained = self.teachers.get(TeacherSource("train", src.family).key)
                if trained is not None:  # another profile already trained this family here: share it
                    self.teachers[src.key] = (TeacherChoice(trained[0].model, trained[0].source, note), trained[1])
                    return self.teachers[src.key]
        used = src
        if model is None:  # "train", or "pretrained" falling back
            spec = get_family(src.family)
            ctx.progress("teacher", 0, 1, f"training {src.family}")
            model = make_model(src.family, ctx.data.n_b, ctx.data.n_a, self._cfg(spec.export_epochs), **dict(spec.export_params))
            model.fit(ctx.train, ctx.val, progress=lambda e, n, row: ctx.progress("teacher", e / n, 1, f"{src.family} epoch {e}/{n}"))
            if src.kind == "pretrained":
                used = TeacherSource("train", src.family)
        settings = {"source": used.describe(), **({"note": note} if note else {}),
                    **({"finetune_epochs": model.train_cfg.epochs, "finetune_lr": model.train_cfg.lr}
                       if used.kind == "pretrained" and r.teacher_finetune_epochs > 0 else {}),
                    **({"epochs": model.train_cfg.epochs, "params": dict(getattr(model, "params", {}))} if used.kind == "train" else {})}
        name = "teacher" if model.family == "teacher" else f"teacher-{model.family}"  # never the name of a student
        sm = self._store(f"teacher[{src.key}]", name, model,
                         lambda s: [s.step("teach", None if used.kind != "run" else str(used.run_dir), settings)],
                         extra={"source": used})
        ctx.progress("teacher", 1, 1, f"{name}: val top-1 {sm.val.top1:.3f}")
        choice = TeacherChoice(model, used, note)
        self.teachers[src.key] = (choice, sm)
        if used.key != src.key:  # a fallback trained here serves the profiles that ask for "train" too
            self.teachers.setdefault(used.key, (TeacherChoice(model, used), sm))
        return choice, sm

    def _finetune_teacher(self, model: BeamModel, epochs: int) -> str:
        """Fine-tune the pretrained ``model`` on the export's training split (at most ``epochs``, stopping after
        :data:`TEACHER_FINETUNE_PATIENCE` epochs without a better validation loss) and keep it only if it raised the
        validation top-1; otherwise put the pretrained weights back. Returns the note saying which."""
        ctx = self.ctx
        val_top1 = lambda: float(np.mean(model.decision_scores(ctx.val.rsrp_b).argmax(1) == ctx.val.best_a))  # noqa: E731
        zero_shot = val_top1()
        pretrained_state = copy.deepcopy(model.module.state_dict())  # type: ignore[attr-defined]
        model.train_cfg = self._cfg(epochs, lr=TEACHER_FINETUNE_LR, patience=TEACHER_FINETUNE_PATIENCE)
        ctx.progress("teacher", 0, 1, f"fine-tuning the pretrained {model.family} teacher")
        model.fit(ctx.train, ctx.val,
                  progress=lambda e, n, row: ctx.progress("teacher", e / n, 1, f"{model.family} fine-tune epoch {e}/{n}"))
        tuned = val_top1()
        ran = model.result.epochs_run if getattr(model, "result", None) is not None else model.train_cfg.epochs  # type: ignore[attr-defined]
        how = (f"fine-tuned on the export's training split (lr {model.train_cfg.lr:g}, {ran} of at most {model.train_cfg.epochs} "
               f"epochs, early stop after {model.train_cfg.patience} without a better validation loss)")
        if tuned > zero_shot:
            return f"pretrained weights {how}; validation top-1 {zero_shot:.4f} -> {tuned:.4f}"
        model.module.load_state_dict(pretrained_state)  # type: ignore[attr-defined]
        return (f"pretrained weights kept as shipped: {how}, validation top-1 {zero_shot:.4f} -> {tuned:.4f}, no better than "
                "the pretrained weights on this data")

    def _logits(self, teacher: StoredModel) -> np.ndarray:
        if teacher.key not in self._teacher_logits:
            self._teacher_logits[teacher.key] = teacher.model.decision_scores(self.ctx.train.rsrp_b)
        return self._teacher_logits[teacher.key]

    # -- 2. distil ---------------------------------------------------------------------------------
    def _fit_kw(self, prof: DeviceProfile, teacher: StoredModel | None, spec) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """fit() keyword arguments, lineage step name and its settings for a student of ``spec``."""
        r = prof.recipe
        if teacher is None or not spec.distillable or r.distil_weight <= 0:
            why = "no teacher" if teacher is None else ("classical family: hard labels" if not spec.distillable else "distil_weight = 0")
            return {}, "train", {"labels": "hard" if spec.kind == "sklearn" else f"hard + beam-power soft ({SOFT_WEIGHT})", "why": why}
        kw = {"teacher_logits": self._logits(teacher), "distil_weight": r.distil_weight, "distil_temperature": r.distil_temperature}
        return kw, "distil", {"distil_weight": r.distil_weight, "temperature": r.distil_temperature, "soft_labels": SOFT_WEIGHT}

    @staticmethod
    def student_key(family: str, teacher: StoredModel | None, step: str, settings: dict[str, Any]) -> str:
        """What identifies a student in the run (profiles asking for the same one share it); ``step`` / ``settings``
        as :meth:`_fit_kw` returns them."""
        return f"{family}[{teacher.key if teacher and step == 'distil' else '-'}|{settings.get('distil_weight')},{settings.get('temperature')}]"

    def student(self, prof: DeviceProfile, family: str, teacher: StoredModel | None) -> StoredModel:
        spec = get_family(family)
        kw, step, settings = self._fit_kw(prof, teacher, spec)
        key = self.student_key(family, teacher, step, settings)
        if key in self.models:
            return self.models[key]
        ctx = self.ctx
        cfg = self._cfg(spec.export_epochs)
        model = self.prefit.pop(key, None)  # fitted as an executor task (edgebm export --ray), else here
        if isinstance(model, Exception):
            raise model
        if model is None:
            ctx.progress("distil", 0, 1, f"{family} ({step})")
            model = make_model(family, ctx.data.n_b, ctx.data.n_a, cfg, **dict(spec.export_params))
            model.fit(ctx.train, ctx.val, progress=lambda e, n, row: ctx.progress("distil", e / n, 1, f"{family} epoch {e}/{n}"), **kw)
        settings = {**settings, **({"epochs": cfg.epochs} if spec.kind == "torch" else {}), "params": _jsonable(dict(spec.export_params))}
        base = list(teacher.lineage) if teacher is not None and step == "distil" else []
        sm = self._store(key, family, model, lambda s: base + [s.step(step, teacher.name if step == "distil" else None, settings)])
        ctx.progress("distil", 1, 1, f"{family}: val top-1 {sm.val.top1:.3f}")
        return sm

    # -- 3. prune ----------------------------------------------------------------------------------
    def head_cap(self, prof: DeviceProfile, student: StoredModel) -> int | None:
        """Most features the on-device head of a pruned ``student`` may read for ``prof`` (``[adaptation]
        max_trainable_params``), or None when the profile does not update on the device or the head already fits."""
        if not prof.adaptation.on_device_update:
            return None
        cap = head_input_cap(prof.adaptation.max_trainable_params, self.ctx.data.n_a)
        head = getattr(getattr(student.model, "module", None), "head", None)
        width = getattr(head, "in_features", None)
        return cap if cap is not None and width is not None and width > cap else None

    def _structure(self, student: StoredModel, ratio: float, head_cap: int | None = None) -> tuple[Any, Path]:
        """The student pruned at ``ratio`` (head input capped at ``head_cap``) without fine-tuning (its shape is
        all the budget depends on) and its ONNX."""
        k = (student.key, round(ratio, 6), head_cap)
        if k not in self._structures:
            from ..compress import prune_structured

            pr = prune_structured(student.model.module, self.ctx.train.rsrp_b[:256], ratio, check_onnx=False, max_head_in=head_cap)
            path = self.ctx.work / f"struct-{len(self._structures)}.onnx"
            _probe_onnx(pr.model, self.ctx.train.rsrp_b, path)
            self._structures[k] = (pr, path)
        return self._structures[k]

    def _structure_report(self, prof: DeviceProfile, student: StoredModel, ratio: float) -> tuple[bool, BudgetReport, str]:
        """(fits, quick gate report, why not) for the pruned structure: the constraint of the ratio search."""
        pr, path = self._structure(student, ratio, self.head_cap(prof, student))
        head = int(pr.model.head.weight.numel() + pr.model.head.bias.numel())
        rep = run_gate(path, prof, self.ctx.val.rsrp_b[:1], runs=60, warmup=10, precision="fp32", head_params=head)
        ok, why = _fits(prof, rep, head)
        return ok, rep, why

    def prune_points(self, prof: DeviceProfile, student: StoredModel, teacher: StoredModel | None,
                     tied_costs: list[tuple[float, float, str]], log: list[dict]) -> list[StoredModel]:
        """Fine-tuned pruned versions of ``student`` for ``prof`` (see the module doc and :mod:`.prune_search`,
        whose two callables this plugs the profile's gate and the fine-tuning into); appends to ``log``.

        ``tied_costs``: (cost, val top-1, name) of fp32 models found so far for this profile (cost of their
        structure at the profile's objective), used to skip points that could not win.
        """
        r = prof.recipe
        rule = SelectionRule.from_profile(prof)
        cap = self.head_cap(prof, student)
        entry: dict[str, Any] = {"student": student.name, "objective": rule.objective, "fit": None, "points": [],
                                 **({"head_input_cap": cap} if cap is not None else {})}
        log.append(entry)
        r_fit, trials = bisect_fit(lambda q: self._structure_report(prof, student, q)[::2])
        if r_fit is None:
            entry["fit"] = {"ratio": None, "trials": trials, "note": f"does not fit even pruned {R_MAX:.0%}: {trials[-1].get('why', '')}"}
            return []
        entry["fit"] = {"ratio": round(r_fit, 4), "trials": trials}
        out: list[StoredModel] = []

        def point(q: float, how: str) -> bool | None:
            """Fine-tune the point at ratio ``q``; True/False = tied with the unpruned student or not, None = skipped."""
            ok, rep, why = self._structure_report(prof, student, q)
            cost = objective_cost(Candidate("s", "", "fp32", "", report=rep), rule.objective, rule.pj_per_flop)
            rec: dict[str, Any] = {"ratio": round(q, 4), "search": how, "structure_cost": round(cost, 6)}
            entry["points"].append(rec)
            if not ok:
                rec["skipped"] = f"structure fails the gate: {why}"
                return None
            cheaper = [t for t in tied_costs if t[0] <= cost]
            if cheaper and q > r_fit:
                rec["skipped"] = f"structure costs {cost:.4g} >= {cheaper[0][0]:.4g} of {cheaper[0][2]}, already tied on val"
                return None
            sm = self.pruned(prof, student, teacher, q)
            rec.update(top1_val=round(sm.val.top1, 5), model=sm.name)
            out.append(sm)
            tied = q <= r_fit or _tied(rule, sm.val, student.val)
            rec["tied_with_unpruned"] = tied
            return tied

        # ratio 0 is the student itself, unless its head had to be narrowed to the on-device budget
        search_cheaper(point, r_fit, r.prune_points, include_fit=r_fit > 0 or cap is not None)
        return out

    def pruned(self, prof: DeviceProfile, student: StoredModel, teacher: StoredModel | None, ratio: float) -> StoredModel:
        """``student`` pruned at ``ratio`` (its head input capped to the profile's on-device budget, see
        :meth:`head_cap`) and fine-tuned with the student's own loss (shared across profiles)."""
        r = prof.recipe
        kw, step, _ = self._fit_kw(prof, teacher, get_family(student.family))
        cap = self.head_cap(prof, student)
        key = f"{student.key}>p{ratio:.4f}|{r.finetune_epochs}" + (f"|h{cap}" if cap is not None else "")
        if key in self.models:
            return self.models[key]
        from ..compress import prune_structured

        ctx = self.ctx
        base = self._cfg(student.model.train_cfg.epochs)
        ft = TrainConfig(**{**base.to_dict(), "epochs": max(1, min(r.finetune_epochs, base.epochs))})
        name = f"{student.name}-p{round(100 * ratio):d}" + (f"h{cap}" if cap is not None else "")
        ctx.progress("prune", 0, 1, f"{name}: fine-tuning {ft.epochs} epochs")

        def finetune(module) -> None:
            TorchBeamModel(student.family, ctx.data.n_b, ctx.data.n_a, train_cfg=ft, module=module).fit(ctx.train, ctx.val, **kw)

        pr = prune_structured(student.model.module, ctx.train.rsrp_b[:256], ratio, train_fn=finetune, check_onnx=False,
                              max_head_in=cap)
        model = TorchBeamModel(student.family, ctx.data.n_b, ctx.data.n_a, params=pr.config or dict(student.model.params),
                               train_cfg=ft, module=pr.model)
        model.result = None
        settings = {"ratio": round(ratio, 4), "importance": pr.importance, "finetune_epochs": ft.epochs,
                    "finetune": step, **({"head_input_cap": cap} if cap is not None else {}),
                    "widths": {k: v for k, v in pr.widths_after.items()}}
        sm = self._store(key, name, model, lambda s: list(student.lineage) + [s.step("prune", student.name, settings)],
                         extra={"prune": {"ratio": ratio, "top1_after_prune": pr.top1_after_prune}})
        ctx.progress("prune", 1, 1, f"{name}: val top-1 {sm.val.top1:.3f}")
        return sm

    # -- 4. quantise -------------------------------------------------------------------------------
    def quantised(self, prof: DeviceProfile, sm: StoredModel, precision: str) -> tuple[Path, Any, ValScore]:
        drop = prof.recipe.max_quant_drop_pp / 100
        k = (precision, round(drop, 6))
        if k not in sm.quantised:
            from ..compress import quantize_onnx

            ctx = self.ctx
            mode = "int8_static" if precision == "int8" else precision
            out = sm.graph.path.with_name(sm.graph.path.stem.replace("-fp32", "") + f"-{precision}-{len(sm.quantised)}.onnx")
            ctx.progress("quantise", 0, 1, f"{sm.name} {precision}")
            val = ctx.val

            def top1(path: str | Path) -> float:
                return float(np.mean(self._scores(Path(path), sm.graph, val.rsrp_b).argmax(1) == val.best_a))

            keep = (sm.graph.score_output,) if sm.graph.feature_output else ()  # the head stays fp32: it adapts on device
            q = quantize_onnx(sm.graph.path, out, mode, calib_x=ctx.calib, eval_fn=top1, max_drop=drop, keep_fp32_outputs=keep)
            sm.quantised[k] = (out, q, self.val_score(out, sm.graph))
            ctx.progress("quantise", 1, 1, f"{sm.name} {precision}: val top-1 {q.quant_top1:.3f}")
        return sm.quantised[k]

    # -- 5. candidates for one profile -------------------------------------------------------------
    def candidates(self, prof: DeviceProfile) -> ProfileCandidates:
        """Build (or reuse) every model the recipe makes for ``prof``, derive its variants and gate them."""
        ctx = self.ctx
        families = check_families(prof, ctx.families)
        choice, teacher = self.teacher(prof)
        stored: list[StoredModel] = []
        if teacher is not None and teacher.family in families:
            stored.append(teacher)
        log: list[dict] = []
        students: list[StoredModel] = []
        for fam in families:
            if teacher is not None and teacher in stored and fam == teacher.family and choice.source.kind == "train":
                continue  # the teacher trained here with this family's export settings is that family's candidate
            try:
                students.append(self.student(prof, fam, teacher))
            except Exception as e:  # a family that cannot train here is a rejected candidate, not a crash
                log.append({"student": fam, "error": f"training failed: {type(e).__name__}: {e}"})
        rule = SelectionRule.from_profile(prof)
        stored += students
        # cheapest structure first, so pruning the cheap models can bound the costly ones (the teacher, when it is
        # a candidate itself, is pruned like a student)
        quick = {s.key: self._quick_cost(prof, s, rule) for s in stored}
        if prof.recipe.prune:
            search = self.prune_points if ctx.prune_search is None else partial(ctx.prune_search, self)  # --search tune
            tied_costs: list[tuple[float, float, str]] = []
            for s in sorted(stored, key=lambda m: quick[m.key][0]):
                cost, ok = quick[s.key]
                if ok and _tied(rule, s.val, _best_val(stored)):
                    tied_costs.append((cost, s.val.top1, s.name))
                if not get_family(s.family).prunable:
                    continue
                for p in search(prof, s, teacher, sorted(tied_costs), log):
                    stored.append(p)
                    pcost, pok = self._quick_cost(prof, p, rule)
                    if pok and _tied(rule, p.val, _best_val(stored)):
                        tied_costs.append((pcost, p.val.top1, p.name))
        cands: list[Candidate] = []
        models: dict[str, StoredModel] = {}
        for sm in stored:
            models[sm.key] = sm
            cands += self._variants(prof, sm)
        for e in log:
            if "error" in e:
                cands.append(Candidate(f"{e['student']} fp32", e["student"], "fp32", "", error=e["error"]))
        return ProfileCandidates(prof, teacher, choice, cands, models, log)

    def _targets(self, prof: DeviceProfile, c: Candidate, sm: StoredModel) -> None:
        """Build and judge ``c``'s per-device-class artifacts when the gate passed it; their lines join its report."""
        if not c.passed or c.graph is None:
            return
        from ..deploy.targets import check_targets

        self.ctx.progress("gate", 0, 1, f"{c.name}: targets")
        c.targets = check_targets(c.graph.path, prof, _target_dir(self.ctx.work, prof, c), x=self.ctx.val.rsrp_b, model=sm.model,
                                  family=c.family, precision=c.precision, latency_runs=self.ctx.latency_runs)
        c.report.lines.extend(c.targets.lines)  # type: ignore[union-attr]

    def targets_for(self, prof: DeviceProfile, c: Candidate, sm: StoredModel) -> Any:
        """``c``'s target check, built now if the gate did not pass it (a forced bundle still carries its targets)."""
        if c.targets is None and c.graph is not None:
            from ..deploy.targets import check_targets

            c.targets = check_targets(c.graph.path, prof, _target_dir(self.ctx.work, prof, c), x=self.ctx.val.rsrp_b, model=sm.model,
                                      family=c.family, precision=c.precision, latency_runs=self.ctx.latency_runs)
        return c.targets

    def _quick_cost(self, prof: DeviceProfile, sm: StoredModel, rule: SelectionRule) -> tuple[float, bool]:
        rep = run_gate(sm.graph.path, prof, self.ctx.val.rsrp_b[:1], runs=60, warmup=10, precision="fp32",
                       head_params=sm.graph.head_params or None)
        ok = _fits(prof, rep, sm.graph.head_params)[0]
        return objective_cost(Candidate("q", "", "fp32", "", report=rep), rule.objective, rule.pj_per_flop), ok

    def _variants(self, prof: DeviceProfile, sm: StoredModel) -> list[Candidate]:
        """The fp32 candidate of ``sm`` and its reduced precisions, each gated for ``prof``."""
        ctx, r = self.ctx, prof.recipe
        threads = prof.compute.threads
        export = lambda c, path: LineageStep("export", c.name, c.name, {"file": "model.onnx", "format": "onnx",  # noqa: E731
                                                                         "backend": prof.compute.backend}, c.val.top1 if c.val else None,
                                             c.mflops, c.params)
        head = [h] if (h := head_line(prof, sm.graph.head_params)) is not None else []
        base = Candidate(f"{sm.name} fp32", sm.family, "fp32", sm.key, graph=sm.graph, val=sm.val,
                         parity={**sm.graph.parity, "vs": "source model", "split": "val"})
        ctx.progress("gate", 0, 1, base.name)
        base.report = gate_candidate(sm.graph.path, prof, ctx.val.rsrp_b, precision="fp32", thop=sm.graph.thop_flops,
                                     runs=ctx.latency_runs, head_params=sm.graph.head_params,
                                     extra=[parity_line(sm.graph.parity["argmax_agreement"], sm.graph.parity["n_samples"], r.min_parity,
                                                        "the source model"), *head])
        self._targets(prof, base, sm)
        base.lineage = list(sm.lineage) + [export(base, sm.graph.path)]
        out = [base]
        if sm.graph.feature_output is None:  # classical graphs: fp32 only (skl2onnx trees and kernels have no int8 path)
            return out
        for prec in [p for p in prof.precision.allowed if p != "fp32"]:
            c = Candidate(f"{sm.name} {prec}", sm.family, prec, sm.key, parent=base.name)
            try:
                path, q, val = self.quantised(prof, sm, prec)
            except Exception as e:
                c.error = f"{prec} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                out.append(c)
                continue
            c.graph, c.val = _with_path(sm.graph, path), val
            agree = float(np.mean(val.argmax == sm.val.argmax))
            diff = float(np.max(np.abs(val.scores.astype(np.float64) - sm.val.scores))) if len(val.scores) else 0.0
            c.parity = {"argmax_agreement": agree, "max_abs_diff": diff, "n_samples": int(len(val.argmax)),
                        "vs": f"{base.name} (ONNX)", "split": "val", "top1_drop_val": q.drop}
            c.quantization = {"mode": q.mode, "fp32_top1_val": q.fp32_top1, "quant_top1_val": q.quant_top1, "drop": q.drop,
                              "excluded_nodes": list(q.excluded_nodes), "kept_fp32": list(q.kept_fp32), "notes": list(q.notes)}
            on_c = prof.compute.backend == "c"  # the device runs compiled C: compare the C builds (after the targets), not ORT
            ratio = None if on_c else paired_latency_ratio(sm.graph.path, path, ctx.val.rsrp_b, threads)
            ctx.progress("gate", 0, 1, c.name)
            c.report = gate_candidate(path, prof, ctx.val.rsrp_b, precision=prec, thop=None, runs=ctx.latency_runs,
                                      head_params=sm.graph.head_params,
                                      extra=[parity_line(agree, len(val.argmax), r.min_parity, f"{base.name}"),
                                             *([] if ratio is None else [slower_line(ratio, base.name)]), *head])
            self._targets(prof, c, sm)
            if on_c:
                line, ratio = c_slower_line(c.targets, base.targets, base.name)
                c.report.lines.append(line)
            c.slower_than_parent = ratio if ratio is not None and ratio > 1.0 + SLOWER_MARGIN else None
            c.lineage = list(sm.lineage) + [
                LineageStep("quantise", c.name, base.name, {"mode": q.mode, "max_drop_pp": r.max_quant_drop_pp,
                                                             "excluded_nodes": list(q.excluded_nodes), "kept_fp32": list(q.kept_fp32)},
                            val.top1, c.mflops, c.params),
                export(c, path)]
            out.append(c)
        return out


def _target_dir(work: Path, prof: DeviceProfile, c: Candidate) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in c.name)
    return work / "targets" / prof.name / safe


def _probe_onnx(module: Any, x: np.ndarray, path: Path) -> Path:
    """ONNX of a pruned structure for the search's gate probe (cost lines only; never shipped).

    Uses torch's TorchScript-based exporter: ~0.2 s per graph against ~7 s for the torch.export-based one the
    shipped graphs use (measured on this project's shared 2-core machine), and the search exports up to ~10
    structures per student. BatchNorm stays a separate node here (counted as parameters: conservative).
    """
    import contextlib
    import io
    import warnings

    import torch

    from ..deploy.onnx_export import INPUT_NAME, OUTPUT_NAMES, LogitsAndFeatures, export_onnx

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(LogitsAndFeatures(module.eval()), (torch.from_numpy(np.ascontiguousarray(x[:2], np.float32)),), str(path),
                              dynamo=False, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes={INPUT_NAME: {0: "batch"}})
    except Exception:  # a torch without the TorchScript exporter: the slow path gives the same costs
        export_onnx(module, x, path)
    return path


def _with_path(g: ExportedGraph, path: Path) -> ExportedGraph:
    g2 = copy.copy(g)
    g2.path = path
    return g2


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _best_val(stored: list[StoredModel]) -> ValScore:
    return max((s.val for s in stored), key=lambda v: v.top1)


def _tied(rule: SelectionRule, a: ValScore, best: ValScore) -> bool:
    """``a`` tied with ``best`` on validation under ``rule`` (the selection's own test)."""
    drop = 100 * (best.top1 - a.top1)
    if drop <= 0:
        return True
    if drop > rule.tolerance_pp + 1e-9:
        return False
    return rule.tie_rule != "mcnemar" or mcnemar_p(a.hits, best.hits) >= rule.alpha


def _fits(prof: DeviceProfile, rep: BudgetReport, head_params: int) -> tuple[bool, str]:
    """Does a structure fit ``prof``? Every gate line but the precision one must pass (the on-device head's size
    included), with two search-time readings: the model size at the cheapest allowed precision (quantisation comes
    later), and the latency lines at the *typical* device latency, max(host p50 x slowdown, roofline) — a probe of
    a few dozen calls on a shared host has a p99 that measures the neighbours; the full gate judges the pooled p99
    of the candidate later. A profile that updates on the device also needs a head."""
    cheapest = min(_BYTES[p] for p in prof.precision.allowed)
    typical_ms = max(rep.host_latency.p50_ms * prof.compute.slowdown_vs_host, rep.roofline_ms)
    why = []
    for line in rep.lines:
        if line.status != "fail" or line.name == "precision":
            continue
        if line.name == "model_size" and line.value is not None and line.limit is not None:
            if line.value * cheapest / 4 <= line.limit:
                continue
        if line.name == "device_latency_p99" and typical_ms <= prof.timing.inference_budget_ms:
            continue
        if line.name == "beam_cycle_margin" and typical_ms < prof.timing.beam_cycle_ms:
            continue
        why.append(f"{line.name} {line.value:,.6g} {line.unit} (limit {line.limit:,.6g})".replace("  ", " ")
                   if line.value is not None and line.limit is not None else line.name)
    if prof.adaptation.on_device_update and head_params == 0:
        why.append("no trainable head for the on-device update")
    return (not why), "; ".join(why)
