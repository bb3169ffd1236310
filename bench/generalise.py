"""Suite: beam models that generalise (issue 13) -- train on random cities, test on the named cities and under
codebook / array / carrier shifts, adapt on device, learn from more cities.

Everything is measured side by side in one run, on the same fresh test drops for every method:

1. **Unseen named cities** (city0..city3, 16 -> 64, 20 dB): the pretrained teacher (shipped weights), the shipped
   distilled student, students trained here on the bench corpus (random cities, 0-30 dB) with labels only (MLP,
   DS-CNN, angular) and with the teacher's logits (distilled); model alone (16 beams) and model + top-3 refinement
   (19 beams) against two-level hierarchical search (HS, 20 beams) and exhaustive search (ES, 64). Paired
   bootstrap 95 % CIs (same samples, resampled jointly) for teacher - student and model+top-3 - HS.
2. **16 -> 256** with the same angular models, zero-shot through the 256-beam codebook's gain patterns.
3. **Shifts** (pooled fresh drops of the four cities): Set A codebook -> a random 64-beam subset of the x4
   oversampled DFT (no update; codebook-specific models keep scoring their old beam indices), UE array 4x4 and
   8x8, carrier 3.5 and 15 GHz.
4. **On-device adaptation**: the shipped student's bundle after 25/50/100/200 labels per city with the runtime's
   :class:`~edgebm.runtime.HeadAdapter` under the smartphone's update budget, labels as the emulator collects
   them (best beam of a full sweep of noisy measurements); plain head vs the Reptile meta-init; and the
   domain-similarity aggregation of per-site heads (seed 004) as the starting point.
5. **Learning curve** against the number of training cities at a fixed number of samples.
"""

from __future__ import annotations

import functools
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text

CITIES = ("city0", "city1", "city2", "city3")
FULL = dict(n_corpus=120_000, corpus_cities=1000, n_test=3000, epochs=10, dscnn_samples=30_000, dscnn_epochs=6,
            n_shift=2000, n_adapt=700, labels=(25, 50, 100, 200), curve_cities=(1, 10, 100, 1000), curve_samples=30_000,
            curve_epochs=8, sites=12, site_samples=400, n_boot=1000)
QUICK = dict(n_corpus=12_000, corpus_cities=100, n_test=400, epochs=3, dscnn_samples=4000, dscnn_epochs=2, n_shift=300,
             n_adapt=300, labels=(25, 50, 100, 200), curve_cities=(1, 10, 100), curve_samples=4000, curve_epochs=3, sites=4,
             site_samples=200, n_boot=200)
CORPUS_SEED = 2026           # the bench corpus (DEFAULT_EXPORT_CORPUS seed): random cities disjoint from pretraining's
TEST_SEED = 900


# ----------------------------------------------------------------------------------------------- statistics
def paired_ci(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same samples and its 95 % paired-bootstrap interval."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    idx = rng.integers(0, len(d), (n_boot, len(d)))
    boots = d[idx].mean(1)
    return float(d.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def _fmt_ci(t: tuple[float, float, float], scale: float = 100.0) -> str:
    return f"{scale * t[0]:+.1f} [{scale * t[1]:+.1f}, {scale * t[2]:+.1f}]"


# ----------------------------------------------------------------------------------------------- selections
def _selections(ds, scores: dict[str, np.ndarray], rng: np.random.Generator, refine: int) -> dict[str, dict]:
    """Per method: chosen beam (N,), beams measured, per-sample correctness and SE drop. ``scores`` of models are
    used alone (Set B only) and with ``refine`` top-K measured; HS and ES with noisy narrow-beam measurements."""
    from edgebm import baselines as B
    from edgebm import metrics as M

    out = {}

    def add(name, chosen, beams):
        out[name] = {"chosen": chosen, "beams": float(np.mean(beams)), "hit": (chosen == ds.best_a).astype(np.float64),
                     "se_drop": M.se_drop(ds.rsrp_a, chosen, ds.noise_dbm)}

    for name, s in scores.items():
        add(name, s.argmax(1), ds.n_b)
        if refine:
            sel = B.topk_refinement(s, ds.rsrp_a, ds.noise_dbm, rng, refine, ds.n_b)
            add(f"{name} + top-{refine}", sel.chosen, sel.beams_measured)
    hs = B.hierarchical_search(ds.rsrp_b, ds.rsrp_a, ds.codebooks["cb_children"], ds.noise_dbm, rng)
    add("HS", hs.chosen, hs.beams_measured)
    es = B.exhaustive_search(ds.rsrp_a, ds.noise_dbm, rng)
    add("ES", es.chosen, es.beams_measured)
    return out


def _scores(models: dict, ds) -> dict[str, np.ndarray]:
    """Scores of every model on ``ds``: angular models through ``ds``'s own Set A codebook, others as they are."""
    import torch

    from edgebm.models.angular import codebook_gains

    out = {}
    for name, m in models.items():
        mod = m.module if hasattr(m, "module") else m
        x = torch.from_numpy(np.ascontiguousarray(ds.rsrp_b, np.float32))
        with torch.no_grad():
            mod.eval()
            if hasattr(mod, "forward_aps"):
                ga = torch.from_numpy(codebook_gains(ds.codebooks, ds.meta["bs_array"], mod.grid)[1])
                out[name] = torch.cat([mod(x[i:i + 8192], gains_a=ga) for i in range(0, len(x), 8192)]).numpy()
            elif ds.n_a == mod.head.out_features:
                out[name] = torch.cat([mod(x[i:i + 8192]) for i in range(0, len(x), 8192)]).numpy()
    return out


# ----------------------------------------------------------------------------------------------- bundles for the runtime
def _bundle(module, ds, out: Path, profile: str = "smartphone") -> Path:
    """A runtime bundle of a trained torch model (ONNX + head.npz + codebook) for the adaptation runs. Not gated
    (the bench measures accuracy, not the budget): verdict ``fail`` with ``gate: not run``, loaded with ``allow_failed``."""
    from edgebm import __version__
    from edgebm.deploy import export_onnx
    from edgebm.profiles import load_profile
    from edgebm.runtime import write_bundle

    with tempfile.TemporaryDirectory() as td:
        onnx = export_onnx(module, ds.rsrp_b[:4], Path(td) / "model.onnx")
        blob = onnx.read_bytes()
    head_w, head_b = module.head.weight.detach().numpy().copy(), module.head.bias.detach().numpy().copy()
    outs = [{"name": "logits", "shape": ["batch", ds.n_a], "dtype": "float32"},
            {"name": "features", "shape": ["batch", int(module.head.in_features)], "dtype": "float32"}]
    man = {"edgebm_version": __version__, "profile": profile, "profile_config": load_profile(profile).to_dict(),
           "family": "angular" if hasattr(module, "forward_aps") else "mlp",
           "model_config": {"params": module.config() if hasattr(module, "config") else {}}, "model_file": "model.onnx",
           "threads": 1, "inputs": [{"name": "rsrp_b", "shape": ["batch", ds.n_b], "dtype": "float32", "units": "dBm"}],
           "outputs": outs, "score_output": "logits", "score_kind": "logits", "feature_output": "features",
           "n_beams_a": ds.n_a, "n_beams_b": ds.n_b, "dataset": {"meta": ds.meta}, "verdict": "fail",
           "gate": "not run (bench bundle for the adaptation runs)", "head_file": "head.npz", "head_version": 0,
           "codebook": {"file": "codebook.npz"}}

    def write_npz(p: Path, arrays: dict) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    return write_bundle(out, {"model.onnx": lambda p: p.write_bytes(blob),
                              "head.npz": lambda p: write_npz(p, {"W": head_w, "b": head_b}),
                              "codebook.npz": lambda p: write_npz(p, dict(ds.codebooks))}, man)


def _adapt_curve(bundle: Path, init: tuple[np.ndarray, np.ndarray] | None, adapt_ds, test_ds, labels, seed: int) -> dict:
    """Top-1 on ``test_ds`` after 0 and each count in ``labels`` of on-device labels (HeadAdapter, device budget,
    updates of 25), labels = best beam of a noisy full sweep of ``adapt_ds``."""
    from edgebm.baselines import exhaustive_search
    from edgebm.runtime import HeadAdapter, Predictor

    pred = Predictor(bundle, allow_failed=True)
    if init is not None:
        pred.set_head(*init)
    lab = exhaustive_search(adapt_ds.rsrp_a, adapt_ds.noise_dbm, np.random.default_rng(seed)).chosen
    ad = HeadAdapter(pred, seed=seed)
    acc = {0: float(np.mean(pred.decision_scores(test_ds.rsrp_b).argmax(1) == test_ds.best_a))}
    steps, done = [], 0
    for n in labels:
        for lo in range(done, n, 25):
            st = ad.update(adapt_ds.rsrp_b[lo:lo + 25], lab[lo:lo + 25])
            steps.append(st.steps)
        done = n
        acc[n] = float(np.mean(pred.decision_scores(test_ds.rsrp_b).argmax(1) == test_ds.best_a))
    return {"acc": acc, "mean_steps": float(np.mean(steps)) if steps else 0.0,
            "device_ms": float(np.mean([h.device_ms for h in ad.history])) if ad.history else 0.0}


# ----------------------------------------------------------------------------------------------- the suite
def _fit_student(train, val, teacher_logits, job):
    """One student of the suite: ``job = (family, params, distilled, TrainConfig, training rows or None)``."""
    from edgebm.models.estimator import make_model

    fam, params, distil, cfg, n_rows = job
    tr = train if n_rows is None else train.subset(np.arange(min(len(train), n_rows)))
    kw = {"teacher_logits": teacher_logits, "distil_weight": 1.0, "distil_temperature": 2.0} if distil else {}
    return make_model(fam, 16, 64, cfg, **params).fit(tr, val, **kw)


def run(quick: bool = False, out_dir: Path = RESULTS, executor=None) -> str:
    """Run the suite; ``executor`` (:mod:`edgebm.parallel`) trains the five students (default: here, serially)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from edgebm.data import BeamDataset
    from edgebm.data.simulated import generate_dataset
    from edgebm.models.estimator import make_model
    from edgebm.parallel import Resources, SerialExecutor
    from edgebm.models.pretrained import load_pretrained_student, load_pretrained_teacher, pretrained_info, pretrained_meta_head
    from edgebm.runtime.aggregate import aggregate_heads, feature_stats, similarity_weights
    from edgebm.sim import RandomScenario, ScenarioConfig
    from edgebm.train import TrainConfig
    from edgebm.train.corpus import CorpusSpec, random_corpus
    from edgebm.train.meta import adapt_head, head_accuracy

    torch.set_num_threads(1)
    P = QUICK if quick else FULL
    t_start = time.perf_counter()
    secs: dict[str, float] = {}
    rng = np.random.default_rng(0)
    log = lambda m: print(f"[generalise {time.perf_counter() - t_start:6.0f} s] {m}", flush=True)  # noqa: E731

    # ---- corpus and models
    t = time.perf_counter()
    corpus = random_corpus(CorpusSpec(n_samples=P["n_corpus"], seed=CORPUS_SEED, cities=P["corpus_cities"]))
    train, val = corpus.split((0.95, 0.05), seed=0)
    secs["corpus"] = time.perf_counter() - t
    log(f"corpus {len(corpus)} samples over {P['corpus_cities']} random cities")
    cb, arr = corpus.codebooks, corpus.meta["bs_array"]
    teacher = load_pretrained_teacher(16, 64, cb, arr)
    shipped = load_pretrained_student(16, 64, cb, arr)
    t = time.perf_counter()
    tl = teacher.decision_scores(train.rsrp_b)
    cfg = TrainConfig(epochs=P["epochs"], soft_weight=0.5, batch_size=512, seed=0, patience=5)
    # the five students are independent: one task each on the executor (python -m bench generalise --ray / --workers)
    jobs = {"MLP": ("mlp", {"hidden": (256, 256)}, False, cfg, None),
            "angular": ("angular", {"hidden": (256, 256)}, False, cfg, None),
            "MLP distilled": ("mlp", {"hidden": (256, 256)}, True, cfg, None),
            "angular distilled": ("angular", {"hidden": (256, 256)}, True, cfg, None),
            "DS-CNN": ("dscnn", {}, False, replace(cfg, epochs=P["dscnn_epochs"]), P["dscnn_samples"])}
    ex = executor if executor is not None else SerialExecutor(threads=1)
    fitted = ex.imap(functools.partial(_fit_student, train, val, tl), list(jobs.values()), Resources(cpus=1))
    students = {}
    for name, model in zip(jobs, fitted):
        students[name] = model
        log(f"student {name}: {model.result.epochs_run} epochs ({time.perf_counter() - t:.0f} s into the students)")
    secs["students"] = time.perf_counter() - t
    models = {"teacher (pretrained)": teacher, "student (shipped, distilled)": shipped, **students}
    plain = ["MLP", "DS-CNN", "angular"]

    # ---- 1. unseen named cities, 16 -> 64 at 20 dB
    t = time.perf_counter()
    city_rows, ci_rows, per_city = [], [], {}
    tests = {c: generate_dataset(ScenarioConfig(city=c, snr_db=20.0), P["n_test"], seed=TEST_SEED + i) for i, c in enumerate(CITIES)}
    for c, ds in tests.items():
        sel = _selections(ds, _scores(models, ds), np.random.default_rng(TEST_SEED), refine=3)
        per_city[c] = sel
        for name, s in sel.items():
            city_rows.append([c, name, round(s["beams"], 1), round(float(s["hit"].mean()), 4), round(100 * float(s["se_drop"].mean()), 3)])
        b = np.random.default_rng(1)
        for st in plain:
            ci_rows.append([c, f"teacher - {st}", _fmt_ci(paired_ci(sel["teacher (pretrained)"]["hit"], sel[st]["hit"], b, P["n_boot"]))])
        for st in ("student (shipped, distilled)", "angular distilled", "MLP distilled"):
            ci_rows.append([c, f"teacher - {st}", _fmt_ci(paired_ci(sel["teacher (pretrained)"]["hit"], sel[st]["hit"], b, P["n_boot"]))])
        for name in models:
            ci_rows.append([c, f"{name} + top-3 - HS", _fmt_ci(paired_ci(sel[f"{name} + top-3"]["hit"], sel["HS"]["hit"], b, P["n_boot"]))])
    secs["cities"] = time.perf_counter() - t
    log("named cities done")

    # ---- 2. 16 -> 256 (angular models zero-shot through the 256-beam codebook; HS measures 16 + 16)
    t = time.perf_counter()
    rows256 = []
    ang = {k: v for k, v in models.items() if getattr(v, "family", "") == "angular"}
    for i, c in enumerate(CITIES):
        ds = generate_dataset(ScenarioConfig(city=c, snr_db=20.0, set_a=256), P["n_shift"], seed=TEST_SEED + 10 + i)
        sel = _selections(ds, _scores(ang, ds), np.random.default_rng(TEST_SEED), refine=16)
        for name, s in sel.items():
            rows256.append([c, name, round(s["beams"], 1), round(float(s["hit"].mean()), 4), round(100 * float(s["se_drop"].mean()), 3)])
    secs["256"] = time.perf_counter() - t
    log("16->256 done")

    # ---- 3. shifts, pooled over the four cities
    t = time.perf_counter()
    shift_rows = []
    shifts = [("codebook random64 (no update)", dict(codebook_a="random", codebook_seed=5)), ("UE array 4x4", dict(ue_array=(4, 4))),
              ("UE array 8x8", dict(ue_array=(8, 8))), ("carrier 3.5 GHz", dict(carrier_hz=3.5e9)), ("carrier 15 GHz", dict(carrier_hz=15e9))]
    for j, (label, kw) in enumerate(shifts):
        parts = [generate_dataset(ScenarioConfig(city=c, snr_db=20.0, **kw), P["n_shift"] // 4, seed=TEST_SEED + 20 + 4 * j + i)
                 for i, c in enumerate(CITIES)]
        ds = BeamDataset(arrays={k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}, codebooks=parts[0].codebooks,
                         meta=parts[0].meta)
        sc = _scores(models, ds)
        if kw.get("codebook_a") == "random":   # codebook-specific models keep predicting their old (DFT) beam indices
            for name, m in models.items():
                if getattr(m, "family", "") != "angular":
                    sc[name] = m.decision_scores(ds.rsrp_b)
        k = int(ds.codebooks["cb_children"].shape[1])
        sel = _selections(ds, sc, np.random.default_rng(TEST_SEED + j), refine=k)
        for name, s in sel.items():
            shift_rows.append([label, name, round(s["beams"], 1), round(float(s["hit"].mean()), 4), round(100 * float(s["se_drop"].mean()), 3),
                               round(100 * float(np.percentile(s["se_drop"], 90)), 2)])
    secs["shifts"] = time.perf_counter() - t
    log("shifts done")

    # ---- 4. on-device adaptation (HeadAdapter, device budget) and aggregation
    t = time.perf_counter()
    adapt_rows, curves = [], {}
    meta_init = pretrained_meta_head(64)
    with tempfile.TemporaryDirectory() as td:
        bdir = _bundle(shipped.module, corpus, Path(td) / "student")
        for i, c in enumerate(CITIES):
            ds = generate_dataset(ScenarioConfig(city=c, snr_db=20.0), P["n_adapt"] + P["n_test"], seed=TEST_SEED + 40 + i)
            a_ds, t_ds = ds.subset(np.arange(P["n_adapt"])), ds.subset(np.arange(P["n_adapt"], len(ds)))
            for init_name, init in (("plain head", None), ("Reptile meta-init", meta_init)):
                if init_name != "plain head" and init is None:
                    continue
                r = _adapt_curve(bdir, init, a_ds, t_ds, P["labels"], seed=i)
                curves[(c, init_name)] = r["acc"]
                adapt_rows.append([c, init_name] + [round(r["acc"][n], 4) for n in (0, *P["labels"])] + [round(r["mean_steps"], 1), round(r["device_ms"], 2)])
    secs["adapt"] = time.perf_counter() - t
    log("adaptation done")

    # aggregation of per-site heads (seed 004): sites = random cities of another seed, each head adapted on 200 labels
    t = time.perf_counter()
    agg_rows = []
    mod = shipped.module

    def feats(x):
        with torch.no_grad():
            return mod.forward_features(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    from edgebm.baselines import exhaustive_search

    # every head starts where the UE starts: the Reptile meta-init (the plain physics head when there is none)
    w0, b0 = meta_init if meta_init is not None else (mod.head.weight.detach().numpy().copy(), mod.head.bias.detach().numpy().copy())
    site_ds = generate_dataset(RandomScenario(cities=P["sites"], snr_db=(15.0, 25.0)), P["sites"] * P["site_samples"], seed=CORPUS_SEED + 1)
    site_lab = exhaustive_search(site_ds.rsrp_a, site_ds.noise_dbm, np.random.default_rng(5)).chosen
    site_f = feats(site_ds.rsrp_b)
    heads, stats = [], []
    for k in range(P["sites"]):
        idx = np.flatnonzero(site_ds.city_id == k)
        heads.append(adapt_head(w0, b0, site_f[idx[:200]], site_lab[idx[:200]], steps=160, lr=0.1, rng=np.random.default_rng(k)))
        stats.append(feature_stats(site_f[idx]))
    for i, c in enumerate(CITIES):
        ds = tests[c]
        f = feats(ds.rsrp_b)
        lab = exhaustive_search(ds.rsrp_a, ds.noise_dbm, np.random.default_rng(50 + i)).chosen
        shots, rest = slice(0, 25), slice(100, None)
        g = similarity_weights(feature_stats(f[:100]), stats)     # statistics from 100 unlabelled samples of the new site
        inits = {"own start": (w0, b0), "uniform average of site heads": aggregate_heads(heads, np.ones(len(heads))),
                 "W2-similarity aggregation": aggregate_heads(heads, g)}
        row = [c]
        for name, (w, b) in inits.items():
            wa, ba = adapt_head(w, b, f[shots], lab[shots], steps=20, lr=0.1, rng=np.random.default_rng(i))
            row += [round(head_accuracy(w, b, f[rest], ds.best_a[rest]), 4), round(head_accuracy(wa, ba, f[rest], ds.best_a[rest]), 4)]
        agg_rows.append(row + [round(float(g.max()), 3)])
    secs["aggregation"] = time.perf_counter() - t
    log("aggregation done")

    # ---- 5. learning curve against the number of training cities (fixed samples)
    t = time.perf_counter()
    curve_rows = []
    for K in P["curve_cities"]:
        d = random_corpus(CorpusSpec(n_samples=P["curve_samples"], seed=CORPUS_SEED + 100 + K, cities=K))
        tr, va = d.split((0.95, 0.05), seed=0)
        row = [K]
        for fam in ("angular", "mlp"):
            m = make_model(fam, 16, 64, replace(cfg, epochs=P["curve_epochs"]), hidden=(256, 256)).fit(tr, va)
            accs = [float(np.mean(m.decision_scores(ds.rsrp_b).argmax(1) == ds.best_a)) for ds in tests.values()]
            row += [round(float(np.mean(accs)), 4), round(float(np.min(accs)), 4)]
        curve_rows.append(row)
        log(f"curve K={K}: {row}")
    secs["curve"] = time.perf_counter() - t

    runtime = time.perf_counter() - t_start
    text = _report(quick, P, secs, runtime, city_rows, ci_rows, per_city, rows256, shift_rows, adapt_rows, agg_rows, curve_rows,
                   pretrained_info(), len(corpus), students, adapt_rows)
    _plot(plt, per_city, curves, curve_rows, P, out_dir / f"generalise{'_quick' if quick else ''}.png")
    write_text(out_dir / f"generalise{'_quick' if quick else ''}.md", text)
    return text


# ----------------------------------------------------------------------------------------------- report
def _report(quick, P, secs, runtime, city_rows, ci_rows, per_city, rows256, shift_rows, adapt_rows, agg_rows, curve_rows, info,
            n_corpus, students, adapt_summary_rows) -> str:
    suffix = "_quick" if quick else ""
    tinfo = info.get("angular_teacher.npz", {})
    lines = header(
        "Generalisation across cities, codebooks, arrays and carriers (issue 13)",
        f"python -m bench generalise{' --quick' if quick else ''}",
        [f"bench corpus: {n_corpus} samples over {P['corpus_cities']} random cities (RandomScenario seed {CORPUS_SEED}, 0-30 dB, "
         "16 -> 64 DFT), none of city0..city3; 95/5 train/val split",
         f"teacher and shipped student: `edgebm/_pretrained/` from `python -m bench pretrain` (teacher config {tinfo.get('config')}; "
         f"pretraining corpus: {len(tinfo.get('corpus', []))} parts, other seeds than the bench corpus)",
         f"students trained here on the bench corpus, {P['epochs']} epochs max, soft labels 0.5 (T=2), early stopping: MLP (256,256), "
         f"angular (256,256), DS-CNN ({P['dscnn_samples']} samples, {P['dscnn_epochs']} epochs: it trains ~20x slower per sample); "
         "'distilled' = same + the teacher's logits (KL, T=2, weight 1)",
         f"test: fresh drops of each named city at 20 dB ({P['n_test']} per city, the same samples for every method); HS = 16 wide + 4 "
         "children measured (20 beams); ES = all 64; narrow-beam measurements noisy (24-subcarrier average)",
         f"CIs: paired bootstrap ({P['n_boot']} resamples of the same test samples), 95 %, in percentage points",
         f"suite runtime {runtime:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + "); 2 shared logical CPUs, torch 1 thread"])
    lines += ["## 1. Unseen named cities, 16 -> 64 at 20 dB", ""]
    lines += md_table(["city", "method", "beams", "top-1", "SE drop mean %"], city_rows)
    lines += ["", "Paired differences in top-1 (pp, 95 % CI):", ""]
    lines += md_table(["city", "difference", "pp [95 % CI]"], ci_rows)
    lines += ["", "## 2. 16 -> 256 (angular models zero-shot through the 256-beam codebook)", ""]
    lines += md_table(["city", "method", "beams", "top-1", "SE drop mean %"], rows256)
    lines += ["", "## 3. Shifts (four cities pooled)", "",
              "Model + top-K uses K = the HS children count of that codebook, i.e. the same beams as HS. "
              "Codebook shift: the MLP / DS-CNN students score their old DFT indices (they cannot know the new beams).", ""]
    lines += md_table(["shift", "method", "beams", "top-1", "SE drop mean %", "SE drop p90 %"], shift_rows)
    lines += ["", "## 4. On-device adaptation of the shipped student (HeadAdapter, smartphone update budget)", "",
              "Top-1 on held-out drops of the city after n labels (updates of 25, best beam of a noisy full sweep):", ""]
    lines += md_table(["city", "head start", "0", *[str(n) for n in P["labels"]], "SGD steps / update", "device ms / update"], adapt_rows)
    lines += ["", "Domain-similarity aggregation (seed 004): per-site heads of "
              f"{P['sites']} random cities (each adapted from the meta-init on 200 labels, 160 SGD steps); a named city's head "
              "starts from its own start (the meta-init), the uniform average of the site heads or their W2-similarity-weighted "
              "average (feature statistics of 100 unlabelled samples of the new city), then 25 labels (20 SGD steps, lr 0.1); "
              "top-1 on the city's other samples:", ""]
    lines += md_table(["city", "own start: 0", "own start: 25", "uniform: 0", "uniform: 25", "W2: 0", "W2: 25", "max weight"], agg_rows)
    lines += ["", f"## 5. Learning curve: {P['curve_samples']} samples from K random cities", ""]
    lines += md_table(["cities K", "angular mean top-1", "angular worst city", "MLP mean top-1", "MLP worst city"], curve_rows)
    lines += ["", f"![generalise](generalise{suffix}.png)", ""]
    lines += ["## Targets (issue 13)", ""] + _targets(per_city, shift_rows)
    for init in ("plain head", "Reptile meta-init"):
        rows = [r for r in adapt_summary_rows if r[1] == init]
        if rows:
            cols = ["0", *[str(n) for n in P["labels"]]]
            means = [float(np.mean([r[2 + i] for r in rows])) for i in range(len(cols))]
            lines.append(f"- adaptation, {init}: mean top-1 over the four cities after " + ", ".join(f"{c} labels {m:.3f}" for c, m in zip(cols, means)))
    return "\n".join(lines) + "\n"


def _targets(per_city, shift_rows) -> list[str]:
    out = []
    t = "teacher (pretrained)"
    for c, sel in per_city.items():
        best = max((n for n in sel if "+" not in n and n not in ("HS", "ES")), key=lambda n: sel[n]["hit"].mean())
        out.append(f"- {c}: best model alone {best} top-1 {sel[best]['hit'].mean():.3f} (target >= 0.85: "
                   f"{'met' if sel[best]['hit'].mean() >= 0.85 else 'missed'}); teacher {sel[t]['hit'].mean():.3f}; "
                   f"teacher + top-3 {sel[t + ' + top-3']['hit'].mean():.3f} vs HS {sel['HS']['hit'].mean():.3f} "
                   f"({'>=' if sel[t + ' + top-3']['hit'].mean() >= sel['HS']['hit'].mean() else '<'} HS); "
                   f"teacher minus best plain student: {100 * (sel[t]['hit'].mean() - max(sel[s]['hit'].mean() for s in ('MLP', 'DS-CNN', 'angular'))):+.1f} pp; "
                   f"shipped student minus teacher: {100 * (sel['student (shipped, distilled)']['hit'].mean() - sel[t]['hit'].mean()):+.1f} pp")
    cb = [r for r in shift_rows if r[0].startswith("codebook")]
    hs = next(r for r in cb if r[1] == "HS")
    for r in cb:
        if r[1].startswith(("teacher", "student (shipped")):
            out.append(f"- codebook switch, {r[1]}: SE drop {r[4]:.3f} % at {r[2]:g} beams vs HS {hs[4]:.3f} % at {hs[2]:g} beams "
                       f"({'no worse' if r[4] <= hs[4] else 'worse'} than HS)")
    return out


def _plot(plt, per_city, curves, curve_rows, P, path: Path) -> None:
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.4))
    names = [n for n in next(iter(per_city.values())) if "+" not in n]
    x = np.arange(len(per_city))
    w = 0.8 / len(names)
    for j, n in enumerate(names):
        ax[0].bar(x + (j - len(names) / 2 + 0.5) * w, [per_city[c][n]["hit"].mean() for c in per_city], w, label=n)
    ax[0].set_xticks(x, list(per_city))
    ax[0].set_ylim(0.5, 1.0)
    ax[0].set_ylabel("top-1 (model alone, 16 beams; HS 20, ES 64)")
    ax[0].legend(fontsize=6, ncol=2)
    ax[0].set_title("unseen named cities, 16 -> 64, 20 dB", fontsize=9)
    labels = (0, *P["labels"])
    for (c, init), acc in curves.items():
        ax[1].plot(labels, [acc[n] for n in labels], marker="o", ls="-" if init == "plain head" else "--", label=f"{c} {init}")
    ax[1].set_xlabel("on-device labels")
    ax[1].set_ylabel("top-1")
    ax[1].legend(fontsize=6)
    ax[1].set_title("HeadAdapter on the shipped student", fontsize=9)
    ks = [r[0] for r in curve_rows]
    ax[2].semilogx(ks, [r[1] for r in curve_rows], marker="o", label="angular (mean of 4 cities)")
    ax[2].semilogx(ks, [r[3] for r in curve_rows], marker="s", label="MLP (mean of 4 cities)")
    ax[2].set_xlabel(f"training cities ({P['curve_samples']} samples in all)")
    ax[2].set_ylabel("top-1 on city0..city3")
    ax[2].legend(fontsize=7)
    ax[2].set_title("learning curve vs number of cities", fontsize=9)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)
