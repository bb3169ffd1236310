"""The recipe's pruning-ratio search, as plain functions of two callables (no models, no gate in here).

``fits(ratio) -> (ok, why_not)`` judges a pruned *structure* against the budget (cheap: no training);
``evaluate(ratio, how) -> True | False | None`` fine-tunes the point at ``ratio`` and says whether it is still tied
with the unpruned model on validation (``None``: skipped, e.g. its structure could not win). :class:`RecipeRun`
plugs in the profile's gate and its fine-tuning; another driver (a Ray Tune trial, a grid) can plug in its own.

1. :func:`bisect_fit` — the smallest ratio whose structure fits: ratio 0 if it fits, else bisection on
   [0, ``r_max``] down to ``tol`` (None when even ``r_max`` does not fit).
2. :func:`search_cheaper` — from that fit point, up to ``n_points`` cheaper ratios, each halving the remaining
   width (``1 - (1 - r_fit) / 2^k``); it stops at the first point no longer tied, then ``refine_steps`` bisection
   steps between it and the last tied one find the cheapest tied ratio.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["R_MAX", "R_TOL", "REFINE_STEPS", "bisect_fit", "halving_ratios", "search_cheaper", "head_input_cap"]

#: largest pruning ratio the search tries (at least ~3 % of every layer's channels stay)
R_MAX = 0.97
#: bisection stops when the ratio interval is this narrow
R_TOL = 1.0 / 64
#: fine-tuned bisection steps between the last pruning point tied with the unpruned student and the first one that is not
REFINE_STEPS = 2

Fits = Callable[[float], "tuple[bool, str]"]
Evaluate = Callable[[float, str], "bool | None"]


def head_input_cap(max_trainable_params: int | None, n_out: int) -> int | None:
    """Most input features an on-device head (Linear ``in -> n_out`` with bias: ``(in + 1) x n_out`` trainable
    parameters) may read within ``max_trainable_params``; None when nothing is updated on the device. A budget
    below one feature gives 1 (the gate's ``trainable_head`` line then fails the candidate, saying by how much)."""
    if max_trainable_params is None:
        return None
    return max(1, max_trainable_params // n_out - 1)


def bisect_fit(fits: Fits, r_max: float = R_MAX, tol: float = R_TOL) -> tuple[float | None, list[dict[str, Any]]]:
    """(smallest fitting ratio or None, trials). Assumes fitting is monotone in the ratio (a smaller structure
    never costs more), which holds for every line the search judges (FLOPs, params, sizes, memory, head)."""

    def trial(q: float) -> tuple[bool, dict[str, Any]]:
        ok, why = fits(q)
        return ok, {"ratio": round(q, 4), "fits": ok, **({"why": why} if why else {})}

    ok0, t0 = trial(0.0)
    trials = [t0]
    if ok0:
        return 0.0, trials
    ok_hi, t_hi = trial(r_max)
    trials.append(t_hi)
    if not ok_hi:
        return None, trials
    lo, hi = 0.0, r_max
    while hi - lo > tol:
        mid = (lo + hi) / 2
        ok, t = trial(mid)
        trials.append(t)
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi, trials


def halving_ratios(r_fit: float, n_points: int, r_max: float = R_MAX) -> list[float]:
    """``1 - (1 - r_fit) / 2^k`` for k = 1..n_points, those <= ``r_max``."""
    return [q for q in (1 - (1 - r_fit) * 0.5 ** k for k in range(1, n_points + 1)) if q <= r_max]


def search_cheaper(evaluate: Evaluate, r_fit: float, n_points: int, *, include_fit: bool = True,
                   refine_steps: int = REFINE_STEPS, r_max: float = R_MAX) -> tuple[float, float | None]:
    """Evaluate the fit point (when ``include_fit``), the halving points and the refining bisection (module doc).

    ``evaluate(ratio, how)`` with ``how`` in ``fit`` / ``halving`` / ``bisection``; the fit point counts as tied
    whatever it returns (it is the budget's own point). Returns (cheapest tied ratio, first untied ratio or None).
    """
    good, bad = r_fit, None
    ratios = ([r_fit] if include_fit else []) + halving_ratios(r_fit, n_points, r_max)
    for q in ratios:
        res = evaluate(q, "fit" if q == r_fit else "halving")
        if q == r_fit:
            continue
        if res is False:
            bad = q
            break
        if res:
            good = q
    for _ in range(refine_steps if bad is not None else 0):
        mid = round((good + bad) / 2, 4)  # type: ignore[operator]
        res = evaluate(mid, "bisection")
        if res is None:
            break
        good, bad = (mid, bad) if res else (good, mid)
    return good, bad
