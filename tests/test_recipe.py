"""The export recipe: selection on validation, lineage, the [recipe] profile section, shared teacher/students."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edgebm.budget import BudgetLine, BudgetReport
from edgebm.budget.graph import GraphStats
from edgebm.budget.latency import LatencyStats
from edgebm.cli import main
from edgebm.data import save_dataset
from edgebm.pipeline import STEPS, Candidate, SelectionRule, ValScore, mcnemar_p, select
from edgebm.pipeline.selection import objective_cost
from edgebm.pipeline.gating import SLOWER_MARGIN, parity_line, slower_line
from edgebm.profiles import ProfileError, load_profile, parse_profile
from tests.conftest import lean_profile, make_toy_dataset


# -- selection: hand-made cases ------------------------------------------------------------------------
def test_mcnemar_exact_p_hand_computed():
    # 8 samples only a is right, 2 only b is right, 5 both right: discordant n = 10, k = 2 (the smaller side)
    # two-sided exact p = 2 * P(X <= 2 | Bin(10, 1/2)) = 2 * (1 + 10 + 45) / 1024 = 0.109375
    a = np.array([1] * 8 + [0] * 2 + [1] * 5, bool)
    b = np.array([0] * 8 + [1] * 2 + [1] * 5, bool)
    assert mcnemar_p(a, b) == pytest.approx(0.109375)
    assert mcnemar_p(a, a) == 1.0  # no discordant pair: no evidence of a difference
    # 20 vs 0 discordant: p = 2 / 2^20
    assert mcnemar_p(np.ones(20, bool), np.zeros(20, bool)) == pytest.approx(2 / 2**20)


def _cand(name, top1_hits, *, flops=1e6, kib=10.0, p99=1.0, passed=True, precision="fp32", parent=None, slower=None):
    hits = np.asarray(top1_hits, bool)
    stats = GraphStats(flops=int(flops), flops_by_op={}, params=1000, weight_bytes=int(kib * 1024), weight_bytes_by_dtype={},
                       peak_activation_bytes=0, file_bytes=0)
    lines = [BudgetLine("flops", flops / 1e6, 10.0, "MFLOPs", "pass" if passed else "fail")]
    rep = BudgetReport("p", lines, stats, LatencyStats.from_samples(np.full(10, p99), 1), p99, 0.0, None)
    val = ValScore(float(hits.mean()), float(hits.mean()), hits, np.where(hits, 0, 1), np.zeros((len(hits), 2), np.float32))
    return Candidate(name, "mlp", precision, name, report=rep, val=val, parent=parent, slower_than_parent=slower)


def test_selection_tied_then_cheapest_and_why_each_lost():
    n = 400
    best = np.ones(n, bool)
    best[:40] = False  # 0.900
    tied = best.copy()
    tied[40:42] = False  # 0.895: 2 discordant samples, p = 0.5, drop 0.5 pp
    worse = best.copy()
    worse[40:60] = False  # 0.850: 20 discordant, p ~ 1.9e-6
    cands = [
        _cand("big fp32", best, flops=5e6),
        _cand("small fp32", tied, flops=1e5),
        _cand("tiny fp32", worse, flops=1e4),  # cheapest, but not tied
        _cand("broken fp32", best, flops=1e3, passed=False),  # fails the gate
    ]
    rule = SelectionRule(objective="energy", pj_per_flop=5.0)
    chosen = select(cands, rule)
    assert chosen.name == "small fp32"
    assert chosen.cost == pytest.approx(1e5 * 5.0 * 1e-6)  # 0.5 uJ per inference
    why = {c.name: c.why for c in cands}
    assert why["small fp32"] == "chosen"
    assert "tied with the best" in why["big fp32"] and "costlier" in why["big fp32"]
    assert "-5.00 pp" in why["tiny fp32"] and "McNemar" in why["tiny fp32"]
    assert "flops" in why["broken fp32"]
    # tolerance rule: the 5 pp loser is still out (beyond 1 pp); with 6 pp tolerance it wins on cost
    assert select(cands, SelectionRule("energy", "tolerance", tolerance_pp=6.0, pj_per_flop=5.0)).name == "tiny fp32"


def test_quantised_slower_than_parent_loses_to_it():
    hits = np.ones(100, bool)
    fp32 = _cand("m fp32", hits, kib=40.0, p99=0.010)
    int8 = _cand("m int8", hits, kib=12.0, p99=0.013, precision="int8", parent="m fp32", slower=1.3)
    assert select([fp32, int8], SelectionRule(objective="size")).name == "m fp32"
    assert "slower than its fp32 parent" in int8.why
    assert select([fp32, int8], SelectionRule(objective="size", slower_quantised_loses=False)).name == "m int8"


def test_recipe_lines():
    assert parity_line(0.99, 100, 0.97, "x").status == "pass"
    assert parity_line(0.96, 100, 0.97, "x").status == "fail"
    assert slower_line(1.0 + SLOWER_MARGIN / 2, "p").status == "pass"
    assert slower_line(1.3, "p").status == "warn"


def test_microcontroller_candidates_compare_and_cost_the_compiled_c():
    """backend c: the slower-than-parent ratio comes from the C builds' host p50, and the selection's size / latency
    are the compiled C's flash and device latency (onnxruntime's figures do not describe what the device runs)."""
    from types import SimpleNamespace

    from edgebm.pipeline.gating import c_slower_line

    def targets(p50_ms):
        return SimpleNamespace(manifest={"c": {"build": {"host_latency": {"p50_ms": p50_ms}}}})

    line, ratio = c_slower_line(targets(0.0013), targets(0.0010), "m fp32")  # 1.3 us vs 1.0 us
    assert ratio == pytest.approx(1.3) and line.status == "warn" and "compiled C" in line.note
    line, ratio = c_slower_line(targets(0.0009), targets(0.0010), "m fp32")
    assert ratio == pytest.approx(0.9) and line.status == "pass"
    line, ratio = c_slower_line(targets(0.0009), SimpleNamespace(manifest={"c": {"build": None}}), "m fp32")
    assert ratio is None and line.status == "info" and "parent" in line.note
    hits = np.ones(100, bool)
    fp32 = _cand("m fp32", hits, kib=40.0, p99=0.25)
    int8 = _cand("m int8", hits, kib=12.0, p99=1.4, precision="int8", parent="m fp32")  # ORT: 5.6x slower, not what runs
    fp32.report.lines += [BudgetLine("c_flash", 41.5, 128, "KiB", "pass"), BudgetLine("c_device_latency_p99", 0.03, 5, "ms", "pass")]
    int8.report.lines += [BudgetLine("c_flash", 13.0, 128, "KiB", "pass"), BudgetLine("c_device_latency_p99", 0.02, 5, "ms", "pass")]
    assert objective_cost(fp32, "size") == 41.5 and objective_cost(int8, "latency") == 0.02
    assert select([fp32, int8], SelectionRule(objective="size")).name == "m int8" and int8.cost == 13.0


# -- the [recipe] profile section ---------------------------------------------------------------------
def _base() -> dict:
    return tomllib.loads(Path(load_profile("smartphone").source).read_text())


def test_recipe_section_defaults_and_validation():
    d = _base()
    d.pop("recipe", None)
    r = parse_profile(d, "x.toml").recipe
    assert (r.teacher, r.objective, r.tie_rule, r.prune) == ("train", "latency", "mcnemar", True)
    for key, value, msg in [("objective", "speed", "must be one of"), ("teacher_family", "svm_linear", "must be a neural BM-Case1 family"),
                            ("alpha", 1.5, r"must be in \(0, 1\)"), ("prune_points", -1, "must be >= 0"), ("bogus", 1, "unknown key")]:
        d = _base()
        d.setdefault("recipe", {})[key] = value
        with pytest.raises(ProfileError, match=rf"key 'recipe.{key}': {msg}"):
            parse_profile(d, "x.toml")
    d = _base()
    d.pop("energy")
    d.setdefault("recipe", {})["objective"] = "energy"
    with pytest.raises(ProfileError, match="recipe.objective.*energy"):
        parse_profile(d, "x.toml")


@pytest.mark.parametrize("name", ["smartphone", "vehicle", "iot", "fwa"])
def test_shipped_profiles_declare_a_recipe(name):
    text = Path(load_profile(name).source).read_text()
    assert "[recipe]" in text
    assert load_profile(name).recipe.teacher == "pretrained"


# -- the recipe end to end on toy data (lean profiles: small MLP teacher, one pruning point) ------------
def test_manifest_lineage_teacher_selection(toy_bundle):
    man = json.loads((toy_bundle.bundle_dir / "manifest.json").read_text())
    t = man["teacher"]
    assert set(t) >= {"family", "mflops", "params", "top1_val", "top1_test"} and t["family"] == "teacher"
    steps = [s["step"] for s in man["lineage"]]
    assert steps[0] == "teach" and steps[1] == "distil" and steps[-1] == "export" and set(steps) <= set(STEPS)
    for s in man["lineage"]:
        assert set(s) == {"step", "name", "from", "settings", "top1_val", "mflops", "params"}
    assert man["selection"]["split"] == "val" and man["selection"]["chosen"] == man["candidate"]
    assert {"rule", "tolerance"} <= set(man["selection"])
    # test metrics only for the chosen candidate (and the teacher); candidates carry validation figures
    rows = man["candidates"]
    assert all("top1_val" in r and "top1" not in r for r in rows)
    chosen = [r for r in rows if r["candidate"] == man["candidate"]]
    assert len(chosen) == 1 and chosen[0]["why"] == "chosen"
    assert all(r["why"] for r in rows if r["candidate"] != man["candidate"])
    assert man["recipe"]["prune"] is False and man["recipe"]["prune_search"] == []  # this fixture skips pruning
    budget = (toy_bundle.bundle_dir / "budget.md").read_text()
    assert "## Lineage" in budget and "chosen on validation" in budget


def test_multi_profile_export_shares_teacher_and_students(tmp_path, monkeypatch):
    from edgebm.pipeline import RecipeRun, export_profiles
    from edgebm.train import TrainConfig

    reads: list[str] = []  # every read of the test split
    real = RecipeRun.test_scores
    monkeypatch.setattr(RecipeRun, "test_scores", lambda self, path, graph: reads.append(path.name) or real(self, path, graph))
    events: list[tuple[str, str]] = []
    ds = make_toy_dataset(500, seed=7)
    res = export_profiles([lean_profile("smartphone"), lean_profile("fwa", objective="size")], ds, tmp_path,
                          train_cfg=TrainConfig(epochs=3, seed=0), families=["mlp"], latency_runs=30,
                          progress=lambda st, d, tot, det="": events.append((st, det)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fwa", "smartphone"]
    trained = [det for st, det in events if (st == "teacher" and det.startswith("training")) or (st == "distil" and det.endswith("(distil)"))]
    assert trained == ["training teacher", "mlp (distil)"]  # once for both profiles
    assert len(reads) == 4  # test split read once per profile for the chosen graph and once for the teacher, after selection
    a, b = res["smartphone"], res["fwa"]
    for r in (a, b):  # the pruning search is recorded and its points are candidates with a prune step
        assert r.manifest["recipe"]["prune_search"][0]["student"] == "mlp"
        assert any(c.name.startswith("mlp-p") and [s.step for s in c.lineage][-2:] == ["prune", "export"] for c in r.candidates)
    assert a.teacher == b.teacher  # the same teacher, reported identically
    assert a.manifest["lineage"][0] == b.manifest["lineage"][0]


def test_pretrained_teacher_seam(monkeypatch, toy_dataset):
    from edgebm.pipeline import teacher as teacher_mod

    monkeypatch.setattr(teacher_mod, "PRETRAINED_PROVIDER", "edgebm.no_such_module:load")
    model, why = teacher_mod.pretrained_teacher(toy_dataset)
    assert model is None and "no pretrained teacher" in why
    monkeypatch.setattr(teacher_mod, "PRETRAINED_PROVIDER", "tests.test_recipe:fake_pretrained")
    model, why = teacher_mod.pretrained_teacher(toy_dataset)
    assert why == "" and model.family == "sgd"


def fake_pretrained(n_b, n_a, codebooks, bs_array):
    """A stand-in provider for the pretrained-teacher seam (a fitted classical model on toy data)."""
    from edgebm.models.estimator import make_model

    assert "cb_a_weights" in codebooks and len(bs_array) == 2
    return make_model("sgd", n_b, n_a).fit(make_toy_dataset(300, seed=1), None)


def test_cli_export_teacher_run_several_profiles_and_prune_to_budget(tmp_path, capsys):
    data = save_dataset(make_toy_dataset(600, seed=11), tmp_path / "d.npz")
    run = tmp_path / "teacher_run"
    assert main(["train", "--data", str(data), "--model", "mlp", "--out", str(run), "--epochs", "3"]) == 0
    src = Path(load_profile("smartphone").source).read_text()
    src = src[: src.index("[recipe]")] + "[recipe]\nprune_points = 1\nfinetune_epochs = 2\n"  # the teacher comes from --teacher
    paths = []
    for name, text in (("lean_phone", src), ("lean_small", src.replace("max_trainable_params = 20000", "max_trainable_params = 2048"))):
        p = tmp_path / f"{name}.toml"
        p.write_text(text.replace('name = "smartphone"', f'name = "{name}"'))
        paths.append(str(p))
    capsys.readouterr()
    rc = main(["export", "--profile", ",".join(paths), "--data", str(data), "--teacher", str(run), "--families", "mlp",
               "--out", str(tmp_path / "out"), "--epochs", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("lean_phone", "lean_small"):
        man = json.loads((tmp_path / "out" / name / "manifest.json").read_text())
        assert man["teacher"]["source"] == f"run folder {run}" and man["teacher"]["family"] == "mlp"
        assert "teacher-mlp fp32" in {r["candidate"] for r in man["candidates"]}  # the teacher is a candidate, named apart
    assert "teacher mlp (run folder" in out
    small = json.loads((tmp_path / "out" / "lean_small" / "manifest.json").read_text())
    entry = next(e for e in small["recipe"]["prune_search"] if e["student"] == "mlp")
    # the on-device head may hold (in + 1) x 64 <= 2048 parameters: the layers feeding it keep 31 features, so the
    # 256-wide body fits without pruning the rest (ratio 0) and the cheaper points prune it further
    assert entry["head_input_cap"] == 31 and entry["fit"]["ratio"] == 0.0
    assert entry["points"][0]["search"] == "fit" and entry["points"][0]["model"] == "mlp-p0h31"
    rows = {r["candidate"]: r for r in small["candidates"]}
    assert rows["mlp fp32"]["verdict"] == "fail" and "trainable_head 16,448 params > 2,048 params" in rows["mlp fp32"]["why"]
    head = next(l for l in small["budget"]["lines"] if l["name"] == "trainable_head")
    assert head["status"] == "pass" and head["value"] <= 2048
    assert small["lineage"][-2]["step"] in ("prune", "quantise") and small["budget"]["verdict"] == "pass"
    phone = json.loads((tmp_path / "out" / "lean_phone" / "manifest.json").read_text())
    assert all("head_input_cap" not in e for e in phone["recipe"]["prune_search"])  # 20,000 parameters: the 256-wide head fits


def test_cli_export_bad_teacher_and_profile_all(tmp_path, capsys):
    from edgebm.pipeline import resolve_profiles

    assert [p.name for p in resolve_profiles("all")] == ["fwa", "iot", "smartphone", "vehicle"]
    assert [p.name for p in resolve_profiles("iot,iot,fwa")] == ["iot", "fwa"]
    assert main(["export", "--profile", "smartphone", "--teacher", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--teacher" in err[0]
    assert main(["export", "--profile", "smartphone,toaster"]) == 2
    assert "toaster" in capsys.readouterr().err


def test_model_contract_to_onnx(toy_dataset, tmp_path):
    """Every family exports through BeamModel.to_onnx -> ExportedGraph (no isinstance branches in the pipeline)."""
    from edgebm.budget import analyze_onnx
    from edgebm.models.estimator import make_model
    from edgebm.train import TrainConfig

    tr, va = toy_dataset.split((0.8, 0.2), seed=0)
    mlp = make_model("mlp", 16, 64, TrainConfig(epochs=1, seed=0), hidden=(32,)).fit(tr, va)
    g = mlp.to_onnx(tmp_path / "mlp.onnx", tr.rsrp_b, va.rsrp_b)
    assert [o["name"] for o in g.outputs] == ["logits", "features"] and g.outputs[1]["shape"] == ["batch", 32]
    assert (g.score_output, g.score_kind, g.feature_output) == ("logits", "logits", "features")
    assert g.head[0].shape == (64, 32) and g.head_params == 64 * 32 + 64
    assert g.flops == analyze_onnx(g.path).flops > 0 and abs(g.thop_flops - g.flops) / g.flops < 0.15
    assert g.parity["argmax_agreement"] == 1.0 and g.parity["n_samples"] == len(va)
    sgd = make_model("sgd", 16, 64, TrainConfig(seed=0)).fit(tr, va)
    g2 = sgd.to_onnx(tmp_path / "sgd.onnx", tr.rsrp_b, va.rsrp_b)
    assert g2.feature_output is None and g2.head is None and g2.head_params == 0
    assert g2.score_kind == "probabilities" and g2.parity["argmax_agreement"] > 0.99 and g2.flops > 0


def test_prune_search_fit_by_bisection_then_halving_then_refine(monkeypatch, tmp_path):
    """Hand-made search: structures fit from ratio 0.30 on; fine-tuned accuracy holds up to 0.70, then drops 3 pp."""
    import dataclasses

    from edgebm.pipeline.context import ExportContext, StoredModel
    from edgebm.pipeline.recipe import R_TOL, RecipeRun

    n = 1000
    base_hits = np.arange(n) < 900  # 0.90

    def val_for(q):
        hits = base_hits.copy()
        if q > 0.70:
            hits[:30] = False  # 30 samples lost, none gained: McNemar p ~ 1.9e-9, -3 pp
        return ValScore(float(hits.mean()), float(hits.mean()), hits, hits.astype(int), np.zeros((n, 2), np.float32))

    ds = make_toy_dataset(50, seed=0)
    ctx = ExportContext(ds, ds, ds, ds, ds.rsrp_b, 0, tmp_path)
    rr = RecipeRun(ctx)
    probes: list[float] = []
    tuned: list[float] = []

    def structure_report(prof, student, q):
        probes.append(q)
        rep = _cand("s", base_hits, flops=1e5 * (1 - q)).report
        return q >= 0.30, rep, "" if q >= 0.30 else "params too many"

    def pruned(prof, student, teacher, q):
        tuned.append(round(q, 4))
        return dataclasses.replace(student, key=f"p{q}", name=f"s-p{q}", val=val_for(q))

    monkeypatch.setattr(rr, "_structure_report", structure_report)
    monkeypatch.setattr(rr, "pruned", pruned)
    student = StoredModel("s", "s", "mlp", None, None, None, val_for(0.0), [])
    prof = lean_profile("smartphone", prune_points=2)
    log: list[dict] = []
    out = rr.prune_points(prof, student, None, [], log)
    fit = log[0]["fit"]["ratio"]
    assert 0.30 <= fit <= 0.30 + R_TOL and probes[:2] == [0.0, 0.97]  # bisection between a failing 0 and a fitting 0.97
    halving = [round(1 - (1 - fit) * 0.5 ** k, 4) for k in (1, 2)]
    assert tuned[:3] == pytest.approx([fit, *halving], abs=2e-4)  # fit point, then halving: the second is no longer tied
    mid1 = (halving[0] + halving[1]) / 2  # > 0.70: not tied
    mid2 = (halving[0] + mid1) / 2  # <= 0.70: tied
    assert tuned[3:] == pytest.approx([mid1, mid2], abs=2e-4) and tuned[3] > 0.70 >= tuned[4]
    assert [p["search"] for p in log[0]["points"]] == ["fit", "halving", "halving", "bisection", "bisection"]
    assert [p["tied_with_unpruned"] for p in log[0]["points"]] == [True, True, False, False, True]
    assert len(out) == 5


# -- the default export data: the randomised corpus, and the named cities as information ---------------------------
def test_export_corpus_spec_and_data_scenario(toy_dataset):
    from edgebm.pipeline.settings import DEFAULT_SAMPLES, data_scenario, export_corpus_spec
    from edgebm.train.corpus import DEFAULT_EXPORT_CORPUS

    spec = export_corpus_spec()
    assert (spec.n_samples, spec.seed, spec.cities) == (DEFAULT_SAMPLES, DEFAULT_EXPORT_CORPUS.seed, 1000)
    assert export_corpus_spec(100, seed=3).seed == DEFAULT_EXPORT_CORPUS.seed + 3  # --seed moves the corpus too
    assert spec.scenario().cities == 1000  # procedurally drawn cities: never city0..city3 (tests/test_random_scenario.py)
    assert data_scenario(toy_dataset) == {"kind": "city", "cities": "toy", "seed": 0, "n_samples": len(toy_dataset),
                                          "source": "unknown"}
    from edgebm.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd" or getattr(a, "choices", None) and "export" in a.choices)
    helps = {a.dest: a.help for a in sub.choices["export"]._actions}
    assert f"(default {DEFAULT_SAMPLES})" in helps["samples"]  # the CLI help says what the library does


def test_cli_export_default_data_is_the_random_corpus_with_named_cities(tmp_path, monkeypatch, capsys):
    """`edgebm export` without --data trains on random cities (here 6 of them, to stay fast) and reports the named
    cities' fresh drops as information; the manifest records the scenario, its seed and the split seed."""
    import dataclasses

    from edgebm.pipeline import settings
    from edgebm.pipeline.settings import NAMED_CITIES

    monkeypatch.setattr(settings, "DEFAULT_EXPORT_CORPUS", dataclasses.replace(settings.DEFAULT_EXPORT_CORPUS, cities=6))
    monkeypatch.setattr(settings, "NAMED_CITY_SAMPLES", 300)
    src = Path(load_profile("fwa").source).read_text()
    prof = tmp_path / "lean_fwa.toml"
    prof.write_text(src[: src.index("[recipe]")].replace('name = "fwa"', 'name = "lean_fwa"') + "[recipe]\nteacher = \"none\"\nprune = false\n")
    assert main(["export", "--profile", str(prof), "--samples", "900", "--seed", "1", "--families", "mlp", "--epochs", "2",
                 "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "named cities (fresh drops, information only): city0" in out
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert man["dataset"]["scenario"] == {"kind": "random", "cities": 6, "seed": 2027, "n_samples": 900, "source": "simulator"}
    assert man["dataset"]["split"]["seed"] == 1
    nc = man["named_cities"]
    assert nc["computed"] and list(nc["cities"]) == list(NAMED_CITIES) and nc["n_per_city"] == 300
    assert all(0.0 <= c["top1"] <= c["top3"] <= 1.0 and c["seen_in_training"] is False for c in nc["cities"].values())
    assert nc["mean_top1"] == pytest.approx(np.mean([c["top1"] for c in nc["cities"].values()]))
    md = (tmp_path / "b" / "budget.md").read_text()
    assert "## Named cities (fresh drops; information only, never used to choose)" in md and "| city3 | no |" in md


def test_named_cities_skipped_when_the_beams_differ(toy_bundle):
    nc = toy_bundle.manifest["named_cities"]
    assert nc["computed"] is False and "codebooks" in nc["why"]
