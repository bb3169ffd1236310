"""The export job behind ``edgebm export``: data -> recipe (per profile) -> selection on validation -> bundle.

Stages read what the stage before produced (a BeamDataset, fitted models, ONNX files, BudgetReports), so each
stays replaceable; this module sequences them for one or several profiles (which share the teacher and the
students, see :mod:`.recipe`), reads the test split once for the chosen candidate and the teacher, and writes
each profile's bundle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..atomic import ScratchDir
from ..budget import BudgetReport
from ..data import BeamDataset, load_dataset
from ..deploy import write_bundle
from ..deploy.bundle import bundle_out_dir
from ..evaluate import dataset_beam_xy
from ..metrics import summarize
from ..profiles import DeviceProfile, list_profiles, load_profile
from ..runtime.functionality import build_functionality
from ..train import TrainConfig
from .candidates import Candidate
from .context import ExportContext, Progress, noop_progress
from .recipe import ProfileCandidates, RecipeRun, check_families
from .report import budget_markdown, manifest_fields
from .selection import SelectionRule, select
from .settings import (DEFAULT_SAMPLES, DEFAULT_SEED, NAMED_CITIES, NAMED_CITY_SEED, data_scenario, default_export_data,
                       export_corpus_spec, named_city_drops, split_dataset)
from .teacher import TeacherSource

__all__ = ["NothingFitsError", "ExportResult", "export_for_profile", "export_profiles", "resolve_profiles"]


class NothingFitsError(RuntimeError):
    """No candidate passed the budget gate and ``force`` was not given."""

    def __init__(self, profile: str, candidates: list[Candidate]) -> None:
        measured = [c for c in candidates if c.error is None and c.report is not None and c.val is not None]
        best = max(measured, key=lambda c: c.val.top1) if measured else None  # type: ignore[union-attr]
        why = best.why if best is not None else "no candidate could be built"
        super().__init__(f"no candidate fits profile '{profile}' (most accurate: {best.name if best else '-'}: {why})")
        self.profile = profile
        self.candidates = candidates
        self.report = best.report if best is not None else None


@dataclass
class ExportResult:
    bundle_dir: Path | None
    report: BudgetReport
    metrics: dict[str, float]  # test split, chosen candidate (computed once)
    parity: dict[str, Any]
    manifest: dict[str, Any]
    model: Any = None  # the chosen fitted model (torch module for neural families)
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    teacher: dict[str, Any] | None = None


def resolve_profiles(spec: str | Sequence[str | DeviceProfile] | DeviceProfile) -> list[DeviceProfile]:
    """``"smartphone,iot"``, ``"all"``, a path, a list of names/paths/profiles -> loaded profiles (no duplicates)."""
    if isinstance(spec, DeviceProfile):
        return [spec]
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    if items == ["all"]:
        items = list_profiles()  # type: ignore[assignment]
    out: list[DeviceProfile] = []
    for it in items:
        p = it if isinstance(it, DeviceProfile) else load_profile(it)
        if p.name not in [q.name for q in out]:
            out.append(p)
    return out


def _load_data(data: str | Path | BeamDataset | None, n_samples: int, seed: int, progress: Progress) -> BeamDataset:
    progress("data", 0, 1, "loading" if data is not None else
             f"simulating {n_samples} UEs in {export_corpus_spec(n_samples, seed).cities} random cities")
    if isinstance(data, BeamDataset):
        ds = data
    elif data is not None:
        ds = load_dataset(data)
    else:
        ds = default_export_data(n_samples, seed)
    progress("data", 1, 1, f"{len(ds)} samples, {ds.n_b}->{ds.n_a} beams")
    return ds


def _named_drops(ds: BeamDataset, progress: Progress) -> tuple[dict[str, BeamDataset] | None, str]:
    """Fresh drops of city0..city3 when they share the training data's beams (Set B / Set A codebooks), else
    (None, why not). Information only: the export never chooses on them."""
    ref = named_city_drops(2)["city0"].codebooks  # two drops: just the codebooks the named cities are measured with
    for k in ("cb_a_weights", "cb_b_weights"):
        if k not in ds.codebooks or ds.codebooks[k].shape != ref[k].shape or not np.allclose(ds.codebooks[k], ref[k], atol=1e-5):
            return None, (f"the data's codebooks ({k}) differ from the simulator's default 16 -> 64 DFT ones the named cities "
                          "are measured with")
    progress("data", 0, 1, f"simulating fresh drops in each of {', '.join(NAMED_CITIES)}")
    drops = named_city_drops()
    progress("data", 1, 1, f"{len(ds)} samples, {ds.n_b}->{ds.n_a} beams; named-city drops ready")
    return drops, ""


def export_profiles(
    profiles: str | Sequence[str | DeviceProfile] | DeviceProfile,
    data: str | Path | BeamDataset | None = None,
    out_root: str | Path | None = None,
    *,
    seed: int = DEFAULT_SEED,
    n_samples: int = DEFAULT_SAMPLES,
    train_cfg: TrainConfig | None = None,
    families: list[str] | None = None,
    teacher: TeacherSource | None = None,
    force: bool = False,
    latency_runs: int = 500,
    progress: Progress = noop_progress,
    out_dirs: dict[str, Path] | None = None,
    named_cities: bool = True,
    executor: Any = None,
    prune_search: Any = None,
) -> dict[str, ExportResult | NothingFitsError]:
    """Run the recipe for every profile, sharing the teacher and students, and write ``<out_root>/<profile>/``.

    ``data=None`` simulates the randomised corpus (:func:`.settings.default_export_data`: ``n_samples`` drops over
    1000 random cities, none of city0..city3, from dataset seed 2026 + ``seed``); ``seed`` is the split and
    training seed. ``named_cities``: also report each bundle's top-1 on fresh drops of city0..city3 (information
    only, never used to choose; skipped with a note when the data's beams differ from the named cities').
    ``out_dirs`` maps a profile name to its bundle folder (overrides ``out_root``; default root ``export``).
    ``executor`` / ``prune_search``: the scale-out seam of :class:`.context.ExportContext` (``edgebm export --ray``,
    ``--search tune``); the same seeds give the same candidates with or without an executor.
    Returns, per profile, the :class:`ExportResult` or the :class:`NothingFitsError` that stopped it (nothing
    written for that profile unless ``force``; the other profiles are still exported).
    """
    profs = resolve_profiles(profiles)
    for p in profs:
        check_families(p, families)  # a bad --families fails before any training
    root = Path(out_root) if out_root is not None else None
    # every output folder is checked (not a non-bundle folder, not '.', writable) before any training
    outs = {p.name: (out_dirs or {}).get(p.name) or bundle_out_dir(None if root is None else root / p.name, p.name) for p in profs}
    ds = _load_data(data, n_samples, seed, progress)
    train, val, test = split_dataset(ds, seed)
    if min(len(train), len(val), len(test)) < 2:
        raise ValueError(f"dataset too small to split into train/val/test: {len(ds)} samples")
    calib = train.rsrp_b[np.random.default_rng(seed).permutation(len(train))[:256]]
    drops, no_drops = _named_drops(ds, progress) if named_cities else (None, "not asked for")
    results: dict[str, ExportResult | NothingFitsError] = {}
    with ScratchDir("edgebm-export") as tmpd:  # /tmp/edgebm-export-<pid>-*: leftovers of killed runs are removed
        ctx = ExportContext(ds, train, val, test, calib, seed, Path(tmpd), train_cfg, teacher,
                            tuple(families) if families else None, latency_runs, progress, executor, prune_search)
        run = RecipeRun(ctx)
        run.named_drops, run.named_drops_note = drops, no_drops
        if executor is not None:  # edgebm export --ray: every profile's students at once, as executor tasks
            from ..candidate_fanout import fit_students

            fit_students(run, profs)
        for prof in profs:
            t0 = time.perf_counter()
            try:
                results[prof.name] = _export_one(run, prof, outs[prof.name], force, t0)
            except NothingFitsError as e:
                results[prof.name] = e
    return results


def export_for_profile(
    profile: str | DeviceProfile,
    data: str | Path | BeamDataset | None = None,
    out_dir: str | Path | None = None,
    **options: Any,
) -> ExportResult:
    """One profile: run the recipe, choose on validation and write the bundle to ``out_dir`` (default
    ``export/<profile>``). ``options``: the keyword arguments of :func:`export_profiles` (``seed``, ``n_samples``,
    ``train_cfg``, ``families``, ``teacher``, ``force``, ``latency_runs``, ``progress``, ``named_cities``). Raises
    :class:`NothingFitsError` (nothing written) when no candidate passes, unless ``force``; then the most accurate
    failing candidate (on validation) is written and its manifest says ``verdict: fail``."""
    prof = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    out = bundle_out_dir(out_dir, prof.name)  # refuses a non-bundle folder, '.', a read-only place: before any training
    r = export_profiles([prof], data, None, out_dirs={prof.name: out}, **options)[prof.name]
    if isinstance(r, NothingFitsError):
        raise r
    return r


def _export_one(run: RecipeRun, prof: DeviceProfile, out: Path, force: bool, t0: float) -> ExportResult:
    ctx = run.ctx
    pc = run.candidates(prof)
    rule = SelectionRule.from_profile(prof)
    ctx.progress("select", 0, 1, prof.name)
    chosen = select(pc.candidates, rule)
    if chosen is None:
        measured = [c for c in pc.candidates if c.error is None and c.report is not None and c.val is not None]
        if not force or not measured:
            raise NothingFitsError(prof.name, pc.candidates)
        chosen = max(measured, key=lambda c: c.val.top1)  # type: ignore[union-attr]
        chosen.lost = "chosen"
    ctx.progress("select", 1, 1, chosen.name)
    return _write(run, pc, chosen, rule, out, t0)


def _teacher_block(run: RecipeRun, pc: ProfileCandidates) -> dict[str, Any] | None:
    t = pc.teacher
    if t is None:
        return None
    test = run.ctx.test
    s = run.test_scores(t.graph.path, t.graph)
    return {"family": t.family, "source": pc.teacher_choice.source.describe(), "note": pc.teacher_choice.note,
            "mflops": t.mflops, "params": int(t.stats.params), "top1_val": t.val.top1,
            "top1_test": float(np.mean(s.argmax(1) == test.best_a))}


def _write(run: RecipeRun, pc: ProfileCandidates, chosen: Candidate, rule: SelectionRule, out: Path, t0: float) -> ExportResult:
    ctx, prof = run.ctx, pc.profile
    sm = pc.models[chosen.model_key]
    g = chosen.graph
    assert g is not None
    # the test split, read once: the chosen candidate and the teacher
    metrics = summarize(run.test_scores(g.path, g), ctx.test.rsrp_a, ctx.test.noise_dbm, dataset_beam_xy(ctx.test))
    teacher = _teacher_block(run, pc)
    split = {"train": len(ctx.train), "val": len(ctx.val), "test": len(ctx.test), "seed": ctx.seed}
    manifest = manifest_fields(prof, ctx.data, chosen, sm.model, pc.candidates, split, teacher, rule, metrics, pc.search_log)
    manifest["dataset"]["scenario"] = data_scenario(ctx.data)
    manifest["named_cities"] = _named_block(run, pc, g)
    manifest["functionality"] = build_functionality(ctx.data.meta, ctx.data.codebooks, getattr(ctx.data, "snr_db", None),
                                                    codebook_agnostic=bool(g.manifest_fields.get("aps_output")))  # issue 16
    writers: dict[str, Callable[[Path], Any]] = {
        "model.onnx": lambda p: p.write_bytes(g.path.read_bytes()),
        "codebook.npz": lambda p: _write_npz(p, ctx.data.codebooks),
    }
    if g.head is not None:
        w, b = g.head
        writers["head.npz"] = lambda p: _write_npz(p, {"W": w, "b": b})
    targets = run.targets_for(prof, chosen, sm)  # per-device-class artifacts: model_fixed.onnx, model.ort, c/, model.plan
    if targets is not None:
        from ..deploy.targets import target_writers

        writers.update(target_writers(targets))
        manifest["targets"] = targets.manifest
        if targets.tensorrt is not None:
            manifest["tensorrt"] = targets.tensorrt
    manifest["export_seconds"] = round(time.perf_counter() - t0, 2)
    writers["budget.md"] = lambda p: p.write_text(budget_markdown(prof, chosen, pc.candidates, manifest), encoding="utf-8")
    ctx.progress("bundle", 0, 1, str(out))
    bundle = write_bundle(out, writers, manifest)
    ctx.progress("bundle", 1, 1, str(out))
    from ..models.estimator import TorchBeamModel
    from ..runtime import read_manifest

    mod = sm.model.module if isinstance(sm.model, TorchBeamModel) else sm.model
    return ExportResult(bundle, chosen.report, metrics, chosen.parity, read_manifest(bundle), mod,  # type: ignore[arg-type]
                        pc.candidates, chosen, teacher)


def _named_block(run: RecipeRun, pc: ProfileCandidates, g: Any) -> dict[str, Any]:
    """Top-1 / top-3 of the shipped graph (and top-1 of the teacher) on fresh drops of each named city: the honest
    unseen-cities figure when the training data holds none of them. Information only, computed after selection."""
    drops = run.named_drops
    if not drops:
        return {"computed": False, "why": run.named_drops_note or "no named-city drops"}
    scn = data_scenario(run.ctx.data)
    t = pc.teacher
    cities: dict[str, Any] = {}
    for name, d in drops.items():
        s = run.scores(g.path, g, d.rsrp_b)
        order = np.argsort(-s, axis=1)[:, :3]
        row = {"top1": float(np.mean(order[:, 0] == d.best_a)), "top3": float(np.mean((order == d.best_a[:, None]).any(1))),
               "seen_in_training": scn["kind"] == "city" and scn["cities"] == name}
        if t is not None:
            row["teacher_top1"] = float(np.mean(run.scores(t.graph.path, t.graph, d.rsrp_b).argmax(1) == d.best_a))
        cities[name] = row
    return {"computed": True, "note": "information only: fresh drops of the named cities, never used to choose",
            "n_per_city": len(next(iter(drops.values()))), "seed": f"{NAMED_CITY_SEED} + city index", "snr_db": 20.0,
            "mean_top1": float(np.mean([c["top1"] for c in cities.values()])), "cities": cities}


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Deterministic ``.npz`` (fixed zip timestamps): the same seed gives the same ``head.npz`` / ``codebook.npz`` bytes."""
    from ..data.npz import write_npz

    with open(path, "wb") as f:
        write_npz(f, {k: np.asarray(v) for k, v in arrays.items()})
