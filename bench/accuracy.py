"""Suite 2 — beam-prediction accuracy on the simulator (seed 001 Tables III-V, seed 003 BM-Case2).

BM-Case1 (spatial, Set B 16 -> Set A 64 / 256, SNR 0 and 20 dB, cities city0..city3): hierarchical
search (HS: Set B sweep + the ``c`` narrow children of the best wide beam, |B| + c beams), exhaustive
search (|A| beams), the genie, the RegNet teacher, the position-aided teacher (position is a training
label only), students (MLP without and with distillation from the teacher, DS-CNN with distillation)
and the classical families (linear / RBF SVM, tree, gradient-boosted trees, SGD), every learned model
alone (|B| beams) and with top-K refinement (|B| + K beams, K = 3 and K = c so that it measures exactly
as many beams as HS). Metrics (``edgebm.metrics`` / ``edgebm.baselines``): top-1, top-3, SE drop vs the
genie (mean, p90), beams measured and effective SE after overhead (20 ms beam cycle, 5/64 ms per beam).
Narrow-beam measurements in HS, exhaustive and refinement are noisy (``measure_beams``).

Cross-city (seed 001 Table V): every model trained in one city is scored on the test split of the
others (same SNR and codebooks). BM-Case2: the ``gru`` family on simulator trajectories, top-1 /
top-3 per future slot next to the persistence baselines.

Each (Set A, SNR, city) configuration and each BM-Case2 run is one independent task on an
:mod:`edgebm.parallel` executor: two local processes by default (the machine has 2 cores and is shared),
``--workers N`` / ``--ray [local|ADDRESS]`` from ``python -m bench``; one torch thread per task in every backend.
Every dataset, split, model and measurement draw has a fixed seed, so the results do not depend on the
executor: the report's ``results digest`` (sha256 over every number except timings) is the check.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import RESULTS, header, md_table, save_fig, write_text

CITIES = ("city0", "city1", "city2", "city3")
CYCLE_MS = 20.0
T0 = time.perf_counter()


@dataclass(frozen=True)
class Sizes:
    set_as: tuple[int, ...]
    snrs: tuple[float, ...]
    cities: tuple[str, ...]
    n_samples: int          # per (set_a, snr, city); split 70/10/20 train/val/test
    epochs: int             # neural BM-Case1 families (cosine schedule, best-val checkpoint)
    batch_size: int
    upsample: int           # teacher / position-aided teacher image size
    gru_runs: tuple[tuple[float, int, int], ...]  # BM-Case2: (prediction interval s, UEs, steps), one GRU each
    gru_epochs: int
    gru_set_a: int
    labels: tuple[str, ...] | None = None   # the LEARNED labels to train (None: all)
    workers: int = 2        # local processes when no executor is given
    threads: int = 1        # torch intra-op threads per task


FULL = Sizes(set_as=(64, 256), snrs=(0.0, 20.0), cities=CITIES, n_samples=4000, epochs=10, batch_size=64, upsample=16,
             gru_runs=((0.2, 600, 24), (0.02, 1500, 16)), gru_epochs=10, gru_set_a=256)
QUICK = Sizes(set_as=(64, 256), snrs=(20.0,), cities=("city0", "city1"), n_samples=2000, epochs=6, batch_size=64, upsample=16,
               gru_runs=((0.2, 240, 20),), gru_epochs=4, gru_set_a=256)

# (label, family, params, distil from the teacher)
LEARNED: tuple[tuple[str, str, dict[str, Any], bool], ...] = (
    ("teacher", "teacher", {"upsample": None}, False),
    ("teacher_pos", "teacher_pos", {"upsample": None}, False),
    ("mlp", "mlp", {}, False),
    ("mlp (KD)", "mlp", {}, True),
    ("dscnn (KD)", "dscnn", {}, True),
    ("svm_linear", "svm_linear", {}, False),
    ("svm_rbf", "svm_rbf", {"max_train": 5000}, False),
    ("tree", "tree", {}, False),
    ("gbt", "gbt", {}, False),
    ("sgd", "sgd", {}, False),
)
LABELS = tuple(x[0] for x in LEARNED)
STUDENTS = ("mlp", "mlp (KD)", "dscnn (KD)")
CROSS_MAIN = ("teacher", "teacher_pos", "mlp (KD)", "gbt")


def log(msg: str) -> None:
    print(f"[accuracy {time.perf_counter() - T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


def _one_line(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return s[:140]


# ---------------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------------
def _seed(*parts: Any) -> int:
    """Stable small seed from config parts (hash() is salted per process)."""
    import zlib

    return zlib.crc32(repr(parts).encode()) % (2**31)


@functools.lru_cache(maxsize=8)
def _splits(set_a: int, snr: float, city: str, n: int):
    from edgebm.data.simulated import generate_dataset
    from edgebm.sim import ScenarioConfig

    ds = generate_dataset(ScenarioConfig(city=city, set_a=set_a, snr_db=float(snr)), n_samples=n, seed=_seed("data", city) % 10000)
    return tuple(ds.split((0.7, 0.1, 0.2), seed=0))


def _fit(label: str, family: str, params: dict, kd: bool, train, val, sz: Sizes, teacher_logits):
    from edgebm.models.estimator import make_model
    from edgebm.train import TrainConfig

    params = {k: (sz.upsample if (k == "upsample" and v is None) else v) for k, v in params.items()}
    cfg = TrainConfig(epochs=sz.epochs, batch_size=sz.batch_size, lr=2e-3, patience=5, seed=0, soft_weight=0.2)
    model = make_model(family, train.n_b, train.n_a, cfg, **params)
    if kd:
        if teacher_logits is None:
            raise RuntimeError("no teacher logits (teacher failed)")
        model.fit(train, val, teacher_logits=teacher_logits, distil_weight=0.5, distil_temperature=4.0)
    else:
        model.fit(train, val)
    return model


def _evaluate(scores: dict[str, np.ndarray], test, train, seed: int) -> tuple[list[dict], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Rows for the baselines and every model (alone, + top-3, + top-c refinement) on ``test`` from
    ``edgebm.evaluate.evaluation_rows``, plus per-sample correctness and SE drop of each selection (for paired
    comparisons) and, on the HS row, the smallest K whose top-K refinement reaches HS's top-1."""
    from edgebm import baselines as B
    from edgebm import metrics as M
    from edgebm.evaluate import evaluation_rows, n_avg_of

    a, noise, n_b, n_avg = test.rsrp_a, test.noise_dbm, test.n_b, n_avg_of(test)
    c = int(test.codebooks["cb_children"].shape[1])
    sels: list = []
    rows = evaluation_rows(scores, test, train=train, cycle_ms=CYCLE_MS, seed=seed, refine_k=tuple(sorted({3, c})),
                           refine_label="{label} + top-{k}", selections=sels)
    correct: dict[str, np.ndarray] = {}
    drop: dict[str, np.ndarray] = {}
    for r, sel in zip(rows, sels):
        if r["method"] == "hierarchical":
            r["method"] = r["model"] = "HS"
        correct[r["method"]] = sel.chosen == test.best_a
        drop[r["method"]] = M.se_drop(a, sel.chosen, noise)
    # smallest K whose top-K refinement reaches HS's top-1 (separate draws, so the rows above are unchanged)
    hs_top1 = rows[2]["top1"]
    rng_k = np.random.default_rng(seed + 1)
    k_match: dict[str, int | None] = {}
    for label, s in scores.items():
        k_match[label] = 0 if np.mean(s.argmax(1) == test.best_a) >= hs_top1 else None
        for k in range(2, c + 1) if k_match[label] is None else ():
            sel = B.topk_refinement(s, a, noise, rng_k, k, n_b, n_avg)
            if np.mean(sel.chosen == test.best_a) >= hs_top1:
                k_match[label] = k
                break
    rows[2]["k_match"] = k_match
    return rows, correct, drop


def task_case1(set_a: int, snr: float, city: str, sz: Sizes) -> dict:
    """Train every family on one (set_a, snr, city), evaluate in-city and on the other cities' test splits."""
    from edgebm import baselines as B
    from edgebm import metrics as M

    t_task = time.perf_counter()
    tag = f"16->{set_a} {snr:g} dB {city}"
    train, val, test = _splits(set_a, snr, city, sz.n_samples)
    scores: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    failures: dict[str, str] = {}
    fit_s: dict[str, float] = {}
    teacher_logits = None
    for label, family, params, kd in LEARNED:
        if sz.labels is not None and label not in sz.labels:
            continue
        t0 = time.perf_counter()
        try:
            m = _fit(label, family, params, kd, train, val, sz, teacher_logits)
            s = np.asarray(m.decision_scores(test.rsrp_b), dtype=np.float64)
            if s.shape != (len(test), test.n_a) or not np.all(np.isfinite(s)):
                raise ValueError(f"scores shape {s.shape} or non-finite values")
            scores[label], models[label] = s, m
            if label == "teacher":
                teacher_logits = np.asarray(m.decision_scores(train.rsrp_b), dtype=np.float32)
        except Exception as e:  # noqa: BLE001 - a failing family is a result, not a crash
            failures[label] = _one_line(e)
            print(f"[accuracy] {tag} {label} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        fit_s[label] = time.perf_counter() - t0
        print(f"[accuracy]   {tag} {label}: {fit_s[label]:.1f} s"
              + (f", top-1 {M.topk_accuracy(scores[label], test.best_a, 1):.3f}" if label in scores else " FAILED"), file=sys.stderr, flush=True)
    rows, correct, drop = _evaluate(scores, test, train, _seed("eval", set_a, snr, city))
    for r in rows:
        r["fit_s"] = fit_s.get(r["model"])
    cross: dict[str, dict[str, tuple[float, float]]] = {}
    for other in sz.cities:
        o_test = _splits(set_a, snr, other, sz.n_samples)[2]
        for label, m in models.items():
            try:
                s = m.decision_scores(o_test.rsrp_b)
                sel = B.Selection(label, s.argmax(1), np.full(len(o_test), o_test.n_b, dtype=np.int64))
                met = B.selection_metrics(sel, o_test.rsrp_a, o_test.noise_dbm, CYCLE_MS)
                cross.setdefault(label, {})[other] = (met["top1"], met["se_drop_mean"])
            except Exception as e:  # noqa: BLE001
                failures.setdefault(label, f"cross-city: {_one_line(e)}")
    keep = ("HS", "exhaustive") + tuple(f"{lbl}{suf}" for lbl in scores for suf in ("", f" + top-{test.codebooks['cb_children'].shape[1]}"))
    return {"kind": "case1", "set_a": set_a, "snr": snr, "city": city, "rows": rows, "failures": failures,
            "correct": {k: v for k, v in correct.items() if k in keep}, "drop": {k: v for k, v in drop.items() if k in keep},
            "cross": cross, "c": int(test.codebooks["cb_children"].shape[1]), "n_test": len(test), "n_train": len(train),
            "seconds": time.perf_counter() - t_task}


def task_case2(interval: float, n_ues: int, n_steps: int, sz: Sizes, city: str = "city0", snr: float = 20.0, history: int = 8, horizon: int = 3) -> dict:
    """GRU (BM-Case2) on trajectories sampled every ``interval`` s: per-slot top-1/top-3 vs persistence."""
    from edgebm import metrics as M
    from edgebm.data.simulated import generate_dataset
    from edgebm.models.estimator import make_model
    from edgebm.models.temporal import make_sequences
    from edgebm.sim import ScenarioConfig
    from edgebm.train import TrainConfig

    t_task = time.perf_counter()
    out: dict[str, Any] = {"kind": "case2", "interval": interval, "city": city, "snr": snr, "set_a": sz.gru_set_a,
                           "history": history, "horizon": horizon, "ues": n_ues, "steps": n_steps}
    try:
        ds = generate_dataset(ScenarioConfig(city=city, set_a=sz.gru_set_a, snr_db=snr), 0, seed=7,
                              trajectories=(n_ues, n_steps, interval))
        train, val, test = ds.split((0.7, 0.1, 0.2), seed=0)
        cfg = TrainConfig(epochs=sz.gru_epochs, batch_size=sz.batch_size, lr=2e-3, patience=sz.gru_epochs, seed=0)
        m = make_model("gru", ds.n_b, ds.n_a, cfg, history=history, horizon=horizon, hidden=128).fit(train, val)
        X, Y, idx = make_sequences(test.rsrp_b, test.best_a, test.traj_id, test.t, history, horizon, return_index=True)
        s = m.sequence_scores(X).astype(np.float64)  # (N, J+1, A)
        a, noise = test.rsrp_a, test.noise_dbm
        own = s[:, 0]
        slots = []
        for j in range(horizon + 1):
            fut = idx + j  # rows are ordered by (traj_id, t) and windows never cross trajectories
            assert np.all(test.traj_id[fut] == test.traj_id[idx]) and np.all(test.best_a[fut] == Y[:, j])
            a_j, n_j = a[fut], noise[fut]
            true_now = a[idx]  # persistence with a full Set A sweep at t (|A| beams)

            def drop(sc):
                return float(np.mean(M.se_drop(a_j, sc.argmax(1), n_j)))

            slots.append({
                "slot": f"t+{j}" if j else "t", "ahead_s": j * interval, "changed": float(np.mean(Y[:, j] != Y[:, 0])),
                "gru_top1": M.topk_accuracy(s[:, j], Y[:, j], 1), "gru_top3": M.topk_accuracy(s[:, j], Y[:, j], 3),
                "gru_drop": drop(s[:, j]),
                "own_top1": M.topk_accuracy(own, Y[:, j], 1), "own_top3": M.topk_accuracy(own, Y[:, j], 3), "own_drop": drop(own),
                "true_top1": M.topk_accuracy(true_now, Y[:, j], 1), "true_top3": M.topk_accuracy(true_now, Y[:, j], 3),
                "true_drop": drop(true_now),
            })
        out.update(slots=slots, n_windows=len(X), n_train=len(train), fit_s=m.result.seconds, epochs_run=m.result.epochs_run,
                   best_epoch=m.result.best_epoch)
    except Exception as e:  # noqa: BLE001
        out["failure"] = _one_line(e)
        print(f"[accuracy] BM-Case2 {interval} s FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
    out["seconds"] = time.perf_counter() - t_task
    return out


# ---------------------------------------------------------------------------------------------
# report side
# ---------------------------------------------------------------------------------------------
def _pct(v: float | None) -> float | None:
    return None if v is None else round(100.0 * float(v), 1)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b and the 95 % half-width of that mean (paired, normal approximation)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return float(d.mean()), float(1.96 * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def _snr(s: float) -> str:
    return f"{s:g} dB"


def _row(res: dict, method: str) -> dict | None:
    return next((r for r in res["rows"] if r["method"] == method), None)


def _table_top1(results: dict, set_a: int, sz: Sizes) -> list[str]:
    any_res = next((r for (a, _, _), r in results.items() if a == set_a), None)
    if any_res is None:
        return [f"(no results for 16→{set_a})"]
    c = any_res["c"]
    cols = ["SNR", "city", f"HS ({16 + c})", f"exhaustive ({set_a})"] + [f"{lbl} (16)" for lbl in LABELS] + ["best learned"]
    rows = []
    for snr in sz.snrs:
        for city in sz.cities:
            res = results.get((set_a, snr, city))
            if res is None:
                continue
            line: list[Any] = [_snr(snr), city, _pct(_row(res, "HS")["top1"]), _pct(_row(res, "exhaustive")["top1"])]
            best, best_v = "-", -1.0
            for lbl in LABELS:
                r = _row(res, lbl)
                if r is None:
                    line.append(f"failed: {res['failures'].get(lbl, 'no result')}")
                    continue
                line.append(_pct(r["top1"]))
                if r["top1"] > best_v:
                    best, best_v = lbl, r["top1"]
            rows.append(line + [best])
    return md_table(cols, rows)


def _beams_to_match(hs: dict, model: str, c: int) -> str:
    k = (hs.get("k_match") or {}).get(model, "?")
    if k == "?":
        return "-"
    return f"> {16 + c}" if k is None else f"{16 + k} (K = {k})"


def _verdict(d: float, h: float) -> str:
    if d - h > 0:
        return "better"
    if d + h < 0:
        return "worse"
    return "tie"


def _table_overhead(results: dict, sz: Sizes, model: str = "teacher") -> tuple[list[str], list[dict]]:
    cols = ["set", "SNR", "city", "HS top-1 % (beams)", f"{model} alone top-1 % (16)", "Δ vs HS (pp, 95% CI)",
            f"{model} + top-c top-1 % (=HS beams)", "Δ vs HS (pp, 95% CI)", "SE drop mean HS / +top-c",
            "eff. SE HS / alone / +top-c", "verdict (alone; +top-c)", "beams to reach HS top-1"]
    rows, facts = [], []
    for set_a in sz.set_as:
        for snr in sz.snrs:
            for city in sz.cities:
                res = results.get((set_a, snr, city))
                if res is None:
                    continue
                c = res["c"]
                hs, alone, ref = _row(res, "HS"), _row(res, model), _row(res, f"{model} + top-{c}")
                if alone is None or ref is None:
                    rows.append([f"16→{set_a}", _snr(snr), city, _pct(hs["top1"]), f"failed: {res['failures'].get(model, '?')}",
                                 None, None, None, None, None, None, None])
                    continue
                d1, h1 = _paired(res["correct"][model], res["correct"]["HS"])
                d2, h2 = _paired(res["correct"][f"{model} + top-{c}"], res["correct"]["HS"])
                dd, dh = _paired(res["drop"][f"{model} + top-{c}"], res["drop"]["HS"])
                v1, v2 = _verdict(d1, h1), _verdict(d2, h2)
                facts.append({"set_a": set_a, "snr": snr, "city": city, "d_alone": d1, "h_alone": h1, "d_ref": d2, "h_ref": h2,
                              "v_alone": v1, "v_ref": v2, "d_drop_ref": dd, "h_drop_ref": dh, "hs": hs, "alone": alone, "ref": ref})
                rows.append([
                    f"16→{set_a}", _snr(snr), city, f"{100 * hs['top1']:.1f} ({hs['beams_measured']:.0f})", _pct(alone["top1"]),
                    f"{100 * d1:+.1f} ± {100 * h1:.1f}", _pct(ref["top1"]), f"{100 * d2:+.1f} ± {100 * h2:.1f}",
                    f"{hs['se_drop_mean']:.4f} / {ref['se_drop_mean']:.4f}",
                    f"{hs['effective_se_mean']:.3f} / {alone['effective_se_mean']:.3f} / {ref['effective_se_mean']:.3f}",
                    f"{v1}; {v2}", _beams_to_match(hs, model, c),
                ])
    return md_table(cols, rows), facts


METRIC_COLS = ["method", "top-1 %", "top-3 %", "within 1 dB %", "SE drop mean", "SE drop p90", "beams", "eff. SE b/s/Hz", "SE b/s/Hz"]


def _metric_line(r: dict) -> list[Any]:
    return [r["method"], _pct(r["top1"]), _pct(r.get("top3")), _pct(r["within_1db"]), round(r["se_drop_mean"], 4),
            round(r["se_drop_p90"], 4), round(r["beams_measured"], 1), round(r["effective_se_mean"], 3), round(r["se_mean"], 3)]


def _table_city_mean(results: dict, set_a: int, snr: float, sz: Sizes, refine: str = "c") -> list[str]:
    """Rows averaged over the cities of one (set_a, snr): baselines, models alone and + top-c."""
    per_city = [results[(set_a, snr, c)] for c in sz.cities if (set_a, snr, c) in results]
    if not per_city:
        return []
    c = per_city[0]["c"]
    names = ["genie", "exhaustive", "HS"] + [n for lbl in LABELS for n in (lbl, f"{lbl} + top-{c}")] + ["nearest position + top-3"]
    keys = ("top1", "top3", "within_1db", "se_drop_mean", "se_drop_p90", "beams_measured", "effective_se_mean", "se_mean")
    rows = []
    for name in names:
        got = [_row(res, name) for res in per_city]
        got = [g for g in got if g is not None]
        if len(got) < len(per_city):
            lbl = name.split(" + ")[0]
            fails = {res["failures"].get(lbl) for res in per_city if _row(res, name) is None}
            rows.append([name, f"failed in {len(per_city) - len(got)} cities: {'; '.join(sorted(f for f in fails if f))[:120]}"]
                        + [None] * 7)
            if not got:
                continue
        mean = {"method": name}
        for k in keys:
            vals = [g[k] for g in got if g.get(k) is not None]
            mean[k] = float(np.mean(vals)) if vals else None
        if len(got) == len(per_city):
            rows.append(_metric_line(mean))
    return md_table(METRIC_COLS, rows)


def _table_cross(results: dict, set_a: int, snr: float, sz: Sizes, labels: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    cols = ["model", "trained in"] + [f"test {c}" for c in sz.cities] + ["in-city", "other cities (mean)", "drop (pp)"]
    rows, facts = [], []
    hs_line: list[Any] = ["HS (no training)", "-"]
    for c in sz.cities:
        res = results.get((set_a, snr, c))
        hs_line.append(_pct(_row(res, "HS")["top1"]) if res else None)
    rows.append(hs_line + [None, None, None])
    for lbl in labels:
        for tr in sz.cities:
            res = results.get((set_a, snr, tr))
            if res is None:
                continue
            cr = res["cross"].get(lbl)
            if cr is None:
                rows.append([lbl, tr, f"failed: {res['failures'].get(lbl, '?')}"] + [None] * (len(sz.cities) + 2))
                continue
            vals = [cr.get(te, (None, None))[0] for te in sz.cities]
            idv = cr[tr][0]
            ood = [cr[te][0] for te in sz.cities if te != tr and te in cr]
            hs_ood = [_row(results[(set_a, snr, te)], "HS")["top1"] for te in sz.cities if te != tr and (set_a, snr, te) in results]
            o = float(np.mean(ood)) if ood else None
            facts.append({"label": lbl, "train": tr, "id": idv, "ood": o, "hs_ood": float(np.mean(hs_ood)) if hs_ood else None,
                          "ood_vals": ood, "hs_vals": hs_ood})
            rows.append([lbl, tr] + [_pct(v) for v in vals] + [_pct(idv), _pct(o), None if o is None else round(100 * (idv - o), 1)])
    return md_table(cols, rows), facts


def _table_case2(r: dict) -> list[str]:
    if "failure" in r:
        return [f"GRU at {r['interval']:g} s: failed: {r['failure']}"]
    cols = ["slot", "ahead (s)", "best beam changed since t %", "GRU top-1 %", "GRU top-3 %", "GRU SE drop",
            "persist GRU slot-0 top-1 %", "top-3 %", "SE drop", "persist true best@t top-1 %", "top-3 %", "SE drop"]
    rows = [[s["slot"], round(s["ahead_s"], 3), _pct(s["changed"]), _pct(s["gru_top1"]), _pct(s["gru_top3"]), round(s["gru_drop"], 4),
             _pct(s["own_top1"]), _pct(s["own_top3"]), round(s["own_drop"], 4), _pct(s["true_top1"]), _pct(s["true_top3"]),
             round(s["true_drop"], 4)] for s in r["slots"]]
    return md_table(cols, rows)


def _figure(results: dict, sz: Sizes, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    set_a, snr = max(sz.set_as), max(sz.snrs)
    methods = ["HS"] + [m for m in LABELS]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5.2), gridspec_kw={"width_ratios": [1.6, 1]})
    w = 0.8 / len(methods)
    cmap = plt.get_cmap("tab20")
    for i, m in enumerate(methods):
        ys = []
        for c in sz.cities:
            r = _row(results[(set_a, snr, c)], m) if (set_a, snr, c) in results else None
            ys.append(100 * r["top1"] if r else 0.0)
        ax1.bar(np.arange(len(sz.cities)) + (i - len(methods) / 2 + 0.5) * w, ys, w, label=m, color="black" if m == "HS" else cmap(i))
    ax1.set_xticks(np.arange(len(sz.cities)), sz.cities)
    ax1.set_ylabel("top-1 accuracy (%)")
    ax1.set_ylim(0, 118)
    ax1.set_yticks(range(0, 101, 20))
    ax1.set_title(f"16→{set_a}, {snr:g} dB: top-1 per city (HS measures {16 + results[(set_a, snr, sz.cities[0])]['c']} beams, models 16)")
    ax1.legend(ncol=6, fontsize=7, loc="upper center")
    ax1.grid(axis="y", alpha=0.3)
    scatter = ("teacher", "teacher_pos", "mlp (KD)", "dscnn (KD)", "svm_rbf", "gbt")
    for set_a2, marker, ls in zip(sz.set_as, ("o", "s"), ("-", "--")):
        per = [results[(set_a2, snr, c)] for c in sz.cities if (set_a2, snr, c) in results]
        if not per:
            continue
        c = per[0]["c"]

        def mean_of(name: str):
            got = [_row(p, name) for p in per]
            if any(g is None for g in got):
                return None
            return np.mean([g["beams_measured"] for g in got]), np.mean([g["se_drop_mean"] for g in got])

        for fam in scatter:
            pts = [mean_of(n) for n in (fam, f"{fam} + top-3", f"{fam} + top-{c}")]
            pts = sorted({p for p in pts if p is not None})
            if pts:
                ax2.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker=marker, color=cmap(methods.index(fam)), ms=5,
                         label=fam if set_a2 == sz.set_as[0] else None)
        for name, col in (("HS", "black"), ("exhaustive", "dimgrey"), ("nearest position + top-3", "tab:olive")):
            pt = mean_of(name)
            if pt is not None:
                ax2.scatter(*pt, marker=marker, color=col, s=50, zorder=3)
                ax2.annotate(f"{name.replace(' + top-3', ' +3')} ({set_a2})", pt, fontsize=7,
                             xytext=(4, 3 if set_a2 == sz.set_as[0] else -10), textcoords="offset points")
    ax2.set_xscale("log")
    ax2.set_yscale("symlog", linthresh=1e-3)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("beams measured per decision (log): model alone, + top-3, + top-c")
    ax2.set_ylabel("mean SE drop vs genie (symlog)")
    ax2.set_title(f"{snr:g} dB, mean over cities: o/solid = 16→{sz.set_as[0]}, s/dashed = 16→{sz.set_as[-1]}", fontsize=10)
    ax2.legend(fontsize=7, loc="upper right")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)
    return path


def _summary(results: dict, case2: list[dict], sz: Sizes, facts_t: list[dict], facts_p: list[dict], cross_facts: dict) -> list[str]:
    """The 'what this shows / where edgebm is behind' paragraph, from the measured numbers."""
    out = []
    n = len(facts_t)
    hs = [_row(r, "HS")["top1"] for r in results.values()]
    if hs:
        out.append(f"Hierarchical search is a strong baseline on this simulator: {100 * min(hs):.1f}-{100 * max(hs):.1f} % top-1 "
                   "(seed 001's HC column: 34-69 %), so a model choosing from the 16-beam Set B sweep alone has to beat a method that "
                   "also measures the c candidate narrow beams.")
    if n:
        better_alone = sum(f["v_alone"] == "better" for f in facts_t)
        worse_alone = sum(f["v_alone"] == "worse" for f in facts_t)
        better_ref = sum(f["v_ref"] == "better" for f in facts_t)
        worse_ref = sum(f["v_ref"] == "worse" for f in facts_t)
        clear = sum(f["v_ref"] == "better" and f["d_ref"] >= 0.05 for f in facts_t)
        md_alone = np.mean([f["d_alone"] for f in facts_t]) * 100
        md_ref = np.mean([f["d_ref"] for f in facts_t]) * 100
        out.append(
            f"**Teacher vs hierarchical search (HS) at equal or lower overhead** ({n} configurations, paired 95 % CI on the top-1 difference): "
            f"the teacher alone (16 beams, HS measures 16 + c) is better in {better_alone}, tied in {n - better_alone - worse_alone} and worse in "
            f"{worse_alone} (mean {md_alone:+.1f} pp); the teacher + top-c refinement (exactly HS's beam count) is better in {better_ref} "
            f"(by at least 5 pp in {clear}), tied in {n - better_ref - worse_ref} and worse in {worse_ref} (mean {md_ref:+.1f} pp).")
        worst = sorted(facts_t, key=lambda f: f["d_ref"])[:3]
        out.append("Smallest teacher + top-c margins over HS: " + ", ".join(
            f"16→{f['set_a']} {f['snr']:g} dB {f['city']} ({100 * f['d_ref']:+.1f} ± {100 * f['h_ref']:.1f} pp)" for f in worst) + ".")
        ks = [f["hs"].get("k_match", {}).get("teacher", "?") for f in facts_t]
        reach = [k for k in ks if isinstance(k, int)]
        if reach:
            out.append(f"The teacher's top-K refinement reaches HS's top-1 in {len(reach)}/{n} configurations, with K = "
                       f"{min(reach)}-{max(reach)} extra beams (HS uses c = 4 / 16).")
        ref_means = {}
        for lbl in ("teacher", "teacher_pos", "mlp (KD)", "dscnn (KD)", "svm_rbf", "gbt"):
            v = [_row(r, f"{lbl} + top-{r['c']}") for r in results.values()]
            if v and all(v):
                ref_means[lbl] = 100 * np.mean([x["top1"] for x in v])
        if ref_means:
            out.append("The refinement gain is not specific to the teacher: mean top-1 at HS's beam count (+ top-c) is "
                       + ", ".join(f"{k} {v:.1f} %" for k, v in ref_means.items())
                       + f" vs HS {100 * np.mean(hs):.1f} %.")
        # effective SE
        eff_better = sum(f["ref"]["effective_se_mean"] > f["hs"]["effective_se_mean"] for f in facts_t)
        eff_alone = sum(f["alone"]["effective_se_mean"] > f["hs"]["effective_se_mean"] for f in facts_t)
        out.append(f"Effective SE after overhead: teacher alone above HS in {eff_alone}/{n}, teacher + top-c above HS in {eff_better}/{n}.")
    npos = [(_row(r, "nearest position + top-3"), _row(r, "HS")) for r in results.values()]
    npos = [(a, b) for a, b in npos if a and b]
    if npos:
        out.append(f"A GPS-only lookup (nearest training positions, then measure 3 beams) reaches {100 * np.mean([a['top1'] for a, _ in npos]):.1f} % "
                   f"top-1 on average at 3 beams (HS {100 * np.mean([b['top1'] for _, b in npos]):.1f} %), i.e. UE position pins the beam down on "
                   "this simulator; the position-aided teacher uses position only as a training label.")
    # position-aided teacher vs teacher
    pairs = [(_row(r, "teacher_pos"), _row(r, "teacher")) for r in results.values()]
    pairs = [(p, t) for p, t in pairs if p and t]
    if pairs:
        d = np.array([p["top1"] - t["top1"] for p, t in pairs]) * 100
        out.append(f"The position-aided teacher is {'ahead of' if d.mean() > 0 else 'behind'} the plain teacher by {d.mean():+.1f} pp on average "
                   f"(ahead in {int((d > 0).sum())}/{len(d)} configurations, range {d.min():+.1f} to {d.max():+.1f} pp); seed 001 reports +1 to +11 pp at 16→256.")
    # best learned model at 16 beams
    wins: dict[str, int] = {}
    gaps = []
    for r in results.values():
        got = {lbl: _row(r, lbl) for lbl in LABELS}
        got = {k: v for k, v in got.items() if v}
        if not got:
            continue
        best = max(got, key=lambda k: got[k]["top1"])
        wins[best] = wins.get(best, 0) + 1
        if "teacher" in got:
            gaps.append(100 * (got[best]["top1"] - got["teacher"]["top1"]))
    if wins:
        ranking = ", ".join(f"{k} {v}" for k, v in sorted(wins.items(), key=lambda kv: -kv[1]))
        neural = {"teacher", "teacher_pos", "mlp", "mlp (KD)", "dscnn (KD)"}
        classical_wins = sum(v for k, v in wins.items() if k not in neural)
        out.append(f"Highest top-1 among the learned models at 16 beams (count of configurations): {ranking}. "
                   + (f"**edgebm's neural models are behind a classical family in {classical_wins}/{sum(wins.values())} configurations**; "
                      if classical_wins else "")
                   + (f"the teacher trails the best learned model by {np.mean(gaps):.1f} pp on average (max {np.max(gaps):.1f} pp)." if gaps else ""))
    # students vs teacher
    for lbl in ("mlp (KD)", "dscnn (KD)"):
        pr = [(_row(r, lbl), _row(r, "teacher"), _row(r, "mlp")) for r in results.values()]
        pr = [x for x in pr if x[0] and x[1]]
        if pr:
            d = np.mean([s["top1"] - t["top1"] for s, t, _ in pr]) * 100
            extra = ""
            if lbl == "mlp (KD)":
                dk = [s["top1"] - m["top1"] for s, _, m in pr if m]
                if dk:
                    extra = f" (distillation vs the same MLP without it: {100 * np.mean(dk):+.1f} pp)"
            out.append(f"Student {lbl} vs teacher: {d:+.1f} pp top-1 on average{extra}.")
    # hardest city, 256 vs 64
    city_mean = {}
    for c in sz.cities:
        v = [_row(r, "teacher")["top1"] for (a, s, cc), r in results.items() if cc == c and _row(r, "teacher")]
        if v:
            city_mean[c] = np.mean(v)
    if city_mean:
        hard = min(city_mean, key=city_mean.get)
        out.append(f"Hardest city for the teacher: {hard} (mean top-1 {100 * city_mean[hard]:.1f} % over sets and SNRs).")
    for set_a in sz.set_as:
        v = {snr: [_row(r, "teacher")["top1"] for (a, s, c), r in results.items() if a == set_a and s == snr and _row(r, "teacher")] for snr in sz.snrs}
        if len(sz.snrs) > 1 and all(v.values()):
            lo, hi = min(sz.snrs), max(sz.snrs)
            out.append(f"16→{set_a}: teacher mean top-1 {100 * np.mean(v[lo]):.1f} % at {lo:g} dB vs {100 * np.mean(v[hi]):.1f} % at {hi:g} dB.")
    # cross-city
    for key, facts in cross_facts.items():
        per: dict[str, list] = {}
        for f in facts:
            if f["ood"] is not None:
                per.setdefault(f["label"], []).append(f)
        parts = []
        for lbl, fs in per.items():
            idm = 100 * np.mean([f["id"] for f in fs])
            oodm = 100 * np.mean([f["ood"] for f in fs])
            below_hs = sum(o < h for f in fs for o, h in zip(f["ood_vals"], f["hs_vals"]))
            tot = sum(len(f["ood_vals"]) for f in fs)
            parts.append(f"{lbl} {idm:.1f} % in-city → {oodm:.1f} % in other cities (below HS in {below_hs}/{tot} train/test pairs)")
        if parts:
            out.append(f"Cross-city {key}: " + "; ".join(parts) + ".")
    # BM-Case2
    for r in case2:
        if "failure" in r:
            out.append(f"BM-Case2 at {r['interval']:g} s failed: {r['failure']}.")
            continue
        fut = r["slots"][1:]
        if not fut:
            continue
        g = np.mean([s["gru_top1"] for s in fut]) * 100
        o = np.mean([s["own_top1"] for s in fut]) * 100
        t = np.mean([s["true_top1"] for s in fut]) * 100
        out.append(f"BM-Case2 ({r['interval']:g} s slots, 16→{r['set_a']}): over future slots the GRU averages {g:.1f} % top-1 vs {o:.1f} % for carrying "
                   f"its own current-slot prediction forward (same 16 beams) and {t:.1f} % for carrying the true best beam at t forward "
                   f"(needs a full {r['set_a']}-beam sweep); at t+{len(fut)} the best beam has changed in {100 * fut[-1]['changed']:.1f} % of windows.")
    return out


def _task(item: tuple[str, tuple], sz: Sizes) -> dict:
    """One task of the suite (``("case1", (set_a, snr, city))`` or ``("case2", (interval, ues, steps))``); an
    unexpected exception is returned as ``{"crash": message}`` (a crashed configuration is a result, not the end
    of the run)."""
    kind, key = item
    try:
        return task_case1(*key, sz) if kind == "case1" else task_case2(*key, sz)
    except Exception as e:  # noqa: BLE001
        print(f"[accuracy] {kind} {key} crashed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        return {"crash": _one_line(e)}


_TIMING_KEYS = frozenset({"seconds", "fit_s", "wall"})


def results_digest(results: dict, case2: list[dict], crashed: list[str]) -> str:
    """sha256 over every result of the run except timings (the same seeds give the same digest, whichever
    executor ran the tasks)."""
    h = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, dict):
            for k in sorted(v, key=repr):
                if k not in _TIMING_KEYS:
                    h.update(repr(k).encode())
                    feed(v[k])
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for x in v:
                feed(x)
            h.update(b"]")
        elif isinstance(v, np.ndarray):
            h.update(str(v.dtype).encode() + repr(v.shape).encode() + np.ascontiguousarray(v).tobytes())
        elif isinstance(v, (float, np.floating)):
            h.update(np.float64(v).tobytes())
        else:
            h.update(repr(v).encode())

    feed({"results": {repr(k): v for k, v in results.items()}, "case2": case2, "crashed": crashed})
    return h.hexdigest()


def run(quick: bool = False, out_dir: Path = RESULTS, argv: str = "", executor: Any = None, sizes: Sizes | None = None) -> str:
    """Run the suite; ``executor`` (:mod:`edgebm.parallel`) runs the configurations, default
    ``Sizes.workers`` local processes; ``sizes`` overrides the full / quick sizes (tests)."""
    from edgebm.parallel import ProcessExecutor, Resources

    global T0
    T0 = time.perf_counter()
    sz = sizes or (QUICK if quick else FULL)
    suffix = "_quick" if quick else ""
    configs = [(a, s, c) for a in sz.set_as for s in sz.snrs for c in sz.cities]
    configs.sort(key=lambda k: (-k[0], k[1]))  # biggest first
    tasks = [("case2", g) for g in sz.gru_runs] + [("case1", k) for k in configs]
    results: dict[tuple, dict] = {}
    case2: list[dict] = []
    crashed: list[str] = []
    ex = executor if executor is not None else ProcessExecutor(sz.workers, threads=sz.threads)
    where = ex.describe()
    log(f"{len(configs)} BM-Case1 configurations + {len(sz.gru_runs)} BM-Case2 runs on {where}")
    try:
        done = ex.imap(functools.partial(_task, sz=sz), tasks, Resources(cpus=sz.threads))
        for (kind, key), r in zip(tasks, done):
            if "crash" in r:
                log(f"{kind} {key} crashed: {r['crash']}")
                if kind == "case2":
                    case2.append({"interval": key[0], "failure": r["crash"], "set_a": sz.gru_set_a})
                else:
                    crashed.append(f"16→{key[0]} {key[1]:g} dB {key[2]}: task crashed: {r['crash']}")
            elif kind == "case2":
                case2.append(r)
                log(f"BM-Case2 {key[0]:g} s done in {r['seconds']:.0f} s")
            else:
                results[key] = r
                log(f"16->{key[0]} {key[1]:g} dB {key[2]} done in {r['seconds']:.0f} s ({len(results)}/{len(configs)})")
    finally:
        if executor is None:
            ex.close()
    case2.sort(key=lambda r: -r["interval"])
    wall = time.perf_counter() - T0
    digest = results_digest(results, case2, crashed)
    log(f"results digest {digest}")
    try:  # raw results, so the report can be re-rendered without retraining (python -m bench.accuracy --report-only)
        import pickle
        import tempfile

        with open(Path(tempfile.gettempdir()) / f"bench_accuracy{suffix}_raw.pkl", "wb") as f:
            pickle.dump({"results": results, "case2": case2, "crashed": crashed, "wall": wall, "where": where}, f)
    except OSError:
        pass
    return _report(results, case2, crashed, sz, quick, out_dir, wall, where, argv)


def _report(results: dict, case2: list[dict], crashed: list[str], sz: Sizes, quick: bool, out_dir: Path, wall: float,
            where: str = "", argv: str = "") -> str:
    suffix = "_quick" if quick else ""
    cmd = argv or f"python -m bench accuracy{' --quick' if quick else ''}"
    lines = header(
        "Beam-prediction accuracy (suite 2)", cmd,
        [f"simulator datasets: {sz.n_samples} UE drops per (Set A, SNR, city), split 70/10/20 % train/val/test (seed 0); "
         f"28 GHz, 8x8 BS UPA, 1x1 UE, Set B 16 wide beams, Set A {' / '.join(map(str, sz.set_as))} DFT beams, cities {', '.join(sz.cities)}, "
         f"SNR {' / '.join(f'{s:g}' for s in sz.snrs)} dB",
         f"neural families: {sz.epochs} epochs max (cosine LR 2e-3, batch {sz.batch_size}, patience 5, soft-label weight 0.2, best-val checkpoint), "
         f"teacher / teacher_pos upsample {sz.upsample}x{sz.upsample}; KD students: distilled from the same configuration's teacher "
         "(weight 0.5, T = 4); classical families: edgebm defaults (svm_rbf on all <= 5000 training samples)",
         f"HS = Set B sweep + the c children of the best wide beam (c = 4 for 64, 16 for 256); refinement measures the model's top-K; "
         f"narrow-beam measurements are noisy (24-subcarrier average); effective SE = SE x (1 - beams x 5/64 ms / {CYCLE_MS:g} ms)",
         f"tasks on {where or f'{sz.workers} worker processes x {sz.threads} torch thread'}; wall time of this run: "
         f"{wall:.0f} s ({wall / 60:.1f} min)",
         f"results digest (sha256 over every number but timings; equal for any executor): "
         f"`{results_digest(results, case2, crashed)}`"],
    )
    over_t, facts_t = _table_overhead(results, sz, "teacher")
    over_p, facts_p = _table_overhead(results, sz, "teacher_pos")
    cross_tables: dict[str, list[str]] = {}
    cross_facts: dict[str, list[dict]] = {}
    cross_keys = [(a, s) for a in sz.set_as for s in sorted(sz.snrs, reverse=True)]
    for a, s in cross_keys:
        t, f = _table_cross(results, a, s, sz, CROSS_MAIN)
        cross_tables[f"16→{a}, {s:g} dB"] = t
        cross_facts[f"16→{a} {s:g} dB"] = f
    failures = sorted({(lbl, msg) for r in results.values() for lbl, msg in r["failures"].items()})
    summary = _summary(results, case2, sz, facts_t, facts_p, {k: v for k, v in cross_facts.items() if k.startswith("16→64")})

    lines += ["## What this shows / where edgebm is behind", "", " ".join(summary), ""]
    if failures or crashed:
        lines += ["**Failures:** " + "; ".join([f"{lbl}: {msg}" for lbl, msg in failures] + crashed), ""]
    for set_a in sz.set_as:
        lines += [f"## Top-1 accuracy (%) 16→{set_a} (seed 001 Table {'III' if set_a == 64 else 'IV'} layout)", "",
                  "Beams measured per decision in brackets. Models use the Set B sweep only.", ""]
        lines += _table_top1(results, set_a, sz) + [""]
    lines += ["## Teacher vs HS at equal or lower measurement overhead", "",
              "Alone: 16 beams (fewer than HS). + top-c: the teacher's c best-ranked narrow beams are measured (noisy) and the "
              "strongest kept, exactly HS's 16 + c beams. Δ = teacher − HS in percentage points with a paired 95 % CI over the "
              "test samples; verdict 'better'/'worse' when the CI excludes 0.", ""]
    lines += over_t + ["", "### Position-aided teacher vs HS", ""] + over_p + [""]
    for set_a in sz.set_as:
        for snr in sz.snrs:
            lines += [f"## All methods, 16→{set_a}, {snr:g} dB (mean over {len(sz.cities)} cities)", ""]
            lines += _table_city_mean(results, set_a, snr, sz) + [""]
    lines += ["## Cross-city generalisation (seed 001 Table V layout), top-1 %", "",
              "Rows: model and the city it was trained in; columns: the test split of each city (the diagonal is in-city). "
              "HS needs no training and is shown per test city for reference.", ""]
    for k, t in cross_tables.items():
        if k.startswith("16→64") or quick:
            lines += [f"### {k}", ""] + t + [""]
    if not quick:
        lines += ["16→256 cross-city tables and all families: `accuracy_detail.md`.", ""]
    lines += ["## BM-Case2: temporal prediction (gru) per future slot", ""]
    for r in case2:
        lines += [f"### Prediction interval {r['interval']:g} s (16→{r['set_a']}, {r.get('city', 'city0')}, {r.get('snr', 20):g} dB)", ""]
        if "failure" not in r:
            lines += [f"{r['ues']} UEs x {r['steps']} steps, split by trajectory; history {r['history']} slots, horizon {r['horizon']}; "
                      f"{r['n_windows']} test windows; trained {r['epochs_run']} epochs in {r['fit_s']:.0f} s (best validation epoch {r.get('best_epoch', '?')}). "
                      "Persistence baselines carry one beam forward to every future slot: the GRU's own slot-0 prediction "
                      "(same 16-beam Set B input) or the true best beam at t (needs a full Set A sweep at t).", ""]
        lines += _table_case2(r) + [""]
    png = _figure(results, sz, out_dir / f"accuracy{suffix}.png")
    if png:
        lines += [f"![top-1 per city and SE drop vs beams measured](accuracy{suffix}.png)", ""]
    if not quick:
        lines += ["Per-configuration tables of every method (top-1/top-3 refinement, nearest-position baseline, fit times) "
                  "and all cross-city tables: `accuracy_detail.md`.", ""]
    text = "\n".join(lines)
    write_text(out_dir / f"accuracy{suffix}.md", text)

    # detail file (full run) / appended section (quick)
    det = header("Beam-prediction accuracy (suite 2): per-configuration detail", cmd,
                 ["companion of accuracy.md" if not quick else "companion of accuracy_quick.md"])
    for (a, s, c) in sorted(results):
        res = results[(a, s, c)]
        det += [f"## 16→{a}, {s:g} dB, {c} ({res['n_train']} train / {res['n_test']} test samples, task {res['seconds']:.0f} s)", ""]
        det += md_table(METRIC_COLS + ["fit s"], [_metric_line(r) + [None if r.get("fit_s") is None or r["refine"] else round(r["fit_s"], 1)]
                                                 for r in res["rows"]])
        if res["failures"]:
            det += ["", "Failures: " + "; ".join(f"{k}: {v}" for k, v in res["failures"].items())]
        det += [""]
    det += ["## Cross-city, all families", ""]
    for a, s in cross_keys:
        t, _ = _table_cross(results, a, s, sz, LABELS)
        det += [f"### 16→{a}, {s:g} dB", ""] + t + [""]
    write_text(out_dir / f"accuracy{suffix}_detail.md", "\n".join(det))
    log(f"done in {time.perf_counter() - T0:.0f} s; wrote {out_dir / f'accuracy{suffix}.md'}")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--report-only", action="store_true", help="re-render the Markdown/PNG from the last run's raw results")
    a = p.parse_args(argv)
    if a.report_only:
        import pickle
        import tempfile

        with open(Path(tempfile.gettempdir()) / f"bench_accuracy{'_quick' if a.quick else ''}_raw.pkl", "rb") as f:
            raw = pickle.load(f)
        print(_report(raw["results"], raw["case2"], raw["crashed"], QUICK if a.quick else FULL, a.quick, RESULTS, raw["wall"],
                      raw.get("where", "")))
        return 0
    print(run(a.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
